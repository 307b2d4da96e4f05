// The bookinfo example's apps, run as plain processes on 127.0.0.1 without the lab. The tests check that
// productpage combines details and each version of reviews, that trace headers reach every hop, and that
// a dead or hung upstream gives a 503 while the app keeps running.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { type Server, createServer } from 'node:net';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const APPS = fileURLToPath(new URL('../../examples/bookinfo/apps/', import.meta.url));
const START_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 5_000;
/** Short, so the hung-upstream test proves the bound without waiting the default 3 s. */
const UPSTREAM_TIMEOUT_MS = 500;

interface App {
  readonly child: ChildProcess;
  readonly url: string;
  output: string;
}

const apps: App[] = [];
const servers: Server[] = [];

/**
 * Starts an app with PORT=0 and returns its URL once it logs the port the kernel chose. Every app gets
 * its own free port this way, with no race between choosing a port and binding it.
 */
function startApp(name: string, pod: string, env: Record<string, string> = {}): Promise<App> {
  const child = spawn(process.execPath, [`${APPS}${name}.mjs`], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOST: '127.0.0.1',
      PORT: '0',
      POD_NAME: pod,
      POD_NAMESPACE: 'bookinfo',
      UPSTREAM_TIMEOUT_MS: String(UPSTREAM_TIMEOUT_MS),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => fail(`did not listen within ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
    // 'close', not 'exit': it comes after the output is drained, so a start-up error is in `output`.
    const onClose = (code: number | null, signal: string | null): void => fail(`exited before listening (code ${code}, signal ${signal})`);
    function fail(why: string): void {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${name} (${pod}) ${why}; output:\n${output}`));
    }
    const collect = (chunk: Buffer): void => {
      output += chunk.toString();
      const port = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(output)?.[1];
      if (!port) return;
      clearTimeout(timer);
      child.off('close', onClose);
      const app: App = { child, url: `http://127.0.0.1:${port}`, output };
      // Keep collecting, so a failing assertion can show what the app logged after it started.
      child.stdout?.off('data', collect);
      child.stderr?.off('data', collect);
      child.stdout?.on('data', (c: Buffer) => (app.output += c.toString()));
      child.stderr?.on('data', (c: Buffer) => (app.output += c.toString()));
      apps.push(app);
      resolve(app);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    child.once('close', onClose);
  });
}

/** A TCP listener on a free port of 127.0.0.1. */
function listen(): Promise<{ server: Server; url: string }> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') return reject(new Error('no TCP address'));
      resolve({ server, url: `http://127.0.0.1:${address.port}` });
    });
  });
}

/** An upstream that accepts connections and never answers. */
async function hungUpstream(): Promise<string> {
  const { server, url } = await listen();
  servers.push(server);
  return url;
}

/** An upstream where nothing listens: a port that was just free, released again. */
async function deadUpstream(): Promise<string> {
  const { server, url } = await listen();
  await new Promise((resolve) => server.close(resolve));
  return url;
}

/** One bounded request; the body is the app's JSON, whose shape the assertions check field by field. */
async function getJson(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; body: any }> {
  const response = await fetch(url, { method, headers, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  return { status: response.status, body: await response.json() };
}

function assertAlive(app: App): void {
  assert.equal(app.child.exitCode, null, `the app exited; output:\n${app.output}`);
  assert.equal(app.child.signalCode, null, `the app was killed; output:\n${app.output}`);
}

let details: App;
let ratings: App;
const reviews: Record<'v1' | 'v2' | 'v3', App> = {} as Record<'v1' | 'v2' | 'v3', App>;
const productpage: Record<'v1' | 'v2' | 'v3', App> = {} as Record<'v1' | 'v2' | 'v3', App>;

before(async () => {
  [details, ratings] = await Promise.all([startApp('details', 'details-v1'), startApp('ratings', 'ratings-v1')]);
  // One productpage per reviews version, since a productpage has a single REVIEWS_URL.
  for (const version of ['v1', 'v2', 'v3'] as const) {
    reviews[version] = await startApp('reviews', `reviews-${version}`, { VERSION: version, RATINGS_URL: ratings.url });
    productpage[version] = await startApp('productpage', `productpage-for-reviews-${version}`, {
      DETAILS_URL: details.url,
      REVIEWS_URL: reviews[version].url,
    });
  }
});

after(async () => {
  await Promise.all(
    apps.map(
      (app) =>
        new Promise<void>((resolve) => {
          if (app.child.exitCode !== null || app.child.signalCode !== null) return resolve();
          // Bounded: resolve anyway if SIGKILL's exit event never arrives.
          const timer = setTimeout(resolve, 2_000);
          app.child.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          app.child.kill('SIGKILL');
        }),
    ),
  );
  for (const server of servers) server.close();
});

test('every app answers /health with 200 and says which service, version and pod it is', { timeout: 20_000 }, async () => {
  const expected = [
    [details, 'details', 'v1', 'details-v1'],
    [ratings, 'ratings', 'v1', 'ratings-v1'],
    [reviews.v2, 'reviews', 'v2', 'reviews-v2'],
    [productpage.v1, 'productpage', 'v1', 'productpage-for-reviews-v1'],
  ] as const;
  for (const [app, service, version, pod] of expected) {
    const { status, body } = await getJson(`${app.url}/health`);
    assert.equal(status, 200);
    assert.deepEqual({ service: body.service, version: body.version, pod: body.pod, namespace: body.namespace }, { service, version, pod, namespace: 'bookinfo' });
  }
});

test('productpage with reviews v1 combines details and reviews without ratings', { timeout: 20_000 }, async () => {
  const { status, body } = await getJson(`${productpage.v1.url}/productpage`);
  assert.equal(status, 200, JSON.stringify(body));
  assert.equal(body.service, 'productpage');
  assert.equal(body.product.title, 'The Comedy of Errors');
  assert.equal(body.details.pod, 'details-v1');
  assert.equal(body.details.book.author, 'William Shakespeare');
  assert.equal(body.reviews.service, 'reviews');
  assert.equal(body.reviews.version, 'v1');
  assert.equal(body.reviews.pod, 'reviews-v1');
  assert.equal(body.reviews.reviews.length, 2);
  for (const review of body.reviews.reviews) assert.equal(review.rating, undefined);
  assert.equal(body.reviews.ratings, undefined);
});

for (const [version, color] of [['v2', 'black'], ['v3', 'red']] as const) {
  test(`productpage with reviews ${version} shows ratings as ${color} stars`, { timeout: 20_000 }, async () => {
    const { status, body } = await getJson(`${productpage[version].url}/productpage`);
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body.details.pod, 'details-v1');
    assert.equal(body.reviews.version, version);
    assert.equal(body.reviews.pod, `reviews-${version}`);
    assert.equal(body.reviews.ratings.service, 'ratings');
    assert.equal(body.reviews.ratings.pod, 'ratings-v1');
    assert.deepEqual(
      body.reviews.reviews.map((r: { reviewer: string; rating: unknown }) => [r.reviewer, r.rating]),
      [
        ['Reviewer1', { stars: 5, color }],
        ['Reviewer2', { stars: 4, color }],
      ],
    );
  });
}

test('/ serves the same page as /productpage', { timeout: 20_000 }, async () => {
  const { status, body } = await getJson(`${productpage.v3.url}/`);
  assert.equal(status, 200, JSON.stringify(body));
  assert.equal(body.reviews.version, 'v3');
  assert.equal(body.details.service, 'details');
});

test('trace headers reach every hop: productpage, details, reviews and ratings', { timeout: 20_000 }, async () => {
  const trace = {
    'x-request-id': 'a3f0c1d2-0000-4000-8000-000000000001',
    traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    tracestate: 'vendor=opaque',
    b3: '80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1',
    'x-b3-traceid': '80f198ee56343ba864fe8b2a57d3eff7',
    'x-b3-spanid': 'e457b5a2e4d86bd1',
    'x-b3-parentspanid': '05e3ac9a4f6e3b90',
    'x-b3-sampled': '1',
    'x-b3-flags': '0',
  };
  const { status, body } = await getJson(`${productpage.v2.url}/productpage`, { ...trace, 'x-not-a-trace-header': 'stays here' });
  assert.equal(status, 200, JSON.stringify(body));
  // Each answer's `trace` is what that service received; an unrelated header is not forwarded.
  assert.deepEqual(body.trace, trace, 'productpage');
  assert.deepEqual(body.details.trace, trace, 'details');
  assert.deepEqual(body.reviews.trace, trace, 'reviews');
  assert.deepEqual(body.reviews.ratings.trace, trace, 'ratings');
});

test('a dead details upstream gives 503 naming details, and productpage keeps serving', { timeout: 20_000 }, async () => {
  const page = await startApp('productpage', 'productpage-dead-details', { DETAILS_URL: await deadUpstream(), REVIEWS_URL: reviews.v1.url });
  for (let i = 0; i < 3; i++) {
    const { status, body } = await getJson(`${page.url}/productpage`, { 'x-request-id': `dead-${i}` });
    assert.equal(status, 503);
    assert.deepEqual(body.failed, ['details']);
    assert.match(body.error, /^details: GET http:\/\/127\.0\.0\.1:\d+\/details\/0 failed: .*ECONNREFUSED/);
    assert.equal(body.pod, 'productpage-dead-details');
  }
  assert.equal((await getJson(`${page.url}/health`)).status, 200);
  assertAlive(page);
});

test('a dead ratings upstream gives 503 from reviews v2, which productpage reports end to end', { timeout: 20_000 }, async () => {
  const reviewsDead = await startApp('reviews', 'reviews-v2-dead-ratings', { VERSION: 'v2', RATINGS_URL: await deadUpstream() });
  const page = await startApp('productpage', 'productpage-dead-ratings', { DETAILS_URL: details.url, REVIEWS_URL: reviewsDead.url });

  const direct = await getJson(`${reviewsDead.url}/reviews/0`);
  assert.equal(direct.status, 503);
  assert.deepEqual(direct.body.failed, ['ratings']);

  const { status, body } = await getJson(`${page.url}/productpage`);
  assert.equal(status, 503);
  assert.deepEqual(body.failed, ['reviews']);
  assert.match(body.error, /^reviews: GET \S+\/reviews\/0 answered 503: ratings: GET \S+\/ratings\/0 failed: /);
  assertAlive(reviewsDead);
  assertAlive(page);
});

test('a hung upstream gives 503 once the upstream timeout passes', { timeout: 20_000 }, async () => {
  const hung = await hungUpstream();
  const page = await startApp('productpage', 'productpage-hung', { DETAILS_URL: details.url, REVIEWS_URL: hung });
  const started = Date.now();
  const { status, body } = await getJson(`${page.url}/productpage`);
  const elapsed = Date.now() - started;
  assert.equal(status, 503);
  assert.deepEqual(body.failed, ['reviews']);
  assert.match(body.error, new RegExp(`^reviews: GET \\S+ failed: timed out after ${UPSTREAM_TIMEOUT_MS} ms$`));
  assert.ok(elapsed >= UPSTREAM_TIMEOUT_MS - 50 && elapsed < REQUEST_TIMEOUT_MS, `answered after ${elapsed} ms`);
  assertAlive(page);
});

test('both upstreams down: the 503 names both calls', { timeout: 20_000 }, async () => {
  const page = await startApp('productpage', 'productpage-all-dead', { DETAILS_URL: await deadUpstream(), REVIEWS_URL: await deadUpstream() });
  const { status, body } = await getJson(`${page.url}/productpage`);
  assert.equal(status, 503);
  assert.deepEqual(body.failed, ['details', 'reviews']);
  assertAlive(page);
});

test('unknown paths get 404 and other methods 405, as JSON', { timeout: 20_000 }, async () => {
  const missing = await getJson(`${details.url}/nope`);
  assert.equal(missing.status, 404);
  assert.equal(missing.body.service, 'details');
  const post = await getJson(`${details.url}/details/0`, {}, 'POST');
  assert.equal(post.status, 405);
  assert.match(post.body.error, /POST/);
});

test('reviews refuses a version it does not have, at start', { timeout: 20_000 }, async () => {
  await assert.rejects(startApp('reviews', 'reviews-v9', { VERSION: 'v9' }), /exited before listening[\s\S]*VERSION=v9/);
});

// Path normalization against a DENY on /admin/*: `//`, `./`, `..`, escaped dots of either case,
// escaped letters, `\` and `%2F`/`%5C`, on both proxies (HTTP/1.1 and HTTP/2), then random targets
// built from the same pieces (fast-check): whatever reaches the pod is exactly the path that was
// judged, and the pod, reading it as WHATWG URL does, never finds /admin in it.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { pathOnly } from '../../agent/l7/request.js';
import { requestTarget } from '../../agent/l7/request-target.js';
import { type L7Proxies, h2Get, rawHttp1, startL7Proxies } from './helpers/l7-proxies.js';
import { fuzzTarget } from '../fuzz/property.js';

const fuzz = fuzzTarget('path-normalization');

let proxies: L7Proxies;
let decoding: L7Proxies;
let istioDefault: L7Proxies;
before(async () => {
  proxies = await startL7Proxies();
  decoding = await startL7Proxies({ pathNormalization: 'DECODE_AND_MERGE_SLASHES' });
  istioDefault = await startL7Proxies({ pathNormalization: 'BASE' });
});
after(async () => {
  await proxies.close();
  await decoding.close();
  await istioDefault.close();
});

const get = (port: number, target: string) => rawHttp1(port, `GET ${target} HTTP/1.1\r\nHost: reviews:9080\r\nConnection: close\r\n\r\n`);
/** How a pod built on WHATWG URL (Node's `new URL`, most frameworks' routers) reads a path. */
const podReads = (url: string): string => new URL(url, 'http://pod').pathname;
const isAdmin = (path: string): boolean => path === '/admin' || path.startsWith('/admin/');

const sides = (p: () => L7Proxies) =>
  [
    ['destination', () => p().inboundPort],
    ['source', () => p().outboundPort],
    ['source (no proxy at the destination)', () => p().outboundDirectPort],
  ] as const;

for (const [side, port] of sides(() => proxies)) {
  test(`${side}: //, ./, .., escaped dots and letters of either case all reach the DENY on /admin/*`, async () => {
    const before = proxies.podRequests.length;
    const targets = ['//admin/secret', '/./admin/secret', '/public/../admin/secret', '/%2e%2E/admin/secret', '/public/%2E%2e/admin//secret'];
    for (const target of [...targets, '/%61dmin/secret', '/a%64min/secret', '/public/.%2e/admin', '/public/x/../../admin/secret']) {
      const reply = await get(port(), target);
      assert.equal(reply.status, 403, `${target}: ${reply.text.slice(0, 60)}`);
    }
    assert.equal(proxies.podRequests.length, before, 'the pod saw none of them');
  });

  test(`${side}: %2F and %5C stay escaped by default (upper case), so the pod receives exactly what was judged`, async () => {
    for (const [target, forwarded] of [['/admin%2fsecret', '/admin%2Fsecret'], ['/admin%5Csecret', '/admin%5Csecret']] as const) {
      const reply = await get(port(), target);
      assert.equal(reply.status, 200, reply.text);
      const url = proxies.podRequests.at(-1)!.url;
      assert.equal(url, forwarded);
      assert.ok(!isAdmin(podReads(url)), `WHATWG reads ${url} as ${podReads(url)}`);
    }
  });
}

test('source: a path a route rewrite made is normalized before it is sent, so the destination reads what the source judged', async () => {
  for (const port of [proxies.outboundDirectPort, proxies.outboundPort]) {
    const reply = await get(port, '/old/x/./y?q=1');
    assert.equal(reply.status, 200, reply.text);
    assert.equal(proxies.podRequests.at(-1)!.url, '/new/x/y?q=1', 'rewritten to /new//x/./y, sent as its normal form');
  }
});

for (const [side, port] of sides(() => decoding)) {
  test(`${side} with DECODE_AND_MERGE_SLASHES: %2F and %5C are slashes, and the DENY holds`, async () => {
    const before = decoding.podRequests.length;
    for (const target of ['/admin%2fsecret', '/admin%2Fsecret', '/admin%5csecret', '/public%2F..%2Fadmin']) assert.equal((await get(port(), target)).status, 403, target);
    assert.equal(decoding.podRequests.length, before);
  });
}

test("Istio's default (BASE) keeps //: why Ambit's default merges slashes (CVE-2021-31920)", async () => {
  const reply = await get(istioDefault.inboundPort, '//admin/secret');
  assert.equal(reply.status, 200);
  assert.equal(istioDefault.podRequests.at(-1)!.url, '//admin/secret');
});

test('a backslash is a slash, so "/admin\\secret" meets the DENY over HTTP/2 and HTTP/1.1 (whose parser refuses one leading the target)', async () => {
  for (const port of [proxies.inboundPort, proxies.outboundPort]) {
    for (const path of ['/admin\\secret', '/public\\..\\admin']) assert.equal(await h2Get(port, { ':path': path }), 403, path);
    assert.equal((await get(port, '/admin\\secret')).status, 403);
    assert.equal((await get(port, '\\admin')).status, 400);
  }
});

const SEGMENTS = ['admin', 'ADMIN', '%61dmin', 'adm%69n', 'public', 'x', '.', '..', '%2e', '%2E%2e', '.%2E', ''];
const SEPARATORS = ['/', '//', '/./', '%2f', '%2F', '%5C'];
const target = fc
  .tuple(fc.array(fc.tuple(fc.constantFrom(...SEPARATORS), fc.constantFrom(...SEGMENTS)), { minLength: 1, maxLength: 6 }), fc.constantFrom('', '?q=/admin', '#/../admin', '?a#b'))
  .map(([parts, tail]) => `/${parts.map(([sep, seg], i) => (i === 0 ? seg : sep + seg)).join('')}${tail}`);

for (const [side, port] of sides(() => proxies)) {
  test(`${side}: random targets: judged = forwarded, and no path the pod reads as /admin gets past the DENY`, async () => {
    await fuzz.assert(`random-targets-${side.replace(/\W+/g, '-').replace(/-$/, '')}`,
      fc.asyncProperty(target, async (t) => {
        const before = proxies.podRequests.length;
        const reply = await get(port(), t);
        const expected = requestTarget({ version: 'HTTP/1.1', method: 'GET', target: t, authority: 'reviews:9080', hostHeaders: ['reviews:9080'] });
        const reached = proxies.podRequests.slice(before);
        if (reply.status !== 200) {
          assert.deepEqual(reached, [], `${t} answered ${reply.status} yet reached the pod`);
          if (expected.ok) assert.ok(isAdmin(pathOnly(expected.path)), `${t} → ${expected.path} refused with ${reply.status}`);
          return;
        }
        assert.ok(expected.ok, `${t} was refused by requestTarget but answered 200`);
        assert.equal(reached.length, 1);
        assert.equal(reached[0]!.url, expected.ok ? expected.path : '', 'the pod receives the path that was judged');
        assert.ok(!isAdmin(podReads(reached[0]!.url)), `${t} reached the pod, which reads ${podReads(reached[0]!.url)}`);
      }),
      { numRuns: 120 },
    );
  });
}

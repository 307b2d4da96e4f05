// The node console in a real browser (Debian's chromium driven by playwright-core) against the lab's
// bookinfo: `ambit console --node node-a` forwards a host port into the node, and what a person sees
// there is checked: the bookinfo edges after traffic, a denial within seconds, the explain form's
// verdicts. A screenshot is kept in test-results/console.png.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Browser, type Page, chromium } from 'playwright-core';
import { AMBIT_MAIN } from './helpers/lab-cli.js';
import { LabSession } from './helpers/lab-session.js';

const LAB = `tco${process.pid % 1000}`;
const BOOKINFO = fileURLToPath(new URL('../../examples/bookinfo/', import.meta.url));
const RESULTS = fileURLToPath(new URL('../../test-results/', import.meta.url));
const CHROMIUM = process.env['CHROMIUM'] ?? '/usr/bin/chromium';
const session = LabSession.inTempDir(LAB, 'ambit-console-test-');

// Only reviews may call ratings: the client's direct request is denied (403) on node-a, ratings' node.
const RATINGS_POLICY = `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ratings-from-reviews, namespace: bookinfo }
spec:
  selector: { matchLabels: { app: ratings } }
  rules:
  - from: [{ source: { principals: [cluster.local/ns/bookinfo/sa/bookinfo-reviews] } }]
`;

/** bookinfo.yaml on this test's own addresses, so it can run beside the demo or another bookinfo lab. */
function meshYaml(): string {
  const original = readFileSync(join(BOOKINFO, 'bookinfo.yaml'), 'utf8');
  return `${original.replaceAll('10.244.', '10.241.').replaceAll('172.31.77.', '172.31.61.').replaceAll('10.96.0.', '10.111.0.')}\n${RATINGS_POLICY}`;
}

let forward: ChildProcess | undefined;
let browser: Browser | undefined;
let page: Page;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: \`make deps\` installs Debian's chromium (or set CHROMIUM)`);
  assert.ok(session.dir);
  cpSync(join(BOOKINFO, 'apps'), join(session.dir, 'apps'), { recursive: true });
  await session.up(meshYaml(), 120);
  // The console of node-a, through the forward `ambit console` opens (it prints the URL when ready).
  const child = spawn(process.execPath, [AMBIT_MAIN, 'console', '--lab', LAB, '--node', 'node-a'], { stdio: ['ignore', 'pipe', 'pipe'] });
  forward = child;
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`ambit console printed no URL in 15 s:\n${out}`)), 15_000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const found = /http:\/\/127\.0\.0\.1:\d+\/console/.exec(out);
      if (found) {
        clearTimeout(timer);
        resolve(found[0]);
      }
    });
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => reject(new Error(`ambit console exited (${code}):\n${out}`)));
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new'] });
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await page.goto(url);
});

after(async () => {
  await browser?.close();
  forward?.kill();
  await session.down();
});

/** The client's requests: `count` GETs of `url`, each bounded; the statuses seen (and what exec said, for a failure's message). */
async function curl(url: string, count: number): Promise<{ statuses: string[]; said: string }> {
  const loop = `for i in $(seq 1 ${count}); do curl -s -o /dev/null --max-time 5 -w '%{http_code}\\n' ${url}; done`;
  const r = await session.exec('bookinfo/client', ['sh', '-c', loop], 90_000);
  return { statuses: r.stdout.trim().split('\n'), said: `exit ${r.code}: ${r.stdout}${r.stderr}` };
}

test('the graph shows the bookinfo edges after traffic, with rates and mTLS', async () => {
  const { statuses, said } = await curl('http://productpage:9080/productpage', 10);
  assert.deepEqual(new Set(statuses), new Set(['200']), `productpage answered ${said}`);
  // The page polls every 3 s: each edge node-a saw must appear as an SVG edge within a few polls.
  const edge = (source: string, destination: string): string => `svg#graph g.edge[data-source="bookinfo/${source}"][data-destination="bookinfo/${destination}"]`;
  // Workloads are named as istiod names them (the pods carry no controller here: their app label).
  for (const [source, destination] of [
    ['client', 'productpage'],
    ['productpage', 'details'],
    ['productpage', 'reviews'],
    ['reviews', 'ratings'],
  ] as const) {
    await page.waitForSelector(edge(source, destination), { timeout: 15_000 });
  }
  const label = await page.textContent(`${edge('client', 'productpage')} text`);
  assert.match(label ?? '', / req(\/s)? · 0% err · [\d.]+ (kB|MB) · mTLS/, 'the rate, no errors, the bytes of the pages (kB), over mTLS');
  assert.ok(await page.isVisible('svg#graph g.node[data-workload="bookinfo/client"]'));
});

test('a denial appears within seconds, explained', async () => {
  const { statuses, said } = await curl('http://ratings:9080/ratings/0', 1);
  assert.deepEqual(statuses, ['403'], `the client is denied by ratings-from-reviews; ${said}`);
  const row = page.locator('#denials tbody tr', { hasText: 'ratings' }).or(page.locator('#denials tbody tr', { hasText: 'client' }));
  await row.first().waitFor({ timeout: 10_000 });
  const text = (await row.first().textContent()) ?? '';
  assert.match(text, /deny: why\?/);
  await row.first().locator('a').click();
  await page.waitForSelector('#explain-verdict', { timeout: 5_000 });
  assert.match((await page.textContent('#explain-result')) ?? '', /ratings-from-reviews/);
});

test('the explain form answers: deny for the client to ratings, allow to productpage', async () => {
  const ask = async (destination: string, http: string): Promise<string> => {
    await page.fill('#explain-form input[name=source]', 'bookinfo/client');
    await page.fill('#explain-form input[name=destination]', destination);
    await page.fill('#explain-form input[name=http]', http);
    await page.evaluate("document.getElementById('explain-result')?.replaceChildren()");
    await page.click('#explain-form button[type=submit]');
    await page.waitForSelector('#explain-verdict', { timeout: 10_000 });
    return (await page.textContent('#explain-result')) ?? '';
  };
  const denied = await ask('ratings.bookinfo:9080', 'GET /ratings/0');
  assert.match(denied, /: deny/);
  assert.match(denied, /AuthorizationPolicy bookinfo\/ratings-from-reviews/);
  const allowed = await ask('productpage.bookinfo:9080', 'GET /productpage');
  assert.match(allowed, /: allow/);
  mkdirSync(RESULTS, { recursive: true });
  await page.screenshot({ path: join(RESULTS, 'console.png'), fullPage: true });
});

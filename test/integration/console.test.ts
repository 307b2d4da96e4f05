// The node console in a real browser (Debian's chromium driven by playwright-core) against the lab's
// bookinfo: `ambit console --node node-a` forwards a host port into the node, and what a person sees
// there is checked: the bookinfo edges after traffic, a denial within seconds, the eBPF programs
// attached (with the kernel's own link ids), the explain form's verdicts. A screenshot is kept in
// test-results/console.png.

import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
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
/** The console's origin, every URL the page asked for, and the page's Content-Security-Policy. */
let origin = '';
const requested: string[] = [];
let policy = '';

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
  page.on('request', (request) => requested.push(request.url()));
  origin = new URL(url).origin;
  policy = (await page.goto(url))?.headers()['content-security-policy'] ?? '';
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

test('the flows now open, certificate expiries and capture decision counters are shown', async () => {
  // A connection the client holds open for 9 s: the flows panel (polled every 3 s) lists it meanwhile.
  const hold = `const s = require('net').connect(9080, 'productpage'); s.on('error', () => {}); setTimeout(() => s.destroy(), 9000);`;
  const held = session.exec('bookinfo/client', ['node', '-e', hold], 30_000);
  try {
    const flow = page.locator('#flows tbody tr', { hasText: 'bookinfo/client' });
    await flow.first().waitFor({ timeout: 8_000 });
    assert.match((await flow.first().textContent()) ?? '', /^outbound/);
  } finally {
    await held;
  }
  // node-a's pods' identities, each with its certificate's remaining life (the lab's certificates last 24 h).
  for (const account of ['client', 'bookinfo-productpage', 'bookinfo-reviews', 'bookinfo-ratings']) {
    const row = page.locator('#certificates tbody tr', { hasText: `spiffe://cluster.local/ns/bookinfo/sa/${account}` });
    assert.match((await row.textContent()) ?? '', /Available\s*(2[0-3]|1?\d)h \d+m$/, `the certificate of ${account}`);
  }
  // Every connection the client made was redirected by ambit_connect4 and counted, as /metrics counts it.
  const redirected = page.locator('#capture tbody tr', { hasText: 'out-redirected' });
  const count = Number(((await redirected.textContent()) ?? '').replace('out-redirected', ''));
  assert.ok(count >= 12, `out-redirected shows ${count}; the client alone opened 12 connections`);
});

test('the capture panel lists the eBPF programs attached: the pods\' cgroups, the uplink, the agent, with the kernel\'s link ids', async () => {
  // node-a holds productpage, reviews-v1 and ratings-v1: each enrolled pod's cgroup carries the outbound programs.
  const rows = page.locator('#capture-links tbody tr');
  const row = (program: string, at: string) => rows.filter({ hasText: program }).filter({ hasText: at });
  await row('ambit_connect4', 'pod bookinfo/productpage-v1').waitFor({ timeout: 10_000 });
  for (const pod of ['productpage-v1', 'reviews-v1', 'ratings-v1']) {
    for (const program of ['ambit_connect4', 'ambit_connect6', 'ambit_sockops', 'ambit_getpeername4', 'ambit_getpeername6']) {
      assert.equal(await row(program, `pod bookinfo/${pod}: cgroup /`).count(), 1, `${program} of ${pod} is not listed`);
    }
  }
  assert.equal(await row('ambit_connect4', 'pod bookinfo/details-v1').count(), 0, "details-v1 is node-b's: not on node-a's list");
  assert.equal(await row('ambit_getsockopt', 'the agent: cgroup /').count(), 1);
  assert.match((await row('ambit_tc_uplink', 'uplink').first().textContent()) ?? '', /tcx ingress of \S+ \(ifindex \d+\), uplink/);
  assert.ok((await row('ambit_tc_pod', "a pod's veth").count()) >= 3, "each local pod's veth carries ambit_tc_pod");
  // What the page shows is what the kernel holds: each link id is the id of the link pinned there.
  const cells = await rows.evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')));
  assert.ok(cells.length >= 20, `${cells.length} links listed`);
  for (const [program, , linkId, pin] of cells) {
    const kernel = JSON.parse(execFileSync('bpftool', ['link', 'show', 'pinned', pin!, '-j'], { encoding: 'utf8' })) as { id: number; type: string | number };
    assert.equal(String(kernel.id), linkId, `${program} at ${pin}: the page says link ${linkId}, the kernel ${kernel.id}`);
    // Debian 12's bpftool predates tcx and prints its link type as the number BPF_LINK_TYPE_TCX (11).
    assert.ok(program!.startsWith('ambit_tc_') ? kernel.type === 'tcx' || kernel.type === 11 : kernel.type === 'cgroup', `${program} at ${pin} is a ${kernel.type} link`);
  }
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

test('the page loads nothing from elsewhere: every request went to the agent, and its policy keeps it so', () => {
  assert.ok(requested.length > 10, `${requested.length} requests: the page and its polls`);
  assert.deepEqual(requested.filter((u) => !u.startsWith(`${origin}/`)), []);
  assert.match(policy, /default-src 'self'/);
});

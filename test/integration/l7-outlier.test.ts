// Outlier detection in the lab (issue 5): a client pod on node alpha sends HTTP/1.1 keep-alive requests
// to a Service whose two pods run on beta; one of them answers 503 until it is switched back to health.
// Alpha's agent ejects it after consecutive5xxErrors and returns it after baseEjectionTime, as Envoy's
// outlier detector does for Istio's outlierDetection. Assertions count requests per pod; the only
// clock the test reads is the client's, to send the "while ejected" burst well inside the ejection.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { LabSession, tally, twoNodesYaml } from './helpers/lab-session.js';

const LAB = `tod${process.pid % 1000}`;
const session = LabSession.inTempDir(LAB, 'ambit-outlier-test-');

const GOOD = 'od-good';
const BAD = 'od-bad';
const BAD_ENDPOINT = '10.237.2.12:9080';
/** The DestinationRule's baseEjectionTime; the burst "while ejected" is sent within half of it. */
const BASE_EJECTION_MS = 3000;
const WINDOW_MS = 1500;

// Both pods run this: it names itself in x-pod (on failures too), counts requests to /req, answers 503
// while failing (from the start when FAIL=1), and in-pod GET /heal on loopback switches it to healthy
// and answers how many /req it has served so far.
const SERVER = `const http = require('http'); const name = process.env.POD_NAME; let failing = process.env.FAIL === '1'; let hits = 0;
http.createServer((q, s) => {
  if (q.url === '/heal') { failing = false; return s.end(String(hits)); }
  if (q.url.startsWith('/req')) hits++;
  s.setHeader('x-pod', name);
  if (failing) { s.writeHead(503); return s.end(name + ' failing'); }
  s.end(name + ' ok');
}).listen(9080);`;

interface Hit {
  readonly status: number | 'error';
  readonly pod: string;
  /** Client time at which the request was sent, relative to the response that ejected the pod. */
  readonly at?: number;
  readonly error?: string;
}

// Phase one, in one client process so that nothing slow sits between the ejection and the burst: GET
// until the failing pod has answered 503 twice (at most 40 requests), then GET (at most 20 times) for
// as long as less than WINDOW ms have passed since that second 503.
const EJECT_CLIENT = `const http = require('http'); const [url, windowMs] = process.argv.slice(1); const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const get = () => new Promise((done) => { const t = Date.now(); const r = http.get(url, { agent }, (s) => { s.resume(); s.on('end', () => done({ t, status: s.statusCode, pod: s.headers['x-pod'] || '-' })); });
  r.setTimeout(10000, () => r.destroy(new Error('timed out'))); r.on('error', (e) => done({ t, status: 'error', pod: '-', error: e.message })); });
(async () => { const before = []; let failures = 0;
  for (let i = 0; i < 40 && failures < 2; i++) { const h = await get(); before.push(h); if (h.pod === '${BAD}' && h.status === 503) failures++; }
  const ejected = Date.now(); const during = [];
  while (failures === 2 && during.length < 20 && Date.now() - ejected < Number(windowMs)) { const h = await get(); during.push({ ...h, at: h.t - ejected }); }
  console.log(JSON.stringify({ before, during })); process.exit(0); })();`;

// n sequential GETs over one keep-alive connection, each one's status and pod.
const CLIENT = `const http = require('http'); const [url, n] = process.argv.slice(1); const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const get = () => new Promise((done) => { const r = http.get(url, { agent }, (s) => { s.resume(); s.on('end', () => done({ status: s.statusCode, pod: s.headers['x-pod'] || '-' })); });
  r.setTimeout(10000, () => r.destroy(new Error('timed out'))); r.on('error', (e) => done({ status: 'error', pod: '-', error: e.message })); });
(async () => { const out = []; for (let i = 0; i < Number(n); i++) out.push(await get()); console.log(JSON.stringify(out)); process.exit(0); })();`;

function meshYaml(): string {
  const pod = (name: string, ip: string, fail: boolean): string => `---
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: shop, labels: { app: outlier } }
spec:
  nodeName: beta
  containers:
    - name: main
      command: ${JSON.stringify(['node', '-e', SERVER])}
      env: [{ name: POD_NAME, valueFrom: { fieldRef: { fieldPath: metadata.name } } }, { name: FAIL, value: "${fail ? 1 : 0}" }]
      ports: [{ name: http, containerPort: 9080 }]
status: { podIP: ${ip} }
`;
  return `${twoNodesYaml(87, 237)}
---
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: shop, labels: { app: client } }
spec:
  nodeName: alpha
  containers: [{ name: main, command: ["sleep", "infinity"] }]
status: { podIP: 10.237.1.20 }
${pod(GOOD, '10.237.2.11', false)}${pod(BAD, '10.237.2.12', true)}---
apiVersion: v1
kind: Service
metadata: { name: outlier, namespace: shop }
spec: { clusterIP: 10.103.0.61, selector: { app: outlier }, ports: [{ name: http, port: 9080, targetPort: 9080 }] }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: outlier, namespace: shop }
spec:
  host: outlier
  trafficPolicy:
    loadBalancer: { simple: ROUND_ROBIN }
    outlierDetection: { consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: ${BASE_EJECTION_MS / 1000}s, maxEjectionPercent: 100 }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: outlier, namespace: shop }
spec:
  hosts: [outlier]
  http:
  - route: [{ destination: { host: outlier } }]
    retries: { attempts: 0 }
`;
}

const URL_ = 'http://outlier.shop:9080/req';

async function client<T>(script: string, args: readonly string[]): Promise<T> {
  const r = await session.exec('shop/client', ['node', '-e', script, ...args], 90_000);
  assert.equal(r.code, 0, `client failed (exit ${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

before(() => session.up(meshYaml(), 90));

after(async () => {
  await session.down();
});

test('outlier detection ejects an endpoint after 2 consecutive 503s and returns it after baseEjectionTime once it is healthy', { timeout: 300_000 }, async () => {
  // Ejection: round robin sends every other request to the failing pod until its second 503.
  const { before: first, during } = await client<{ before: Hit[]; during: Hit[] }>(EJECT_CLIENT, [URL_, String(WINDOW_MS)]);
  const firstTally = tally(first);
  assert.equal(firstTally[`${BAD} 503`], 2, `the failing pod never answered 503 twice: ${JSON.stringify(firstTally)}`);
  for (const k of Object.keys(firstTally)) assert.ok(k === `${BAD} 503` || k === `${GOOD} 200`, `unexpected answer before the ejection: ${JSON.stringify(first)}`);
  assert.ok(first.length <= 6, `round robin should reach the failing pod twice within 6 requests: ${JSON.stringify(first)}`);

  // While ejected: every request of the burst lands on the healthy pod and succeeds.
  assert.ok(during.length >= 3, `too few requests in the ${WINDOW_MS} ms after the ejection: ${JSON.stringify(during)}`);
  assert.deepEqual(tally(during), { [`${GOOD} 200`]: during.length }, `a request reached the ejected pod: ${JSON.stringify(during)}`);

  // Switch the failing pod to healthy, from inside it; it has served only the two failed requests.
  const heal = await session.exec(`shop/${BAD}`, ['node', '-e', "require('http').get('http://127.0.0.1:9080/heal', (r) => { let b = ''; r.on('data', (d) => (b += d)); r.on('end', () => { console.log(b); process.exit(r.statusCode === 200 ? 0 : 1); }); }).on('error', (e) => { console.error(e.message); process.exit(1); });"], 30_000);
  assert.equal(heal.code, 0, `could not switch ${BAD} to healthy: ${heal.stderr}`);
  assert.equal(heal.stdout.trim(), '2', 'the ejected pod received requests besides the two that ejected it');

  // Return: after baseEjectionTime (and the next interval tick) it gets traffic again, all answered 200.
  const later: Hit[] = [];
  const deadline = Date.now() + 120_000;
  for (let round = 0; round < 30 && Date.now() < deadline; round++) {
    later.push(...(await client<Hit[]>(CLIENT, [URL_, '10'])));
    if ((tally(later)[`${BAD} 200`] ?? 0) >= 3) break;
  }
  const laterTally = tally(later);
  assert.ok((laterTally[`${BAD} 200`] ?? 0) >= 3, `the healed pod did not get traffic back: ${JSON.stringify(laterTally)}`);
  assert.equal((laterTally[`${BAD} 200`] ?? 0) + (laterTally[`${GOOD} 200`] ?? 0), later.length, `not every request succeeded: ${JSON.stringify(laterTally)}`);

  console.log(`# before the ejection ${JSON.stringify(firstTally)}; while ejected ${JSON.stringify(tally(during))} within ${during.at(-1)?.at ?? 0} ms; after ${JSON.stringify(laterTally)}`);
  const log = await session.agentLog('alpha');
  assert.match(log, new RegExp(`"msg":"outlier detection: ${BAD_ENDPOINT.replace(/\./g, '\\.')} ejected"`));
  assert.match(log, new RegExp(`"msg":"outlier detection: ${BAD_ENDPOINT.replace(/\./g, '\\.')} returned"`));
});

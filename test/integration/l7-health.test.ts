// Active health checks in the lab (issue 5): a client pod on node alpha sends HTTP/1.1 keep-alive
// requests to Services whose two pods run on beta, under STRICT PeerAuthentication. Each pod has a
// readinessProbe (periodSeconds 1, failureThreshold 2); alpha's agent probes it over HBONE as the client
// workload. One pod is switched to fail its probe while it keeps answering requests: it leaves the
// balancing set within a few periods (no request fails meanwhile) and rejoins once switched back.
// Service hc-http uses an httpGet probe (the pod answers 503 on the probe path), hc-tcp a tcpSocket
// probe on a port the pod stops listening on. A second client, on beta, makes beta's agent probe the
// pods of its own node too: directly, from the node.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { eventually } from './helpers/lab-cli.js';
import { LabSession, tally, twoNodesYaml } from './helpers/lab-session.js';

const LAB = `thc${process.pid % 1000}`;
const session = LabSession.inTempDir(LAB, 'ambit-health-test-');
const CLIENT_IP = '10.239.1.20';
const CLIENT_BETA_IP = '10.239.2.30';
/** The node's side of every pod's veth in the lab (agent/lab/layout.ts POD_GATEWAY): where a node's own connections to its pods come from. */
const NODE_SIDE_IP = '169.254.1.1';
const PROBE_UA = 'ambit-health-check/1';

// Every pod runs this: /req answers 200 naming the pod (failing or not); /healthz answers 503 while
// failing; port 9091 accepts TCP only while not failing; GET /fail and /recover (sent by the client, through
// the mesh) switch it, and /probes lists where the agent's probes (by User-Agent) came from.
const SERVER = `const http = require('http'); const net = require('net'); const name = process.env.POD_NAME; let failing = false; const probes = [];
let tcp; const listenTcp = () => { tcp = net.createServer((c) => c.destroy()).listen(9091); }; listenTcp();
const server = http.createServer((q, s) => {
  if (q.url === '/fail') { failing = true; tcp.close(); return s.end('failing'); }
  if (q.url === '/recover') { failing = false; listenTcp(); return s.end('recovered'); }
  if (q.url === '/probes') return s.end(JSON.stringify(probes));
  if (q.url === '/healthz') { if (q.headers['user-agent'] === '${PROBE_UA}') probes.push(q.socket.remoteAddress.replace('::ffff:', '')); s.writeHead(failing ? 503 : 200); return s.end(); }
  s.setHeader('x-pod', name); s.end(name + ' ok');
}); server.listen(9080);`;

interface Hit {
  readonly status: number | 'error';
  readonly pod: string;
  /** Client time relative to the last switch, in ms. */
  readonly t: number;
  readonly error?: string;
}

interface Run {
  readonly both: Hit[];
  readonly removing: Hit[];
  readonly removed: Hit[];
  readonly returning: Hit[];
}

// One client process runs the whole scenario, so that the times it reports are the client's own, with
// no `lab exec` in between: GETs 50 ms apart over one keep-alive connection to the Service URL; the
// switches are GETs to the bad pod's own address (through the mesh, like any request).
//   both: 30 requests; then /fail on the bad pod;
//   removing: until 20 answers in a row came from the good pod (at most 600 requests, 30 s);
//   removed: 30 requests; then /recover on the bad pod;
//   returning: until the bad pod has answered 3 times (at most 600 requests, 30 s).
const CLIENT = `const http = require('http'); const [url, badUrl, good, bad] = process.argv.slice(1); const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
let since = Date.now(); const get = (u) => new Promise((done) => { const r = http.get(u, { agent }, (s) => { s.resume(); s.on('end', () => done({ status: s.statusCode, pod: s.headers['x-pod'] || '-', t: Date.now() - since })); });
  r.setTimeout(10000, () => r.destroy(new Error('timed out'))); r.on('error', (e) => done({ status: 'error', pod: '-', t: Date.now() - since, error: e.message })); });
const pause = () => new Promise((r) => setTimeout(r, 50));
const until = async (stop) => { const out = []; const start = Date.now(); while (out.length < 600 && Date.now() - start < 30000) { out.push(await get(url)); if (stop(out)) break; await pause(); } return out; };
const sw = async (path) => { const h = await get(badUrl + path); if (h.status !== 200) { console.error('switch ' + path + ' failed: ' + JSON.stringify(h)); process.exit(1); } since = Date.now(); };
(async () => { const both = []; for (let i = 0; i < 30; i++) { both.push(await get(url)); await pause(); }
  await sw('/fail'); const removing = await until((out) => out.length >= 20 && out.slice(-20).every((h) => h.pod === good));
  const removed = []; for (let i = 0; i < 30; i++) { removed.push(await get(url)); await pause(); }
  await sw('/recover'); const returning = await until((out) => out.filter((h) => h.pod === bad).length >= 3);
  console.log(JSON.stringify({ both, removing, removed, returning })); process.exit(0); })();`;

function meshYaml(): string {
  const pod = (name: string, ip: string, app: string, probe: string): string => `---
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: shop, labels: { app: ${app} } }
spec:
  nodeName: beta
  containers:
    - name: main
      command: ${JSON.stringify(['node', '-e', SERVER])}
      env: [{ name: POD_NAME, valueFrom: { fieldRef: { fieldPath: metadata.name } } }]
      ports: [{ name: http, containerPort: 9080 }, { name: health, containerPort: 9091 }]
      readinessProbe: { ${probe}, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 2, successThreshold: 1 }
status: { podIP: ${ip} }
`;
  const service = (name: string, vip: string): string => `---
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: shop }
spec: { clusterIP: ${vip}, selector: { app: ${name} }, ports: [{ name: http, port: 9080, targetPort: 9080 }] }
`;
  const httpProbe = 'httpGet: { path: /healthz, port: http }';
  const tcpProbe = 'tcpSocket: { port: health }';
  return `${twoNodesYaml(89, 239)}
---
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: strict, namespace: shop }
spec: { mtls: { mode: STRICT } }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: shop, labels: { app: client } }
spec:
  nodeName: alpha
  containers: [{ name: main, command: ["sleep", "infinity"] }]
status: { podIP: ${CLIENT_IP} }
---
apiVersion: v1
kind: Pod
metadata: { name: client-beta, namespace: shop, labels: { app: client } }
spec:
  nodeName: beta
  containers: [{ name: main, command: ["sleep", "infinity"] }]
status: { podIP: ${CLIENT_BETA_IP} }
${pod('hc-http-a', '10.239.2.11', 'hc-http', httpProbe)}${pod('hc-http-b', '10.239.2.12', 'hc-http', httpProbe)}${pod('hc-tcp-a', '10.239.2.21', 'hc-tcp', tcpProbe)}${pod('hc-tcp-b', '10.239.2.22', 'hc-tcp', tcpProbe)}${service('hc-http', '10.105.0.71')}${service('hc-tcp', '10.105.0.72')}`;
}

async function scenario(service: string, good: string, bad: string, badIp: string): Promise<Run> {
  const r = await session.exec('shop/client', ['node', '-e', CLIENT, `http://${service}.shop:9080/req`, `http://${badIp}:9080`, good, bad], 150_000);
  assert.equal(r.code, 0, `client failed (exit ${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as Run;
}

/** GET on the pod's own loopback (never captured), for the switches and the probe record. */
async function inPod(pod: string, path: string): Promise<string> {
  const script = `require('http').get('http://127.0.0.1:9080${path}', (r) => { let b = ''; r.on('data', (d) => (b += d)); r.on('end', () => { console.log(b); process.exit(r.statusCode === 200 ? 0 : 1); }); }).on('error', (e) => { console.error(e.message); process.exit(1); });`;
  const r = await session.exec(`shop/${pod}`, ['node', '-e', script], 30_000);
  assert.equal(r.code, 0, `GET ${path} in ${pod} failed: ${r.stderr}`);
  return r.stdout.trim();
}

async function metrics(node: string): Promise<string> {
  return (await session.exec(`node/${node}`, ['curl', '-s', 'http://127.0.0.1:15020/metrics'])).stdout;
}

before(() => session.up(meshYaml(), 120));

after(async () => {
  await session.down();
});

/** Requests that got 200 from `good` or `bad`: all of them, or the tally says which did not. */
function allSucceeded(hits: readonly Hit[], good: string, bad: string, phase: string): void {
  const t = tally(hits);
  assert.equal((t[`${good} 200`] ?? 0) + (t[`${bad} 200`] ?? 0), hits.length, `a request failed ${phase}: ${JSON.stringify(t)}`);
}

/**
 * The scenario for one Service: traffic reaches both pods; `bad` fails its probe (and only its probe)
 * and stops getting requests within a few periods, with no request failing; recovered, it gets requests
 * again. Returns a summary line with the client's timings.
 */
async function removeAndRestore(service: string, good: string, bad: string, badIp: string): Promise<string> {
  const badEndpoint = `${badIp}:9080`;
  const cluster = `outbound|9080||${service}.shop.svc.cluster.local`;
  const run = await scenario(service, good, bad, badIp);
  const bothTally = tally(run.both);
  assert.ok((bothTally[`${good} 200`] ?? 0) >= 3 && (bothTally[`${bad} 200`] ?? 0) >= 3, `requests did not reach both pods: ${JSON.stringify(bothTally)}`);
  allSucceeded(run.both, good, bad, 'before the switch');

  // Removal: periods of 1 s and 2 failures needed, so about 2-3 s; 10 s leaves room for a busy machine.
  allSucceeded(run.removing, good, bad, `while ${bad} was being removed`);
  const tail = run.removing.slice(-20);
  assert.ok(tail.length === 20 && tail.every((h) => h.pod === good), `${bad} was not removed within 30 s: ${JSON.stringify(tally(run.removing))}`);
  const lastBad = run.removing.findLast((h) => h.pod === bad)?.t ?? 0;
  assert.ok(lastBad < 10_000, `${bad} still got requests ${lastBad} ms after its probe started failing`);
  assert.deepEqual(tally(run.removed), { [`${good} 200`]: run.removed.length }, `${bad} got requests while unhealthy: ${JSON.stringify(run.removed)}`);

  // Return: one passing probe (successThreshold 1) puts it back.
  allSucceeded(run.returning, good, bad, 'after the recovery');
  const firstBack = run.returning.find((h) => h.pod === bad)?.t;
  assert.ok(firstBack !== undefined && run.returning.filter((h) => h.pod === bad).length >= 3, `${bad} did not get traffic back within 30 s: ${JSON.stringify(tally(run.returning))}`);
  assert.ok(firstBack < 10_000, `${bad} got traffic back only ${firstBack} ms after recovering`);

  const log = await session.agentLog('alpha');
  const quoted = (text: string): string => text.replace(/[|.]/g, '\\$&');
  assert.match(log, new RegExp(`"endpoint":"${quoted(badEndpoint)}","clusters":\\["${quoted(cluster)}"\\],"reason":"[^"]+","msg":"health check: ${quoted(badEndpoint)} unhealthy, out of the balancing set"`));
  assert.match(log, new RegExp(`"msg":"health check: ${quoted(badEndpoint)} healthy, back in the balancing set"`));
  const text = await metrics('alpha');
  for (const state of ['unhealthy', 'healthy']) {
    assert.match(text, new RegExp(`ambit_health_check_transitions_total\\{cluster="${quoted(cluster)}",state="${state}"\\} 1\\b`), `no ${state} transition counted for ${cluster}`);
  }
  return `${service}: both ${JSON.stringify(bothTally)}; removing ${JSON.stringify(tally(run.removing))}, last request on ${bad} ${lastBad} ms after the switch; removed ${JSON.stringify(tally(run.removed))}; first back ${firstBack} ms after recovery, ${JSON.stringify(tally(run.returning))}`;
}

test('an endpoint failing its httpGet readinessProbe leaves the balancing set and returns when it passes; probes come over HBONE from the client pod', { timeout: 400_000 }, async () => {
  const summary = await removeAndRestore('hc-http', 'hc-http-a', 'hc-http-b', '10.239.2.12');
  // Probes reached the pods on another node under STRICT mTLS, so through HBONE, as the client workload.
  for (const pod of ['hc-http-a', 'hc-http-b']) {
    const from = JSON.parse(await inPod(pod, '/probes')) as string[];
    assert.ok(from.length >= 5, `${pod} saw only ${from.length} probes from the agent`);
    assert.deepEqual([...new Set(from)], [CLIENT_IP], `${pod}'s probes did not come from the client pod's address`);
  }
  // A client on beta itself: beta's agent probes the pods of its own node directly, from the node, as a kubelet does.
  const local = await session.exec('shop/client-beta', ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '10', 'http://hc-http.shop:9080/req'], 30_000);
  assert.equal(local.stdout, '200', `the request from beta failed: ${local.stderr}`);
  const fromBeta = await eventually('beta to probe its local endpoints', async () => {
    const from = JSON.parse(await inPod('hc-http-a', '/probes')) as string[];
    return from.includes(NODE_SIDE_IP) ? from : undefined;
  });
  assert.deepEqual([...new Set(fromBeta)].sort(), [NODE_SIDE_IP, CLIENT_IP].sort(), 'probes came from an unexpected address');
  console.log(`# ${summary}`);
});

test('an endpoint failing its tcpSocket readinessProbe leaves the balancing set and returns when it passes', { timeout: 400_000 }, async () => {
  console.log(`# ${await removeAndRestore('hc-tcp', 'hc-tcp-a', 'hc-tcp-b', '10.239.2.22')}`);
});

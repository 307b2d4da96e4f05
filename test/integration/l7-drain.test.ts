// A destination agent drains while source agents keep idle HTTP upstream connections into it (they
// keep every connection of a burst, 5 min after the client's last connection): it must not wait its
// drain deadline for them, and no request fails. A client pod on beta sends a burst of 8 concurrent
// requests to a pod on alpha (so beta's agent keeps 8 upstream connections, HBONE streams into alpha),
// then one request a second (each on a kept connection, 7 of 8 idle at any moment), while alpha's agent is upgraded.
// Needs root and a built dist/ (make build); AMBIT_TEST_MAIN runs another build.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { retiredDrains } from './helpers/agent-drains.js';
import { ambit } from './helpers/lab-cli.js';
import { LabProcess, type Report } from './helpers/lab-process.js';
import { LabSession, twoNodesYaml } from './helpers/lab-session.js';

const LAB = `tl7d${process.pid % 1000}`;
const session = LabSession.inTempDir(LAB, 'ambit-l7-drain-test-');

/** Answers /slow after 300 ms (so that a burst's requests overlap), anything else at once. */
const SERVER = `require('http').createServer((q, s) => setTimeout(() => s.end('ok'), q.url === '/slow' ? 300 : 0)).listen(8080);`;

/**
 * `<host>`: 8 concurrent GET /slow on a keep-alive agent, then a GET / every second; a progress line every
 * 500 ms with ok, fail and the errors seen (any error, a 5 s timeout or a status other than 200 fails).
 */
const LOAD = `const http = require('http'); const host = process.argv[1];
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
let ok = 0, fail = 0; const errors = {};
const failed = (why) => { fail++; errors[why] = (errors[why] || 0) + 1; };
const get = (path) => new Promise((done) => {
  const req = http.get({ host, port: 80, path, agent, timeout: 5000 }, (res) => {
    res.resume(); res.on('end', () => { if (res.statusCode === 200) ok++; else failed('status ' + res.statusCode); done(); });
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', (e) => { failed(e.code || e.message); done(); });
});
Promise.all(Array.from({ length: 8 }, () => get('/slow'))).then(() => {
  console.log(JSON.stringify({ event: 'burst', at: Date.now(), ok, fail }));
  setInterval(() => get('/'), 1000);
  setInterval(() => console.log(JSON.stringify({ event: 'progress', at: Date.now(), ok, fail, errors })), 500);
});`;

const MESH = `${twoNodesYaml(93, 253)}---
apiVersion: v1
kind: Namespace
metadata: { name: drain, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: ServiceAccount
metadata: { name: web, namespace: drain }
---
apiVersion: v1
kind: ServiceAccount
metadata: { name: client, namespace: drain }
---
apiVersion: v1
kind: Pod
metadata: { name: web, namespace: drain, labels: { app: web } }
spec: { nodeName: alpha, serviceAccountName: web, containers: [{ name: main, command: ${JSON.stringify(['node', '-e', SERVER])} }] }
status: { podIP: 10.253.1.10 }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: drain, labels: { app: client } }
spec: { nodeName: beta, serviceAccountName: client, containers: [{ name: main, command: ["sleep", "infinity"] }] }
status: { podIP: 10.253.2.20 }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: drain }
spec:
  clusterIP: 10.97.53.10
  selector: { app: web }
  ports: [{ name: http, port: 80, targetPort: 8080 }]
`;

before(async () => {
  await session.up(MESH, 180);
});

after(async () => {
  await session.down();
});

test("a draining agent closes the idle HTTP connections kept into it at once: no failed request, no wait for its deadline", async (t) => {
  const client = new LabProcess(LAB, 'drain/client', ['node', '-e', LOAD, '10.97.53.10']);
  let last: Report | undefined;
  try {
    const burst = await client.line('the burst answered', (r) => r['event'] === 'burst', 60_000);
    assert.equal(burst['fail'], 0, `the burst before the upgrade failed: ${JSON.stringify(burst)}`);
    await client.line('requests flowing', (r) => r['event'] === 'progress' && Number(r['ok']) > 10, 30_000);
    const upgrade = await ambit(['lab', 'upgrade', '--lab', LAB, 'node/alpha', '--timeout', '120'], 150_000);
    assert.equal(upgrade.code, 0, `the upgrade failed:\n${upgrade.stdout}\n${upgrade.stderr}`);
    t.diagnostic(upgrade.stdout.trim());
    const seen = Date.now();
    last = await client.line('requests after the upgrade', (r) => r['event'] === 'progress' && Number(r['at']) > seen + 1000, 30_000);
  } finally {
    client.kill();
  }
  t.diagnostic(`client: ${JSON.stringify(last)}`);
  assert.equal(last['fail'], 0, `requests failed across the upgrade: ${JSON.stringify(last['errors'])}`);
  const drains = retiredDrains(await session.agentLog('alpha'));
  t.diagnostic(`retired agent, from 'shutting down' to its last log line: ${drains.map((d) => `pid ${d.pid} ${d.ms} ms${d.deadline ? ' (waited its drain deadline)' : ''}`).join(', ')}`);
  assert.equal(drains.length, 1, 'the upgrade retired one agent that logged its shutdown');
  t.diagnostic(`its lines from then on:\n${drains[0]!.lines.slice(0, 15).join('\n')}`);
  assert.equal(drains[0]!.deadline, false, 'the retired agent waited its drain deadline for the idle kept connections');
});

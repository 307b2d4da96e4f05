// `ambit run` as a process: readiness, /config_dump and `ambit zc`, and live reload — a good edit
// applies, a bad edit is logged with file, line, object and field while the last good state serves.

import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { ConfigDump } from '../../agent/admin/config-dump.js';
import { AMBIT_MAIN, ambit, eventually, requireBuiltAmbit } from './helpers/lab-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'ambit-run-test-'));
const file = join(dir, 'mesh.yaml');
let agent: ChildProcessWithoutNullStreams;
let logs = '';
const ports: Record<string, number> = {};

const pod = (name: string, ip: string, port: string | number = 8080) => `---
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: shop, labels: { app: web } }
spec:
  nodeName: n1
  containers: [{ name: c, command: [x], ports: [{ containerPort: ${port} }] }]
status: { podIP: ${ip} }
`;
const base = `apiVersion: v1
kind: Node
metadata: { name: n1 }
status: { addresses: [{ type: InternalIP, address: 172.31.79.1 }] }
---
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { clusterIP: 10.98.0.1, selector: { app: web }, ports: [{ name: http, port: 80, targetPort: 8080 }] }
`;

async function dump(): Promise<ConfigDump> {
  const res = await fetch(`http://127.0.0.1:${ports['admin']}/config_dump`);
  assert.equal(res.status, 200);
  return (await res.json()) as ConfigDump;
}

before(async () => {
  requireBuiltAmbit();
  writeFileSync(file, base + pod('a', '10.246.0.1'));
  agent = spawn(process.execPath, [AMBIT_MAIN, 'run', '--node', 'n1', '--config', dir, '--capture', 'none', '--readiness-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0', '--metrics-address', '127.0.0.1:0']);
  agent.stdout.on('data', (d: Buffer) => {
    logs += d.toString();
    for (const m of d.toString().matchAll(/"msg":"(readiness|admin) server listening on 127\.0\.0\.1:(\d+)"/g)) ports[m[1]!] = Number(m[2]);
  });
  await eventually('the agent to listen', async () => (ports['admin'] && ports['readiness'] ? true : undefined), 15_000);
});

after(() => {
  agent.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
});

test('readiness answers 200 once the configuration is loaded', async () => {
  const ready = await eventually('readiness', async () => {
    const res = await fetch(`http://127.0.0.1:${ports['readiness']}/healthz/ready`);
    return res.status === 200 ? await res.text() : undefined;
  });
  assert.equal(ready, 'ready\n');
});

test('config_dump and `ambit zc` show workloads and services in istioctl ztunnel-config shape', async () => {
  const d = await dump();
  assert.deepEqual(
    d.workloads.map((w) => [w.uid, w.workloadIps, w.protocol, w.serviceAccount, w.node]),
    [['Kubernetes//Pod/shop/a', ['10.246.0.1'], 'HBONE', 'default', 'n1']],
  );
  assert.deepEqual(d.services[0]?.vips, ['/10.98.0.1']);
  const zc = await ambit(['zc', 'services', '--admin-address', `127.0.0.1:${ports['admin']}`]);
  assert.equal(zc.code, 0, zc.stderr);
  assert.equal(zc.stdout, 'NAMESPACE SERVICE NAME SERVICE VIP WAYPOINT ENDPOINTS\nshop      web          10.98.0.1   None     1/1\n');
});

test('a good edit applies live', async () => {
  writeFileSync(file, base + pod('a', '10.246.0.1') + pod('b', '10.246.0.2'));
  const d = await eventually('pod b in config_dump', async () => {
    const d = await dump();
    return d.workloads.length === 2 ? d : undefined;
  });
  assert.deepEqual(d.workloads.map((w) => w.name).sort(), ['a', 'b']);
  assert.equal(Object.keys(d.services[0]!.endpoints).length, 2);
});

test('a bad edit is logged precisely and the last good version of the object stays in force', async () => {
  const before = (await dump()).snapshotVersion;
  // Pod b's container port becomes a string: invalid; pod c is new and valid.
  writeFileSync(file, base + pod('a', '10.246.0.1') + pod('b', '10.246.0.3', '"http"') + pod('c', '10.246.0.4'));
  const d = await eventually('the edit to be applied', async () => {
    const d = await dump();
    return d.snapshotVersion > before ? d : undefined;
  });
  assert.deepEqual(d.workloads.map((w) => [w.name, w.workloadIps[0]]).sort(), [
    ['a', '10.246.0.1'],
    ['b', '10.246.0.2'],
    ['c', '10.246.0.4'],
  ]);
  assert.match(logs, new RegExp(`${file.replaceAll('/', '\\/')}:\\d+: Pod shop/b: spec\\.containers\\[0\\]\\.ports\\[0\\]\\.containerPort: expected an integer`));
});

test('POST /quitquitquit stops the agent cleanly', async () => {
  const exited = new Promise<number | null>((resolve) => agent.once('exit', (code) => resolve(code)));
  const res = await fetch(`http://127.0.0.1:${ports['admin']}/quitquitquit`, { method: 'POST' });
  assert.equal(res.status, 200);
  assert.equal(await exited, 0);
});

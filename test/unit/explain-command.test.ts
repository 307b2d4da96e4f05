// `ambit explain` against cluster agents through their admin ports: with --destination-admin-address
// the source's agent judges the source side and the destination's agent its own admission, with the
// configuration each has in force (here the destination's agent already has a DENY policy the source's
// has not seen), as a port-forward to each node's agent would give.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { AdminServer } from '../../agent/admin/admin-server.js';
import { parseConfigFile } from '../../agent/config/load.js';
import type { Explanation } from '../../agent/explain/explanation.js';
import { buildSnapshot } from '../../agent/state/build.js';
import { WorkloadStore } from '../../agent/state/store.js';

const MAIN = fileURLToPath(new URL('../../agent/cli/main.ts', import.meta.url));

const MESH = `apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Node
metadata: { name: node-a }
status: { addresses: [{ type: InternalIP, address: 10.10.0.1 }] }
---
apiVersion: v1
kind: Node
metadata: { name: node-b }
status: { addresses: [{ type: InternalIP, address: 10.10.0.2 }] }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: shop, labels: { app: client } }
spec: { nodeName: node-a, serviceAccountName: client, containers: [{ name: c, command: [x] }] }
status: { podIP: 10.20.1.5 }
---
apiVersion: v1
kind: Pod
metadata: { name: web-1, namespace: shop, labels: { app: web } }
spec: { nodeName: node-b, serviceAccountName: web, containers: [{ name: c, command: [x], ports: [{ name: http, containerPort: 8080 }] }] }
status: { podIP: 10.20.2.5 }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { clusterIP: 10.96.0.10, selector: { app: web }, ports: [{ name: http, port: 80, targetPort: 8080 }] }
`;

const DENY = `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: web-deny-admin, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  action: DENY
  rules: [{ to: [{ operation: { paths: [/admin] } }] }]
`;

/** One node's agent: its admin server on loopback with its own configuration in force. */
async function agentOf(node: string, yaml: string, version: number): Promise<{ address: string; close: () => Promise<void> }> {
  const parsed = parseConfigFile(yaml, `${node}.yaml`);
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error'), []);
  const store = new WorkloadStore();
  store.replace(buildSnapshot(parsed.objects, { version, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' }));
  const admin = new AdminServer({ store, node, log: pino({ level: 'silent' }), quit: () => {} });
  const { port } = await admin.listen('127.0.0.1', 0);
  return { address: `127.0.0.1:${port}`, close: () => admin.close() };
}

test('--admin-address asks the source node\'s agent, --destination-admin-address the destination\'s, and each judges its side', async () => {
  const source = await agentOf('node-a', MESH, 3);
  const destination = await agentOf('node-b', MESH + DENY, 4);
  try {
    const explain = async (...extra: string[]): Promise<Explanation> => {
      const args = [MAIN, 'explain', 'shop/client', 'web.shop:80', '--http', 'GET /admin', '--admin-address', source.address, ...extra, '--json'];
      const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', ...args], { timeout: 30_000 });
      return JSON.parse(stdout) as Explanation;
    };
    // Asked alone, node-a's agent judges admission with its own configuration, which lacks the policy.
    const alone = await explain();
    assert.equal(alone.verdict, 'allow');
    assert.deepEqual(alone.snapshots, { 'node-a': 3 });

    const both = await explain('--destination-admin-address', destination.address);
    assert.equal(both.verdict, 'deny');
    assert.deepEqual(both.snapshots, { 'node-a': 3, 'node-b': 4 });
    const authorization = both.steps.find((s) => s.step === 'authorization');
    assert.equal(authorization?.decidedBy.object, 'AuthorizationPolicy shop/web-deny-admin');
    assert.match(authorization?.decidedBy.from ?? '', /^node-b\.yaml:\d+$/);
    assert.equal(authorization?.node, 'node-b');
    assert.equal(both.steps.find((s) => s.step === 'capture')?.node, 'node-a', 'the source side stays node-a\'s');
  } finally {
    await source.close();
    await destination.close();
  }
});

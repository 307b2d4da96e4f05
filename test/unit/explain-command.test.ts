// `ambit explain` against cluster agents through their admin ports: with --destination-admin-address
// the source's agent judges the source side and the destination's agent its own admission, with the
// configuration each has in force (here the destination's agent already has a DENY policy the source's
// has not seen), as a port-forward to each node's agent would give. The mesh is helpers/explain-mesh.ts's.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { AdminServer } from '../../agent/admin/admin-server.js';
import type { Explanation } from '../../agent/explain/explanation.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { mesh } from './helpers/explain-mesh.js';

const MAIN = fileURLToPath(new URL('../../agent/cli/main.ts', import.meta.url));

/** A policy only the destination's agent has in force. */
const DENY = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: web-deny-admin, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  action: DENY
  rules: [{ to: [{ operation: { paths: [/admin] } }] }]
`;

/** One node's agent: its admin server on loopback with the shared mesh and its own `extra` documents in force. */
async function agentOf(node: string, extra: string, version: number): Promise<{ address: string; close: () => Promise<void> }> {
  const store = new WorkloadStore();
  store.replace(mesh(extra, { file: `${node}.yaml`, version }));
  const admin = new AdminServer({ store, node, log: pino({ level: 'silent' }), quit: () => {} });
  const { port } = await admin.listen('127.0.0.1', 0);
  return { address: `127.0.0.1:${port}`, close: () => admin.close() };
}

test('--admin-address asks the source node\'s agent, --destination-admin-address the destination\'s, and each judges its side', async () => {
  const source = await agentOf('node-a', '', 3);
  const destination = await agentOf('node-b', DENY, 4);
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

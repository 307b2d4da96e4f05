// The soak, short form (issue 14 §4; `make soak` runs 30 minutes): 2 minutes of mixed load (HTTP on
// kept-alive and new connections, L4 echoes on new and held connections) across the nodes, a policy
// edit every 20 s and certificates renewed every ~15 s. Nothing fails, every request and connection is
// counted in the metrics, fds and live-connection tables return to where they were (memory is reported).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { faultMeshYaml } from './helpers/fault-lab.js';
import { LabSession } from './helpers/lab-session.js';
import { KEPT_UPSTREAM_CONNECTIONS, soak, soakMesh } from './helpers/soak-run.js';

const LAB = `sk${process.pid % 10000}`;
const MESH = soakMesh(86, 253);
const session = LabSession.inTempDir(LAB, 'ambit-soak-');
// Memory is reported here and judged by `make soak`'s 30 minutes. Two minutes cannot tell a leak from garbage
// V8 has promoted and not yet collected: without a full collection before each sample even the heap's
// troughs rose 0.7-27 MiB/min in clean CI runs (and RSS ±45). What leaks per connection shows here
// instead, in the fds and live-connection tables, which must return to where they were.

before(() => session.up(faultMeshYaml(MESH), 90, ['--cert-ttl', '30s']));
after(() => session.down());

test('2 minutes of mixed load with policy edits and certificate renewals: nothing fails, everything is counted, nothing grows', { timeout: 360_000 }, async () => {
  const r = await soak(session, LAB, MESH, 120_000, 20_000, 10_000);
  const c = r.client;
  console.log(`# ${JSON.stringify({ client: c, rssSlope: r.rssSlope, heapSlope: r.heapSlope, fds: r.fds, liveConnections: r.liveConnections, counted: r.counted, policyEdits: r.policyEdits, renewals: r.renewals })}`);
  assert.equal(c['failed'], 0, `requests or connections failed: ${JSON.stringify(c['reasons'])}`);
  assert.equal(c['lost'], 0, 'held connections were closed under the soak');
  assert.ok(r.policyEdits >= 2 && r.renewals >= 4, `the soak must cover policy edits (${r.policyEdits}) and renewals (${r.renewals})`);
  const made = Number(c['httpKept']) + Number(c['httpNew']);
  assert.equal(r.counted.requestsSource, made, 'alpha did not count every request it carried');
  assert.equal(r.counted.requestsDestination, made, 'beta did not count every request it received');
  assert.equal(r.counted.echoConnectionsSource, Number(c['l4New']) + 20, 'alpha did not count every L4 connection to echo');
  for (const node of ['alpha', 'beta'] as const) {
    assert.ok(r.liveConnections[node].during > r.liveConnections[node].before, `${node}'s live-connection table did not see the load`);
    // Back to where they were, but for the upstream connections alpha's L7 proxy keeps (soak-run.ts).
    assert.ok(r.liveConnections[node].after >= 0 && r.liveConnections[node].after <= r.liveConnections[node].before + KEPT_UPSTREAM_CONNECTIONS, `${node}'s live connections did not drain: ${JSON.stringify(r.liveConnections[node])}`);
    assert.ok(r.fds[node].after <= r.fds[node].before + 8, `${node}'s open fds grew: ${JSON.stringify(r.fds[node])}`);
  }
});

// The promise that where the mesh comes from does not matter: what istiod sends over xDS gives the same
// snapshot and the same policy decisions as the equivalent local YAML.

import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { LocalFileSource } from '../../agent/sources/local-files.js';
import { XdsSource } from '../../agent/sources/xds/xds-source.js';
import { canonicalName } from '../../agent/state/canonical.js';
import { type MeshSnapshot, spiffeId } from '../../agent/state/model.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { type RunningIstiod, startIstiod } from '../fixtures/istiod/running.js';
import { EQUIVALENT_YAML, NS, TOKEN, decide, pushBookinfo } from './helpers/xds-bookinfo.js';

const silent = pino({ level: 'silent' });
let istiod: RunningIstiod;
let source: XdsSource | undefined;

before(async () => {
  istiod = await startIstiod(TOKEN);
  pushBookinfo(istiod.server);
});

after(async () => {
  source?.close();
  await istiod.stop();
});

test('the xDS source gives the same snapshot and policy decisions as the equivalent local YAML', async () => {
  const store = new WorkloadStore();
  source = new XdsSource(istiod.agentOptions, store, silent);
  await source.load();
  const dir = join(istiod.tls.dir, 'yaml');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'mesh.yaml'), EQUIVALENT_YAML);
  const yamlStore = new WorkloadStore();
  const loaded = await new LocalFileSource({ paths: [dir], trustDomain: 'cluster.local', clusterDomain: 'cluster.local' }, yamlStore, silent).load();
  assert.equal(loaded.errors, 0);
  const yaml = loaded.snapshot;
  const xds = store.current!;

  // Workloads are keyed by istiod's uid in one and by namespace/name in the other; compare what they are.
  const workloadView = (s: MeshSnapshot) =>
    [...s.workloads.values()].map((w) => ({ name: `${w.namespace}/${w.name}`, ips: w.ips, identity: w.identity, node: w.node, ready: w.ready, enrolled: w.enrollment.enrolled, canonical: canonicalName(w) }));
  const serviceView = (s: MeshSnapshot) =>
    [...s.services.values()].map((v) => ({
      key: v.key,
      hostname: v.hostname,
      vips: v.vips,
      ports: v.ports.map((p) => [p.port, p.protocol]),
      endpoints: v.endpoints.map((e) => [s.workloads.get(e.workload)?.name, e.ip, [...e.ports]]),
    }));
  assert.deepEqual(workloadView(xds), workloadView(yaml));
  assert.deepEqual(serviceView(xds), serviceView(yaml));

  const gateway = spiffeId('cluster.local', NS, 'gateway');
  const frontend = spiffeId('cluster.local', 'frontend', 'web');
  const stranger = spiffeId('cluster.local', 'other', 'curl');
  for (const target of ['productpage-v1', 'reviews-v1']) {
    for (const peer of [gateway, frontend, stranger, undefined]) {
      for (const port of [9080, 9081]) {
        assert.deepEqual(decide(xds, target, peer, port), decide(yaml, target, peer, port), `${peer ?? 'plaintext'} → ${target}:${port}`);
      }
    }
  }
  // And the decisions are the ones Istio intends.
  assert.equal(decide(xds, 'productpage-v1', gateway, 9080).allowed, true);
  assert.equal(decide(xds, 'productpage-v1', stranger, 9080).allowed, false);
  assert.deepEqual(decide(xds, 'reviews-v1', undefined, 9080), { allowed: false, reason: 'denied', policy: 'istio-system/istio-converted-static-strict' });
});

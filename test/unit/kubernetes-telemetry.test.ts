// Telemetry in Kubernetes mode: objects applied to the lab's API server stand-in (the real list/watch
// protocol on loopback) reach the snapshot at load and through the watch, at v1 and v1alpha1.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FakeApiServer } from '../../agent/lab/kube-apiserver.js';
import type { KubernetesSource } from '../../agent/sources/kubernetes/source.js';
import type { MeshSnapshot } from '../../agent/state/model.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { kubeSourceFor } from './helpers/kube-source.js';

const telemetry = (apiVersion: string, sampling: number) => ({
  apiVersion,
  kind: 'Telemetry',
  metadata: { name: 'mesh-default', namespace: 'istio-system' },
  spec: { tracing: [{ randomSamplingPercentage: sampling }], accessLogging: [{ filter: { expression: 'response.code >= 500' } }] },
});

test('a Telemetry from the API server is in force, and follows the watch', async () => {
  const server = new FakeApiServer({});
  await server.start();
  const dir = await mkdtemp(join(tmpdir(), 'ambit-telemetry-'));
  const store = new WorkloadStore();
  let source: KubernetesSource | undefined;
  try {
    server.apply(telemetry('telemetry.istio.io/v1alpha1', 10));
    source = await kubeSourceFor(server, store, dir);
    const loaded = await source.load();
    assert.equal(loaded.errors, 0);
    const sampling = (s: MeshSnapshot | undefined) => s?.istio.telemetries[0]?.spec.tracing[0]?.randomSamplingPercentage;
    assert.equal(sampling(loaded.snapshot), 10);
    assert.ok(loaded.snapshot.istio.telemetries[0]?.spec.accessLogging[0]?.filter);

    await source.watch();
    server.apply(telemetry('telemetry.istio.io/v1', 100));
    const deadline = Date.now() + 5000;
    while (sampling(store.current) !== 100) {
      if (Date.now() > deadline) assert.fail(`the watched change did not arrive in 5 s: ${sampling(store.current)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    await source?.close();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

// ServiceEntry and WorkloadEntry in Kubernetes mode: objects applied to the lab's API server stand-in
// (which speaks the real list/watch protocol on loopback) reach the agent's snapshot as they do from YAML,
// at load and through the watch.

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

const serviceEntry = (host: string, address: string) => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'ServiceEntry',
  metadata: { name: 'payments', namespace: 'shop' },
  spec: { hosts: [host], location: 'MESH_EXTERNAL', resolution: 'STATIC', ports: [{ number: 443, name: 'tls', protocol: 'TLS' }], endpoints: [{ address }] },
});

test('a ServiceEntry and a WorkloadEntry from the API server become services and workloads, and follow the watch', async () => {
  const server = new FakeApiServer({});
  await server.start();
  const dir = await mkdtemp(join(tmpdir(), 'ambit-se-'));
  const store = new WorkloadStore();
  let source: KubernetesSource | undefined;
  try {
    server.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' } } });
    server.apply(serviceEntry('api.payments.example', '192.0.2.10'));
    server.apply({ apiVersion: 'networking.istio.io/v1beta1', kind: 'WorkloadEntry', metadata: { name: 'vm-1', namespace: 'shop' }, spec: { address: '10.9.0.5', serviceAccount: 'vm' } });
    source = await kubeSourceFor(server, store, dir);
    const loaded = await source.load();
    assert.equal(loaded.errors, 0);
    const service = loaded.snapshot.servicesByHostname.get('api.payments.example');
    assert.ok(service, 'the ServiceEntry host is a service');
    assert.match(service.vips[0] ?? '', /^240\.240\./);
    assert.deepEqual(service.endpoints.map((e) => e.ip), ['192.0.2.10']);
    assert.equal(loaded.snapshot.workloadsByIp.get('10.9.0.5')?.identity, 'spiffe://cluster.local/ns/shop/sa/vm');

    await source.watch();
    server.apply(serviceEntry('api.payments.example', '192.0.2.20'));
    const deadline = Date.now() + 5000;
    const endpoints = (s: MeshSnapshot | undefined) => s?.servicesByHostname.get('api.payments.example')?.endpoints.map((e) => e.ip);
    while (endpoints(store.current)?.[0] !== '192.0.2.20') {
      if (Date.now() > deadline) assert.fail(`the watched change did not arrive in 5 s: ${JSON.stringify(endpoints(store.current))}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    await source?.close();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

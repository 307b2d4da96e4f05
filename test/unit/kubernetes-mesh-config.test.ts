// Kubernetes mode reads what CUSTOM and JWT policies need, as local mode does: the ConfigMap
// istio-system/istio (MeshConfig's extension providers), listed and watched in istio-system only, and
// RequestAuthentication, from a fake API server speaking the real list/watch protocol on loopback. An
// edit of the mesh text applies live; a ConfigMap of that name elsewhere is never read.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FakeApiServer } from '../../agent/lab/kube-apiserver.js';
import type { KubeObject } from '../../agent/lab/kube-resources.js';
import type { KubernetesSource } from '../../agent/sources/kubernetes/source.js';
import type { MeshSnapshot } from '../../agent/state/model.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { kubeSourceFor } from './helpers/kube-source.js';

const meshConfigMap = (namespace: string, port: number): KubeObject => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name: 'istio', namespace },
  data: { mesh: `extensionProviders:\n- name: authz\n  envoyExtAuthzGrpc:\n    service: authz.foo.svc.cluster.local\n    port: ${port}\n` },
});

async function until(store: WorkloadStore, check: (s: MeshSnapshot) => boolean, what: string): Promise<MeshSnapshot> {
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    if (store.current && check(store.current)) return store.current;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`timed out after 5 s waiting for: ${what}`);
}

test('the istio ConfigMap in istio-system and RequestAuthentication come from the API server, and an edit applies live', async () => {
  const server = new FakeApiServer();
  await server.start();
  const dir = await mkdtemp(join(tmpdir(), 'ambit-kube-mesh-'));
  const store = new WorkloadStore();
  let source: KubernetesSource | undefined;
  try {
    server.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'foo', labels: { 'istio.io/dataplane-mode': 'ambient' } } });
    server.apply(meshConfigMap('istio-system', 9000));
    server.apply(meshConfigMap('foo', 1)); // not Istio's: never listed
    server.apply({
      apiVersion: 'security.istio.io/v1',
      kind: 'RequestAuthentication',
      metadata: { name: 'jwt', namespace: 'foo' },
      spec: { targetRefs: [{ kind: 'Service', group: '', name: 'httpbin' }], jwtRules: [{ issuer: 'testing@secure.istio.io', jwksUri: 'http://127.0.0.1:1/jwks.json' }] },
    });
    source = await kubeSourceFor(server, store, dir);
    await source.load();
    await source.watch();
    const first = await until(store, (s) => s.istio.meshConfig.extAuthzProviders.size > 0 && s.istio.requestAuthentications.length > 0, 'MeshConfig and RequestAuthentication');
    assert.deepEqual([...first.istio.meshConfig.extAuthzProviders.values()].map((p) => [p.name, p.kind, p.service, p.port]), [['authz', 'envoyExtAuthzGrpc', 'authz.foo.svc.cluster.local', 9000]]);
    assert.deepEqual(first.istio.requestAuthentications.map((r) => [r.metadata.namespace, r.metadata.name, r.spec.jwtRules[0]?.issuer]), [['foo', 'jwt', 'testing@secure.istio.io']]);
    const configMapLists = server.requests.filter((r) => r.path.endsWith('/configmaps')).map((r) => r.path);
    assert.ok(configMapLists.length > 0 && configMapLists.every((p) => p === '/api/v1/namespaces/istio-system/configmaps'), configMapLists.join(', '));

    server.apply(meshConfigMap('istio-system', 9100));
    await until(store, (s) => s.istio.meshConfig.extAuthzProviders.get('authz')?.port === 9100, 'the edited provider port');
  } finally {
    await source?.close();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

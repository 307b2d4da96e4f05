// Kubernetes mode writes Gateway API route status as the API asks (RouteParentStatus in shared_types.go):
// one status.parents entry per Service parent with controllerName ambit.dev/gateway-controller and the
// Accepted and ResolvedRefs conditions with their reasons and observedGeneration, other controllers'
// entries kept, nothing rewritten when nothing changed, and a refused route told why. Against the
// fake API server, which speaks the real list/watch protocol and takes merge patches on /status.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { FakeApiServer } from '../../agent/lab/kube-apiserver.js';
import type { KubeObject } from '../../agent/lab/kube-resources.js';
import { KubeApiClient, type RawObject } from '../../agent/sources/kubernetes/api-client.js';
import { GATEWAY_CONTROLLER_NAME } from '../../agent/sources/kubernetes/route-status.js';
import { KubernetesSource } from '../../agent/sources/kubernetes/source.js';
import { WorkloadStore } from '../../agent/state/store.js';

const service = (name: string, vip: string): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: 'shop' },
  spec: { clusterIP: vip, clusterIPs: [vip], selector: { app: name }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
});

const httpRoute = (name: string, spec: Record<string, unknown>, status?: Record<string, unknown>): KubeObject => ({
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'HTTPRoute',
  metadata: { name, namespace: 'shop' },
  spec,
  ...(status ? { status } : {}),
});

const toService = (name: string) => ({ group: '', kind: 'Service', name });
const OTHER = { controllerName: 'example.com/other-mesh', parentRef: { group: '', kind: 'Service', name: 'web' }, conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'theirs', lastTransitionTime: '2026-01-01T00:00:00Z' }] };

interface Entry {
  controllerName: string;
  parentRef: Record<string, unknown>;
  conditions: { type: string; status: string; reason: string; message: string; observedGeneration?: number; lastTransitionTime?: string }[];
}

function agent(server: FakeApiServer): { source: KubernetesSource; store: WorkloadStore } {
  const client = new KubeApiClient({ server: server.url, credentials: async () => ({ headers: {} }) });
  const store = new WorkloadStore();
  const source = new KubernetesSource({ client, trustDomain: 'cluster.local', clusterDomain: 'cluster.local', debounceMs: 10, notServedRetryMs: 60_000 }, store, pino({ level: 'silent' }));
  return { source, store };
}

async function routes(server: FakeApiServer): Promise<Map<string, RawObject>> {
  const client = new KubeApiClient({ server: server.url, credentials: async () => ({ headers: {} }) });
  const page = await client.list('/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes', { limit: 100 });
  assert.ok(page.ok, JSON.stringify(page));
  return new Map(page.value.items.map((o) => [String(o.metadata?.name), o]));
}

const ours = (o: RawObject | undefined): Entry[] => (((o?.['status'] as { parents?: Entry[] } | undefined)?.parents ?? []) as Entry[]).filter((p) => p.controllerName === GATEWAY_CONTROLLER_NAME);
const conditions = (e: Entry | undefined): string[][] => (e?.conditions ?? []).map((c) => [c.type, c.status, c.reason]);

async function until(check: () => Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('status.parents: Accepted and ResolvedRefs with reasons per Service parent, other controllers kept, refusals explained, written once', async () => {
  const server = new FakeApiServer();
  await server.start();
  server.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' } } });
  server.apply(service('web', '10.96.90.10'));
  server.apply(service('web-v2', '10.96.90.11'));
  server.apply(httpRoute('split', { parentRefs: [toService('web')], rules: [{ backendRefs: [{ name: 'web-v2', port: 80 }, { name: 'ghost', port: 80 }] }] }, { parents: [OTHER] }));
  server.apply(httpRoute('orphan', { parentRefs: [toService('nope')], rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] }));
  server.apply(httpRoute('broken', { parentRefs: [toService('web')], rules: [{ filters: [{ type: 'ExtensionRef', extensionRef: { group: 'x.io', kind: 'Y', name: 'z' } }], backendRefs: [{ name: 'web', port: 80 }] }] }));
  server.apply(httpRoute('north-south', { parentRefs: [{ name: 'ingress' }], rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] }));
  const first = agent(server);
  const second = agent(server);
  try {
    await first.source.load();
    await first.source.watch();
    await until(async () => ours((await routes(server)).get('split')).length === 1 && ours((await routes(server)).get('broken')).length === 1, 'status written on split and broken');
    await first.source.statusWritten();
    const now = await routes(server);

    const split = now.get('split');
    const parents = (split?.['status'] as { parents: Entry[] }).parents;
    assert.deepEqual(parents.find((p) => p.controllerName === OTHER.controllerName), OTHER, "another controller's entry is kept as it was");
    const mine = ours(split)[0]!;
    assert.deepEqual(mine.parentRef, { group: '', kind: 'Service', namespace: 'shop', name: 'web' });
    assert.deepEqual(conditions(mine), [
      ['Accepted', 'True', 'Accepted'],
      ['ResolvedRefs', 'False', 'BackendNotFound'],
    ]);
    assert.match(mine.conditions[1]!.message, /ghost does not exist/);
    for (const c of mine.conditions) {
      assert.equal(c.observedGeneration, split?.metadata?.['generation']);
      assert.match(String(c.lastTransitionTime), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    }

    assert.deepEqual(conditions(ours(now.get('orphan'))[0]), [
      ['Accepted', 'False', 'NoMatchingParent'],
      ['ResolvedRefs', 'True', 'ResolvedRefs'],
    ]);
    const broken = ours(now.get('broken'))[0];
    assert.deepEqual(conditions(broken), [['Accepted', 'False', 'UnsupportedValue']]);
    assert.match(broken!.conditions[0]!.message, /filter type ExtensionRef is not supported/);
    assert.equal(now.get('north-south')?.['status'], undefined, 'a route bound to a Gateway is not ours to report');

    // A second agent that agrees finds nothing to write.
    const patchesBefore = server.requests.filter((r) => r.method === 'PATCH').length;
    await second.source.load();
    await second.source.statusWritten();
    assert.equal(server.requests.filter((r) => r.method === 'PATCH').length, patchesBefore);

    // Fixing the route (a new generation) turns ResolvedRefs True and moves observedGeneration.
    server.apply(httpRoute('split', { parentRefs: [toService('web')], rules: [{ backendRefs: [{ name: 'web-v2', port: 80 }] }] }));
    await until(async () => conditions(ours((await routes(server)).get('split'))[0])[1]?.[1] === 'True', 'ResolvedRefs True after the fix');
    const fixed = (await routes(server)).get('split');
    assert.equal(ours(fixed)[0]!.conditions[1]!.observedGeneration, 2);
    assert.equal(fixed?.metadata?.['generation'], 2);
    // The Accepted condition did not change status, so its transition time stays.
    assert.equal(ours(fixed)[0]!.conditions[0]!.lastTransitionTime, mine.conditions[0]!.lastTransitionTime);
  } finally {
    await first.source.close();
    await second.source.close();
    await server.stop();
  }
});

// The Kubernetes source against a fake API server that speaks the real list/watch protocol on
// loopback: initial sync, updates, deletes, watch disconnects, 410 Gone, the API server going away and
// coming back, an invalid object rejected alone, CRDs not installed. Credentials are
// kubernetes-connection.test.ts's, and the same snapshot as local files kubernetes-source-parity.test.ts's.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { FakeApiServer, type FakeApiServerOptions } from '../../agent/lab/kube-apiserver.js';
import { KubeApiClient } from '../../agent/sources/kubernetes/api-client.js';
import { WATCHED_RESOURCES } from '../../agent/sources/kubernetes/resources.js';
import { KubernetesSource, type KubernetesSourceOptions } from '../../agent/sources/kubernetes/source.js';
import type { MeshSnapshot } from '../../agent/state/model.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { authorizationPolicy, node, pod, rateLimit, seedShop, virtualService } from './helpers/kube-objects.js';
import { connect, writeKubeconfig } from './helpers/kube-source.js';
import { captureLog } from './helpers/log-capture.js';

// ---- harness -------------------------------------------------------------------------------------------

interface Harness {
  readonly server: FakeApiServer;
  readonly store: WorkloadStore;
  readonly source: KubernetesSource;
  readonly logs: { level: number; msg: string }[];
  close(): Promise<void>;
}

async function harness(serverOptions: FakeApiServerOptions = {}, sourceOptions: Partial<KubernetesSourceOptions> = {}, populate = seedShop): Promise<Harness> {
  const server = new FakeApiServer(serverOptions);
  await server.start();
  populate(server);
  const store = new WorkloadStore();
  // Debug too: some tests check what is logged only at debug.
  const { logger, records } = captureLog('debug');
  const kubeconfig = await connect({ kubeconfig: await writeKubeconfig(scratch, server.url) });
  const source = new KubernetesSource(
    {
      client: new KubeApiClient(kubeconfig),
      trustDomain: 'cluster.local',
      clusterDomain: 'cluster.local',
      debounceMs: 10,
      backoff: { initialMs: 20, maxMs: 200 },
      pageSize: 2,
      watchTimeoutSeconds: { min: 60, max: 60 },
      notServedRetryMs: 200,
      // These tests count the own cluster's lists and watches; remote secrets have their own test.
      remoteClusters: false,
      ...sourceOptions,
    },
    store,
    logger,
  );
  return {
    server,
    store,
    source,
    logs: records as { level: number; msg: string }[],
    close: async () => {
      await source.close();
      await server.stop();
    },
  };
}

let scratch: string;
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'ambit-kube-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** Resolves once the store's snapshot satisfies `check`, or fails after `ms`. */
async function until(store: WorkloadStore, check: (s: MeshSnapshot) => boolean, what: string, ms = 5000): Promise<MeshSnapshot> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const current = store.current;
    if (current && check(current)) return current;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`timed out after ${ms} ms waiting for: ${what}`);
}

async function eventually(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const endpointsOf = (s: MeshSnapshot, key: string) => (s.services.get(key)?.endpoints ?? []).map((e) => `${e.workload}@${e.ip}:${[...e.ports.values()].join(',')}`).sort();
const lists = (server: FakeApiServer, plural: string) => server.requests.filter((r) => r.path.endsWith(`/${plural}`) && r.query['watch'] === undefined && !r.query['continue']).length;
const watches = (server: FakeApiServer, plural: string) => server.requests.filter((r) => r.path.endsWith(`/${plural}`) && r.query['watch'] === '1');

// ---- tests ---------------------------------------------------------------------------------------------

test('initial sync: every resource is listed (paged), validated and built into one snapshot with the pods\' uids', async () => {
  const h = await harness();
  try {
    const outcome = await h.source.load();
    assert.equal(outcome.errors, 0);
    const s = outcome.snapshot;
    assert.equal(h.store.current, s);
    assert.deepEqual([...s.nodes.keys()].sort(), ['node-a', 'node-b']);
    assert.deepEqual([...s.workloads.keys()].sort(), ['shop/web-1', 'shop/web-2']);
    const web1 = s.workloads.get('shop/web-1')!;
    assert.match(web1.uid, /^[0-9a-f-]{36}$/, 'the API server\'s uid, which names the pod\'s kubepods cgroup');
    assert.equal(web1.enrollment.enrolled, true);
    assert.equal(web1.node, 'node-a');
    // Endpoints on every node: the agent enrolls only its own node's pods but routes to all of them.
    assert.deepEqual(endpointsOf(s, 'shop/web.shop.svc.cluster.local'), ['shop/web-1@10.244.91.11:8080', 'shop/web-2@10.244.92.12:8080']);
    assert.equal(s.istio.virtualServices.length, 1);
    assert.equal(s.istio.authorizationPolicies.length, 1);
    assert.equal(s.ambit.rateLimits.length, 1);
    assert.equal(s.ambit.rateLimits[0]!.spec.tokenBucket?.maxTokens, 100);
    assert.equal(s.ambit.rateLimits[0]!.source.file, 'kube-apiserver:/apis/ambit.dev/v1alpha1/namespaces/shop/ratelimits/web');
    assert.ok(h.server.requests.some((r) => r.path === '/apis/ambit.dev/v1alpha1/ratelimits' && r.query['watch'] === undefined), 'RateLimits are listed');
    assert.match(s.istio.virtualServices[0]!.source.file, /^kube-apiserver:\/apis\/networking\.istio\.io\/v1\/namespaces\/shop\/virtualservices\/web$/);
    // Two nodes with pageSize 2 fit one page; two pods plus a continue token show paging happened.
    assert.ok(h.server.requests.some((r) => r.path === '/api/v1/pods' && r.query['limit'] === '2'));
    assert.ok(h.server.requests.some((r) => r.path === '/api/v1/namespaces' && r.query['limit'] === '2'));
    const podPages = h.server.requests.filter((r) => r.path === '/api/v1/pods' && r.query['watch'] === undefined);
    assert.equal(podPages.length, 1, 'two pods fit one page of two');
  } finally {
    await h.close();
  }
});

test('paging: a collection larger than a page is read with continue tokens and nothing is lost', async () => {
  const h = await harness({}, { pageSize: 1 });
  try {
    const s = (await h.source.load()).snapshot;
    assert.equal(s.workloads.size, 2);
    assert.ok(h.server.requests.some((r) => r.path === '/api/v1/pods' && r.query['continue']), 'a second page was asked for');
  } finally {
    await h.close();
  }
});

test('updates and deletes from the watch apply live; a watch starts from the list\'s resourceVersion', async () => {
  const h = await harness();
  try {
    await h.source.load();
    await h.source.watch();
    await eventually(() => h.server.openWatches === WATCHED_RESOURCES.length, 'a watch per resource');
    const listedAt = Number(h.server.resourceVersion);
    for (const w of h.server.requests.filter((r) => r.query['watch'] === '1')) assert.equal(Number(w.query['resourceVersion']), listedAt);

    h.server.apply(pod('shop', 'web-3', { node: 'node-a', ip: '10.244.91.13', labels: { app: 'web' } }));
    let s = await until(h.store, (s) => s.workloads.has('shop/web-3'), 'web-3 added');
    assert.equal(endpointsOf(s, 'shop/web.shop.svc.cluster.local').length, 3);

    h.server.apply(pod('shop', 'web-3', { node: 'node-a', ip: '10.244.91.13', labels: { app: 'web' }, port: 9090 }));
    s = await until(h.store, (s) => endpointsOf(s, 'shop/web.shop.svc.cluster.local').includes('shop/web-3@10.244.91.13:9090'), 'web-3 now on 9090');
    // Each object cites the version it was read at (ambit explain shows it), the one the server just wrote.
    const web3Version = h.server.resourceVersion;
    assert.deepEqual(s.workloads.get('shop/web-3')?.source, { file: 'kube-apiserver:/api/v1/namespaces/shop/pods/web-3', line: 1, resourceVersion: web3Version });

    h.server.apply(rateLimit('shop', 'web', 5));
    s = await until(h.store, (s) => s.ambit.rateLimits[0]?.spec.tokenBucket?.maxTokens === 5, 'the RateLimit changed to 5 tokens');

    h.server.delete('Pod', 'shop', 'web-1');
    h.server.delete('VirtualService', 'shop', 'web');
    h.server.delete('RateLimit', 'shop', 'web');
    s = await until(h.store, (s) => !s.workloads.has('shop/web-1') && s.istio.virtualServices.length === 0 && s.ambit.rateLimits.length === 0, 'web-1, the VirtualService and the RateLimit deleted');
    assert.deepEqual(endpointsOf(s, 'shop/web.shop.svc.cluster.local'), ['shop/web-2@10.244.92.12:8080', 'shop/web-3@10.244.91.13:9090']);

    // A change nothing in the mesh reads (a node's heartbeat in its status) builds no new snapshot.
    const version = h.store.current!.version;
    h.server.apply({ ...node('node-a', '10.244.90.1'), status: { addresses: [{ type: 'InternalIP', address: '10.244.90.1' }], conditions: [{ type: 'Ready', status: 'True', lastHeartbeatTime: new Date().toISOString() }] } });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(h.store.current!.version, version);
  } finally {
    await h.close();
  }
});

test('a watch the server closes is resumed from the last resourceVersion seen, without a relist', async () => {
  const h = await harness();
  try {
    await h.source.load();
    await h.source.watch();
    await eventually(() => h.server.openWatches === WATCHED_RESOURCES.length, 'a watch per resource');
    h.server.apply(pod('shop', 'web-3', { node: 'node-a', ip: '10.244.91.13', labels: { app: 'web' } }));
    await until(h.store, (s) => s.workloads.has('shop/web-3'), 'web-3 added');
    const seen = h.server.resourceVersion;
    const podLists = lists(h.server, 'pods');
    h.server.closeWatches();
    await eventually(() => watches(h.server, 'pods').length === 2 && h.server.openWatches === WATCHED_RESOURCES.length, 'watches re-opened');
    assert.equal(watches(h.server, 'pods')[1]!.query['resourceVersion'], seen);
    assert.equal(lists(h.server, 'pods'), podLists, 'no relist after a normal close');
    h.server.delete('Pod', 'shop', 'web-3');
    await until(h.store, (s) => !s.workloads.has('shop/web-3'), 'web-3 deleted over the resumed watch');
  } finally {
    await h.close();
  }
});

for (const expired of ['event', 'http'] as const) {
  test(`410 Gone (${expired === 'event' ? 'an ERROR event with a Status of code 410' : 'HTTP 410'}): the source relists and the missed changes apply`, async () => {
    const h = await harness({ expired });
    try {
      await h.source.load();
      await h.source.watch();
      await eventually(() => h.server.openWatches === WATCHED_RESOURCES.length, 'a watch per resource');
      const podLists = lists(h.server, 'pods');
      await h.server.stop();
      // Changes the agent cannot see, then a compaction that forgets them.
      h.server.apply(pod('shop', 'web-3', { node: 'node-a', ip: '10.244.91.13', labels: { app: 'web' } }));
      h.server.delete('Pod', 'shop', 'web-2');
      h.server.compact();
      await h.server.start();
      const s = await until(h.store, (s) => s.workloads.has('shop/web-3') && !s.workloads.has('shop/web-2'), 'the missed add and delete applied');
      assert.deepEqual(endpointsOf(s, 'shop/web.shop.svc.cluster.local'), ['shop/web-1@10.244.91.11:8080', 'shop/web-3@10.244.91.13:8080']);
      assert.ok(lists(h.server, 'pods') > podLists, 'pods were listed again');
      await eventually(() => h.server.openWatches === WATCHED_RESOURCES.length, 'watching again');
    } finally {
      await h.close();
    }
  });
}

test('API server down: the last good state keeps serving, failures back off, and it catches up on recovery', async () => {
  const h = await harness();
  try {
    await h.source.load();
    await h.source.watch();
    await eventually(() => h.server.openWatches === WATCHED_RESOURCES.length, 'a watch per resource');
    const before = h.store.current!;
    await h.server.stop();
    await eventually(() => h.logs.some((l) => l.level === 40 && /Kubernetes API server: .*serving configuration version/.test(l.msg)), 'the outage logged');
    // Retries continue while it is down (backoff 20..200 ms), and nothing is dropped meanwhile.
    const failures = () => h.logs.filter((l) => /Kubernetes API server: /.test(l.msg)).length;
    const atStart = failures();
    await new Promise((r) => setTimeout(r, 600));
    assert.ok(failures() > atStart, 'retried while down');
    assert.ok(failures() - atStart < 9 * 600 / 10, 'but not in a hot loop');
    assert.equal(h.store.current, before, 'the very same snapshot still in force');
    // A warning when the outage starts and when the failure changes (the watch cut, then refused); retries go to debug.
    const podWarnings = h.logs.filter((l) => l.level === 40 && /Kubernetes API server: .*retrying pods/.test(l.msg)).length;
    assert.ok(podWarnings >= 1 && podWarnings <= 2, `${podWarnings} warnings about pods`);
    assert.ok(h.logs.some((l) => l.level === 20 && /connection refused .*retrying pods/.test(l.msg)), 'the repeated failures at debug');

    h.server.apply(authorizationPolicy('shop', 'second'));
    await h.server.start();
    const s = await until(h.store, (s) => s.istio.authorizationPolicies.length === 2, 'the change made while down applied');
    assert.equal(s.workloads.size, 2);
    await eventually(() => h.logs.some((l) => /reachable again/.test(l.msg)), 'the recovery logged');
  } finally {
    await h.close();
  }
});

test('API server down at start: load() retries until it answers, then returns the first snapshot', async () => {
  const h = await harness();
  try {
    h.server.failNext(4, 503);
    const outcome = await h.source.load();
    assert.equal(outcome.snapshot.workloads.size, 2);
    assert.ok(h.logs.some((l) => /HTTP 503|injected failure/.test(l.msg)), 'the failure was logged');
  } finally {
    await h.close();
  }
});

test('an invalid object is rejected alone, with a message naming it; its last good version stays in force', async () => {
  const h = await harness();
  try {
    await h.source.load();
    await h.source.watch();
    await eventually(() => h.server.openWatches === WATCHED_RESOURCES.length, 'a watch per resource');
    // An edit istiod would refuse (a timeout that is not a duration) next to a valid change.
    h.server.apply(virtualService('shop', 'web', { route: [{ destination: { host: 'web' } }], timeout: 'soon' }));
    h.server.apply(pod('shop', 'web-3', { node: 'node-a', ip: '10.244.91.13', labels: { app: 'web' } }));
    const s = await until(h.store, (s) => s.workloads.has('shop/web-3'), 'the valid change applied');
    const vs = s.istio.virtualServices[0];
    assert.equal(vs?.spec.http[0]?.timeoutMs, 5000, 'the last good VirtualService is kept');
    const error = h.logs.find((l) => l.level === 50 && /VirtualService shop\/web/.test(l.msg));
    assert.ok(error, 'an error names the object');
    assert.match(error.msg, /^kube-apiserver:\/apis\/networking\.istio\.io\/v1\/namespaces\/shop\/virtualservices\/web:1: VirtualService shop\/web: spec\.http\[0\]\.timeout: /);
    assert.ok(h.logs.some((l) => l.level === 40 && /VirtualService shop\/web: warning: keeping the last good version/.test(l.msg)));
    // Fixed, it applies; deleted while invalid, it goes (deleting is not an error).
    h.server.apply(virtualService('shop', 'web', { route: [{ destination: { host: 'web' } }], timeout: '7s' }));
    await until(h.store, (s) => s.istio.virtualServices[0]?.spec.http[0]?.timeoutMs === 7000, 'the fix applied');
    h.server.apply(virtualService('shop', 'web', { route: [{ destination: { host: 'web' } }], timeout: 'soon' }));
    h.server.delete('VirtualService', 'shop', 'web');
    await until(h.store, (s) => s.istio.virtualServices.length === 0, 'deleted');
  } finally {
    await h.close();
  }
});

test('Istio CRDs: an older served version is used, and an absent CRD counts as empty without blocking sync', async () => {
  const h = await harness({ servedVersions: { 'networking.istio.io': ['v1beta1'], 'security.istio.io': [] } });
  try {
    const s = (await h.source.load()).snapshot;
    assert.equal(s.istio.virtualServices.length, 1);
    assert.equal(s.istio.virtualServices[0]!.apiVersion, 'networking.istio.io/v1beta1');
    assert.equal(s.istio.authorizationPolicies.length, 0);
    assert.ok(h.logs.some((l) => /serves no AuthorizationPolicy .*is Istio's CRD installed/.test(l.msg)));
  } finally {
    await h.close();
  }
});

test('RateLimit CRD absent: the agent syncs without rate limits, says so once, and picks them up once the CRD is installed', async () => {
  const served: Record<string, string[]> = { 'ambit.dev': [] };
  const h = await harness({ servedVersions: served });
  try {
    const s = (await h.source.load()).snapshot;
    await h.source.watch();
    assert.equal(s.ambit.rateLimits.length, 0);
    assert.equal(s.workloads.size, 2, 'the rest of the mesh is in force');
    const told = () => h.logs.filter((l) => /serves no RateLimit \(\/apis\/ambit\.dev\/v1alpha1\/ratelimits answer 404: is Ambit's RateLimit CRD \(deploy\/daemonset\/crd-ratelimits\.yaml/.test(l.msg));
    assert.equal(told().length, 1, h.logs.map((l) => l.msg).join('\n'));
    // Looked for again every notServedRetryMs (200 ms here): still absent, still said only once.
    await eventually(() => lists(h.server, 'ratelimits') >= 3, 'RateLimits looked for again');
    assert.equal(told().length, 1);
    // The CRD gets installed: the next look finds the object the server already held.
    served['ambit.dev'] = ['v1alpha1'];
    await until(h.store, (s) => s.ambit.rateLimits.length === 1, 'the RateLimit in force once its CRD is served');
  } finally {
    await h.close();
  }
});

// Remote secrets in Kubernetes mode, against two of the lab's API server stand-ins on loopback: a
// Secret labelled istio/multiCluster=true in istio-system names cluster c2 and its kubeconfig, and c2's
// pods and global Services join the agent's snapshot; deleting the Secret takes them out again, a key
// naming the agent's own cluster is ignored, and a Secret without the label is never even sent.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { FakeApiServer } from '../../agent/lab/kube-apiserver.js';
import type { KubeObject } from '../../agent/lab/kube-resources.js';
import { KubeApiClient } from '../../agent/sources/kubernetes/api-client.js';
import { connectionFromKubeconfigText } from '../../agent/sources/kubernetes/connection.js';
import { KubernetesSource } from '../../agent/sources/kubernetes/source.js';
import type { MeshSnapshot } from '../../agent/state/model.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { captureLog } from './helpers/log-capture.js';
import { waitForSnapshot } from './helpers/snapshot-wait.js';

const REVIEWS = 'shop/reviews.shop.svc.cluster.local';

const namespace = (name: string, labels: Record<string, string> = {}): KubeObject => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
const pod = (name: string, ip: string): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'shop', labels: { app: 'reviews' } },
  spec: { nodeName: 'node-a', containers: [{ name: 'app', image: 'app:1', ports: [{ containerPort: 9080 }] }] },
  status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: 'True' }] },
});
const reviews = (vip: string): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: 'reviews', namespace: 'shop', labels: { 'istio.io/global': 'true' } },
  spec: { clusterIP: vip, clusterIPs: [vip], selector: { app: 'reviews' }, ports: [{ name: 'http', port: 9080, targetPort: 9080 }] },
});
const kubeconfig = (server: string) =>
  `apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: '${server}', insecure-skip-tls-verify: true}\nusers:\n- name: u\n  user: {}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n`;
const secret = (name: string, clusters: Record<string, string>, labelled = true): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name, namespace: 'istio-system', labels: labelled ? { 'istio/multiCluster': 'true' } : {} },
  data: Object.fromEntries(Object.entries(clusters).map(([id, text]) => [id, Buffer.from(text).toString('base64')])),
});

const own = new FakeApiServer();
const remote = new FakeApiServer();
/** Cluster c2's API server at a new address, as after a move: the same cluster, one pod more. */
const moved = new FakeApiServer();

before(async () => {
  await own.start();
  await remote.start();
  await moved.start();
  own.apply(namespace('istio-system', { 'topology.istio.io/network': 'n1' }));
  own.apply(namespace('shop', { 'istio.io/dataplane-mode': 'ambient' }));
  own.apply(pod('reviews-v1', '10.1.0.1'));
  own.apply(reviews('10.96.0.1'));
  remote.apply(namespace('istio-system', { 'topology.istio.io/network': 'n2' }));
  remote.apply(namespace('shop', { 'istio.io/dataplane-mode': 'ambient' }));
  remote.apply(pod('reviews-v3', '10.2.0.3'));
  remote.apply(reviews('10.97.0.1'));
  moved.apply(namespace('istio-system', { 'topology.istio.io/network': 'n2' }));
  moved.apply(namespace('shop', { 'istio.io/dataplane-mode': 'ambient' }));
  moved.apply(pod('reviews-v3', '10.2.0.3'));
  moved.apply(pod('reviews-v5', '10.2.0.5'));
  moved.apply(reviews('10.97.0.1'));
});

after(async () => {
  await own.stop();
  await remote.stop();
  await moved.stop();
});

const endpoints = (s: MeshSnapshot): string[] => (s.services.get(REVIEWS)?.endpoints ?? []).map((e) => e.workload).sort();

test('a remote secret adds its cluster\'s pods and global Services; deleting it takes them out', async () => {
  const connection = await connectionFromKubeconfigText(kubeconfig(own.url), 'the test kubeconfig');
  assert.ok(typeof connection !== 'string', String(connection));
  const store = new WorkloadStore();
  const source = new KubernetesSource(
    { client: new KubeApiClient(connection), trustDomain: 'cluster.local', clusterDomain: 'cluster.local', cluster: { id: 'c1' }, debounceMs: 10, backoff: { initialMs: 20, maxMs: 200 } },
    store,
    pino({ level: 'silent' }),
  );
  // An unlabelled Secret in istio-system is none of the agent's business: never sent to it.
  own.apply(secret('unrelated', { c9: kubeconfig(remote.url) }, false));
  // A key naming the agent's own cluster is ignored; c2 is read.
  own.apply(secret('istio-remote-secret-c2', { c1: kubeconfig(remote.url), c2: kubeconfig(remote.url) }));
  try {
    const first = await source.load();
    await source.watch();
    assert.deepEqual(endpoints(first.snapshot), ['c2//Pod/shop/reviews-v3', 'shop/reviews-v1']);
    const v3 = first.snapshot.workloads.get('c2//Pod/shop/reviews-v3');
    assert.deepEqual([v3?.cluster, v3?.network, first.snapshot.ownNetwork], ['c2', 'n2', 'n1']);
    assert.equal([...first.snapshot.workloads.values()].filter((w) => w.cluster === 'c1' && w.name === 'reviews-v3').length, 0);
    assert.equal([...first.snapshot.workloads.values()].some((w) => w.cluster === 'c9'), false);

    // A change in the remote cluster reaches the snapshot through its own watch.
    remote.apply(pod('reviews-v4', '10.2.0.4'));
    await waitForSnapshot(store, (s) => endpoints(s).includes('c2//Pod/shop/reviews-v4'), 'c2\'s new pod as an endpoint');

    own.delete('Secret', 'istio-system', 'istio-remote-secret-c2');
    const gone = await waitForSnapshot(store, (s) => ![...s.workloads.values()].some((w) => w.cluster === 'c2'), 'c2 to leave the mesh');
    assert.deepEqual(endpoints(gone), ['shop/reviews-v1']);

    own.apply(secret('istio-remote-secret-c2', { c2: kubeconfig(remote.url) }));
    await waitForSnapshot(store, (s) => endpoints(s).length === 3, 'c2 back with both its pods');
  } finally {
    await source.close();
    own.delete('Secret', 'istio-system', 'unrelated');
  }
  // The secrets were listed and watched with the label selector, so the unlabelled one never left the server.
  const secretCalls = own.requests.filter((r) => r.path === '/api/v1/namespaces/istio-system/secrets');
  assert.ok(secretCalls.length >= 2);
  assert.ok(secretCalls.every((r) => r.query['labelSelector'] === 'istio/multiCluster=true'), JSON.stringify(secretCalls.map((r) => r.query)));
});

test('a rotated kubeconfig: the old reader serves until the new one has listed everything, so the cluster never leaves the mesh', async () => {
  const connection = await connectionFromKubeconfigText(kubeconfig(own.url), 'the test kubeconfig');
  assert.ok(typeof connection !== 'string', String(connection));
  const store = new WorkloadStore();
  const source = new KubernetesSource(
    { client: new KubeApiClient(connection), trustDomain: 'cluster.local', clusterDomain: 'cluster.local', cluster: { id: 'c1' }, debounceMs: 10, backoff: { initialMs: 50, maxMs: 200 } },
    store,
    pino({ level: 'silent' }),
  );
  own.apply(secret('istio-remote-secret-c2', { c2: kubeconfig(remote.url) }));
  const seen: string[][] = [];
  const unsubscribe = store.subscribe((next) => seen.push(endpoints(next)));
  try {
    await source.load();
    await source.watch();
    assert.ok(endpoints(store.current!).includes('c2//Pod/shop/reviews-v3'));
    // The new API server refuses its first lists: the new reader takes a few retries to sync.
    moved.failNext(8, 503);
    own.apply(secret('istio-remote-secret-c2', { c2: kubeconfig(moved.url) }));
    await waitForSnapshot(store, (s) => endpoints(s).includes('c2//Pod/shop/reviews-v5'), 'the new reader\'s objects');
    const without = seen.filter((e) => !e.includes('c2//Pod/shop/reviews-v3'));
    assert.deepEqual(without, [], 'a snapshot without cluster c2 was served during the rotation');
  } finally {
    unsubscribe();
    await source.close();
    own.delete('Secret', 'istio-system', 'istio-remote-secret-c2');
  }
});

test('a remote cluster whose API server does not answer is said once per kind of failure, not at every retry', async () => {
  const connection = await connectionFromKubeconfigText(kubeconfig(own.url), 'the test kubeconfig');
  assert.ok(typeof connection !== 'string', String(connection));
  const gone = new FakeApiServer();
  await gone.start();
  const deadUrl = gone.url;
  await gone.stop();
  const { logger, records } = captureLog('debug');
  const store = new WorkloadStore();
  const source = new KubernetesSource(
    { client: new KubeApiClient(connection), trustDomain: 'cluster.local', clusterDomain: 'cluster.local', cluster: { id: 'c1' }, debounceMs: 10, backoff: { initialMs: 5, maxMs: 20 }, remoteSyncTimeoutMs: 200 },
    store,
    logger,
  );
  own.apply(secret('istio-remote-secret-c7', { c7: kubeconfig(deadUrl) }));
  try {
    await source.load();
    const about = (level: number) => records.filter((r) => r['level'] === level && r['cluster'] === 'c7' && String(r['msg']).includes('stay in force'));
    // Let every resource fail a few times: the retries are logged at debug.
    await new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (about(20).length < 25) return;
        clearInterval(check);
        resolve();
      }, 5);
    });
    assert.equal(about(40).length, 5, about(40).map((r) => String(r['msg'])).join('\n'));
    assert.match(String(about(40)[0]?.['msg']), /its last known \w+ stay in force; retrying in \d+ ms/);
  } finally {
    await source.close();
    own.delete('Secret', 'istio-system', 'istio-remote-secret-c7');
  }
});

// Which endpoints active health checks probe and on whose behalf (agent/l7/cluster-health.ts): the
// endpoints of clusters that requests used, with the requesting workload as the probe source, following
// snapshots and clusters; verdicts steer the cluster's balancer. Probes are scripted, time is a ManualClock.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { ManualClock } from '../../agent/l7/clock.js';
import { ClusterHealthChecks, planHealthChecks } from '../../agent/l7/cluster-health.js';
import type { HealthEvent } from '../../agent/l7/health-check.js';
import type { EndpointProbeTarget } from '../../agent/l7/proxy/health-probe.js';
import { UpstreamClusters } from '../../agent/l7/upstream-cluster.js';
import type { MeshSnapshot, Workload } from '../../agent/state/model.js';
import { mesh } from './helpers/l7-mesh.js';

const REVIEWS = { host: 'reviews.bookinfo.svc.cluster.local', port: 9080 };
const RATINGS = { host: 'ratings.bookinfo.svc.cluster.local', port: 9080 };
const NODE = 'node-a';

/** The bookinfo mesh with every pod on NODE, enrolled (the helper's pods have no nodeName). */
function onNode(s: MeshSnapshot, change: (w: Workload) => Workload = (w) => w): MeshSnapshot {
  const workloads = new Map([...s.workloads].map(([k, w]) => [k, change({ ...w, node: NODE })]));
  return { ...s, workloads };
}

const settle = () => new Promise((r) => setImmediate(r));

function harness(initial: MeshSnapshot) {
  const clock = new ManualClock();
  let snapshot = initial;
  const failing = new Set<string>();
  const probes: EndpointProbeTarget[] = [];
  const lines: Record<string, unknown>[] = [];
  const transitions: string[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  let clusters!: UpstreamClusters;
  const health = new ClusterHealthChecks({
    node: NODE,
    clock,
    log,
    probe: async (target) => {
      probes.push(target);
      return failing.has(target.ip) ? { ok: false, reason: `GET ${target.ip} answered 503` } : true;
    },
    view: () => ({ snapshot, clusters: clusters.inUse() }),
    onTransition: (cluster: string, e: HealthEvent) => transitions.push(`${cluster} ${e.kind} ${e.endpoint}`),
  });
  clusters = new UpstreamClusters({ clock, isHealthy: (key) => health.isHealthy(key), onChange: () => health.changed() });
  return {
    clock,
    health,
    clusters,
    failing,
    probes,
    lines,
    transitions,
    get snapshot() {
      return snapshot;
    },
    /** A new snapshot, as the store's subscription delivers it. */
    async swap(next: MeshSnapshot) {
      snapshot = next;
      clusters.retain(next);
      health.changed();
      await settle();
    },
  };
}

test('only clusters a workload used are checked, on its behalf, with each pod readinessProbe', async () => {
  const h = harness(onNode(mesh()));
  const productpage = h.snapshot.workloads.get('bookinfo/productpage-v1')!;
  // A resolve without a workload (a DestinationRule lookup only) names no probe source: nothing is probed.
  const anonymous = h.clusters.resolve(h.snapshot, RATINGS, { namespace: 'bookinfo', labels: { app: 'productpage' } });
  assert.ok(anonymous.ok);
  await settle();
  await h.clock.advanceAsync(20_000);
  assert.equal(h.probes.length, 0);

  const reviews = h.clusters.resolve(h.snapshot, REVIEWS, productpage);
  assert.ok(reviews.ok);
  assert.equal(reviews.cluster.probeSource?.key, 'bookinfo/productpage-v1');
  await settle();
  await h.clock.advanceAsync(5000);
  assert.deepEqual(h.probes.map((p) => `${p.source.key} ${p.endpoint.key} ${p.ip}:${p.spec.port}${p.spec.path} every ${p.spec.intervalMs}`).sort(), [
    'bookinfo/productpage-v1 bookinfo/reviews-v1 10.244.1.21:9080/health every 5000',
    'bookinfo/productpage-v1 bookinfo/reviews-v2 10.244.1.22:9080/health every 5000',
    'bookinfo/productpage-v1 bookinfo/reviews-v3 10.244.1.23:9080/health every 5000',
  ]);

  // A second client does not replace the first as probe source.
  const sleep = h.snapshot.workloads.get('other/sleep')!;
  h.clusters.resolve(h.snapshot, REVIEWS, sleep);
  assert.equal(reviews.cluster.probeSource?.key, 'bookinfo/productpage-v1');
  h.health.stop();
  h.clusters.close();
  assert.equal(h.clock.pendingTimers, 0);
});

test('a failing endpoint leaves the balancing set after failureThreshold probes and returns when it passes; logged and counted', async () => {
  const h = harness(onNode(mesh()));
  const productpage = h.snapshot.workloads.get('bookinfo/productpage-v1')!;
  const reviews = h.clusters.resolve(h.snapshot, REVIEWS, productpage);
  assert.ok(reviews.ok);
  const cluster = reviews.cluster;
  await settle();
  const picks = (n: number) => {
    const out = new Set<string>();
    for (let i = 0; i < n; i++) {
      const c = cluster.choose();
      if (c.kind === 'endpoint') out.add(c.endpoint.ip);
    }
    return [...out].sort();
  };
  h.failing.add('10.244.1.22');
  await h.clock.advanceAsync(2 * 5000);
  assert.equal(h.health.isHealthy('10.244.1.22:9080'), true, 'two failures are below failureThreshold 3');
  await h.clock.advanceAsync(5000);
  assert.equal(h.health.isHealthy('10.244.1.22:9080'), false);
  assert.deepEqual(picks(60), ['10.244.1.21', '10.244.1.23']);
  h.failing.delete('10.244.1.22');
  await h.clock.advanceAsync(5000);
  assert.deepEqual(picks(60), ['10.244.1.21', '10.244.1.22', '10.244.1.23']);

  const name = 'outbound|9080||reviews.bookinfo.svc.cluster.local';
  assert.deepEqual(h.transitions, [`${name} unhealthy 10.244.1.22:9080`, `${name} healthy 10.244.1.22:9080`]);
  const logged = h.lines.filter((l) => String(l['msg']).startsWith('health check:'));
  assert.deepEqual(
    logged.map((l) => [l['msg'], l['endpoint'], l['clusters'], l['reason']]),
    [
      ['health check: 10.244.1.22:9080 unhealthy, out of the balancing set', '10.244.1.22:9080', [name], 'GET 10.244.1.22 answered 503'],
      ['health check: 10.244.1.22:9080 healthy, back in the balancing set', '10.244.1.22:9080', [name], undefined],
    ],
  );
  h.health.stop();
  h.clusters.close();
});

test('targets follow snapshots: a pod without readinessProbe, a bad probe port, a source that left, a cluster that is gone', async () => {
  const h = harness(onNode(mesh()));
  const productpage = h.snapshot.workloads.get('bookinfo/productpage-v1')!;
  const reviews = h.clusters.resolve(h.snapshot, REVIEWS, productpage);
  assert.ok(reviews.ok);
  await settle();
  const probedIps = async () => {
    h.probes.length = 0;
    await h.clock.advanceAsync(5000);
    return [...new Set(h.probes.map((p) => p.ip))].sort();
  };
  assert.deepEqual(await probedIps(), ['10.244.1.21', '10.244.1.22', '10.244.1.23']);

  // reviews-v1 loses its readinessProbe, reviews-v3's names a port the pod lacks: neither is probed.
  await h.swap(
    onNode(mesh(), (w) => {
      if (w.key === 'bookinfo/reviews-v1') return { ...w, readinessProbe: undefined };
      if (w.key === 'bookinfo/reviews-v3' && w.readinessProbe) return { ...w, readinessProbe: { ...w.readinessProbe, port: 'metrics' } };
      return w;
    }),
  );
  assert.deepEqual(await probedIps(), ['10.244.1.22']);
  assert.ok(h.lines.some((l) => /health check not configured: bookinfo\/reviews-v3: readinessProbe port "metrics" is not a container port/.test(String(l['msg']))));
  const plan = planHealthChecks(h.snapshot, h.clusters.inUse());
  assert.deepEqual(plan.targets.map((t) => t.key), ['10.244.1.22:9080']);

  // A failing endpoint whose source pod leaves this node is no longer checked: healthy as far as we know.
  await h.swap(onNode(mesh()));
  h.failing.add('10.244.1.23');
  await h.clock.advanceAsync(3 * 5000);
  assert.equal(h.health.isHealthy('10.244.1.23:9080'), false);
  await h.swap(onNode(mesh(), (w) => (w.key === 'bookinfo/productpage-v1' ? { ...w, node: 'node-b' } : w)));
  assert.equal(reviews.cluster.probeSource, undefined);
  assert.deepEqual(await probedIps(), []);
  assert.equal(h.health.isHealthy('10.244.1.23:9080'), true);

  // The next request names a new source; then the Service disappears and its probes stop.
  const sleep = h.snapshot.workloads.get('other/sleep')!;
  h.clusters.resolve(h.snapshot, REVIEWS, sleep);
  await settle();
  const sources = async () => {
    h.probes.length = 0;
    await h.clock.advanceAsync(5000);
    return [...new Set(h.probes.map((p) => p.source.key))];
  };
  assert.deepEqual(await sources(), ['other/sleep']);
  const withoutReviews = { ...h.snapshot, servicesByHostname: new Map([...h.snapshot.servicesByHostname].filter(([host]) => host !== REVIEWS.host)) };
  await h.swap(withoutReviews);
  assert.equal(h.clusters.inUse().length, 0);
  assert.deepEqual(await probedIps(), []);
  h.health.stop();
  assert.equal(h.clock.pendingTimers, 0);
});

// Resilience state machines on an injectable clock: connection-pool circuit breaking (503 UO), outlier
// detection (ejection, return, back-off, caps, panic), active health checks, and the cluster that
// combines them into the balancing set.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../agent/l7/clock.js';
import { CircuitBreaker, connectionPoolLimits } from '../../agent/l7/connection-pool.js';
import { type HealthCheckSpec, HealthChecker, type HealthEvent, healthCheckFromProbe } from '../../agent/l7/health-check.js';
import { OutlierDetector, type OutlierEvent, outlierSettings } from '../../agent/l7/outlier-detection.js';
import { seededRandom } from '../../agent/l7/random.js';
import { UpstreamClusters } from '../../agent/l7/upstream-cluster.js';
import { mesh } from './helpers/l7-mesh.js';

// Istio's circuit-breaking task, verbatim in substance.
const CIRCUIT_BREAKER_DR = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100`;

const REVIEWS = { host: 'reviews.bookinfo.svc.cluster.local', port: 9080 };
const CLIENT = { namespace: 'bookinfo', labels: { app: 'productpage' } };

test("circuit breaker: Istio's task — one connection, one pending, the third concurrent request gets 503 UO", () => {
  const s = mesh(CIRCUIT_BREAKER_DR);
  const clusters = new UpstreamClusters({ clock: new ManualClock() });
  const resolved = clusters.resolve(s, REVIEWS, CLIENT);
  assert.ok(resolved.ok);
  const breaker = resolved.cluster.breaker;
  const first = breaker.admitWithoutIdleConnection();
  const second = breaker.admitWithoutIdleConnection();
  const third = breaker.admitWithoutIdleConnection();
  assert.equal(first.kind, 'connect');
  assert.equal(second.kind, 'queue');
  assert.deepEqual(third, {
    kind: 'overflow',
    admitted: false,
    resource: 'pending',
    status: 503,
    responseFlag: 'UO',
    message: 'upstream overflow: outbound|9080||reviews.bookinfo.svc.cluster.local is at its http.http1MaxPendingRequests limit of 1',
  });
  assert.equal(breaker.connectionExhausted(1), true, 'maxRequestsPerConnection 1: no keep-alive');
  // The queued request takes over the connection once the first one is done.
  if (first.kind === 'connect') first.lease.release();
  if (second.kind === 'queue') second.lease.release();
  assert.equal(breaker.admitWithoutIdleConnection().kind, 'connect');
  assert.equal(breaker.overflowCounts().pending, 1);
  clusters.close();
});

test('circuit breaker: request and retry limits, idempotent release, Istio defaults when unset', () => {
  const breaker = new CircuitBreaker('c', connectionPoolLimits({ http: { http2MaxRequests: 2, maxRetries: 1 } }));
  const a = breaker.acquireRequest();
  const b = breaker.acquireRequest();
  assert.equal(breaker.acquireRequest().admitted, false);
  assert.ok(a.admitted);
  a.release();
  a.release();
  assert.equal(breaker.usage().requests, 1);
  assert.ok(breaker.acquireRequest().admitted && b.admitted);
  assert.ok(breaker.acquireRetry().admitted);
  const retry = breaker.acquireRetry();
  assert.equal(!retry.admitted && retry.resource, 'retries');
  const defaults = connectionPoolLimits(undefined);
  assert.deepEqual(defaults, {
    maxConnections: 2 ** 32 - 1,
    maxPendingRequests: 2 ** 32 - 1,
    maxRequests: 2 ** 32 - 1,
    maxRetries: 2 ** 32 - 1,
    maxRequestsPerConnection: 0,
    connectTimeoutMs: 10_000,
  });
  assert.equal(new CircuitBreaker('c', defaults).connectionExhausted(1_000_000), false);
});

test('outlier detection: a failing endpoint is ejected, leaves the balancing set, and returns after baseEjectionTime', () => {
  const s = mesh(CIRCUIT_BREAKER_DR);
  const clock = new ManualClock();
  const events: string[] = [];
  const clusters = new UpstreamClusters({ clock, random: seededRandom(1), onOutlierEvent: (c, e) => events.push(`${e.kind} ${e.endpoint}`) });
  const resolved = clusters.resolve(s, REVIEWS, CLIENT);
  assert.ok(resolved.ok);
  const cluster = resolved.cluster;
  const bad = '10.244.1.22:9080';
  assert.equal(cluster.reportResult('10.244.1.21:9080', { kind: 'response', status: 200 }), undefined);
  const ejected = cluster.reportResult(bad, { kind: 'response', status: 503 });
  assert.deepEqual(ejected, { kind: 'ejected', endpoint: bad, reason: 'consecutive-5xx', untilMs: 180_000, ejections: 1 });
  for (let i = 0; i < 200; i++) {
    const pick = cluster.choose();
    assert.notEqual(pick.kind === 'endpoint' && pick.endpoint.key, bad);
  }
  clock.advance(179_000);
  assert.equal(cluster.isEjected(bad), true);
  clock.advance(1_000); // the interval tick at 3m returns it
  assert.equal(cluster.isEjected(bad), false);
  assert.deepEqual(events, [`ejected ${bad}`, `returned ${bad}`]);
  // Ejected again soon after: twice the base time (Envoy multiplies by the ejection count), capped by
  // Envoy's max_ejection_time of 300 s; a connect failure counts as the 503 Envoy would answer.
  const again = cluster.reportResult(bad, { kind: 'local-failure', reason: 'connect-failure' });
  assert.equal(again?.kind === 'ejected' && again.untilMs - clock.now(), 300_000);
  clusters.close();
  assert.equal(clock.pendingTimers, 0, 'closing stops the interval timer');
});

test('outlier detection: gateway errors, resets by success, the maxEjectionPercent cap, back-off decay', () => {
  const clock = new ManualClock();
  const events: OutlierEvent[] = [];
  const settings = outlierSettings({ consecutiveGatewayErrors: 2, consecutive5xxErrors: 0, splitExternalLocalOriginErrors: false, intervalMs: 1000, baseEjectionTimeMs: 10_000 })!;
  assert.equal(settings.maxEjectionPercent, 10, "Istio's default cap");
  const detector = new OutlierDetector({ ...settings, maxEjectionPercent: 50 }, clock, (e) => events.push(e));
  detector.setEndpoints(['a', 'b', 'c', 'd']);
  detector.report('a', { kind: 'response', status: 502 });
  detector.report('a', { kind: 'response', status: 500 }); // not a gateway error: the streak restarts
  detector.report('a', { kind: 'response', status: 504 });
  assert.equal(detector.isEjected('a'), false);
  detector.report('a', { kind: 'local-failure', reason: 'timeout' }); // counted as the 504 Envoy answers
  assert.equal(detector.isEjected('a'), true);
  detector.report('b', { kind: 'response', status: 503 });
  detector.report('b', { kind: 'response', status: 200 });
  detector.report('b', { kind: 'response', status: 503 });
  assert.equal(detector.isEjected('b'), false, 'a success resets the count');
  detector.report('b', { kind: 'response', status: 503 });
  assert.equal(detector.isEjected('b'), true);
  // A third ejection would take 75% of the cluster out, over the 50% cap.
  detector.report('c', { kind: 'response', status: 503 });
  assert.deepEqual(detector.report('c', { kind: 'response', status: 503 }), { kind: 'ejection-refused', endpoint: 'c', reason: 'max-ejection-percent' });
  assert.deepEqual(detector.ejectedEndpoints(), ['a', 'b']);
  // With Istio's default 10% cap, a 4-endpoint cluster can eject nobody.
  const capped = new OutlierDetector(settings, clock);
  capped.setEndpoints(['a', 'b', 'c', 'd']);
  capped.report('a', { kind: 'response', status: 503 });
  assert.equal(capped.report('a', { kind: 'response', status: 503 })?.kind, 'ejection-refused');
  // Back-off decays by one per healthy interval after a return.
  clock.advance(10_000);
  assert.deepEqual(detector.sweep().map((e) => e.kind), ['returned', 'returned']);
  clock.advance(1_000);
  detector.sweep();
  detector.report('a', { kind: 'response', status: 503 });
  const reEjected = detector.report('a', { kind: 'response', status: 503 });
  assert.equal(reEjected?.kind === 'ejected' && reEjected.untilMs - clock.now(), 10_000, 'the multiplier decayed back to 1');
});

test('minHealthPercent: below it the cluster balances over every endpoint (panic), as Envoy does', () => {
  const s = mesh(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1, maxEjectionPercent: 100, minHealthPercent: 50}`);
  const clusters = new UpstreamClusters({ clock: new ManualClock() });
  const resolved = clusters.resolve(s, REVIEWS, CLIENT);
  assert.ok(resolved.ok);
  const cluster = resolved.cluster;
  cluster.reportResult('10.244.1.21:9080', { kind: 'response', status: 500 });
  assert.deepEqual([cluster.balancingSet().endpoints.length, cluster.balancingSet().panic], [2, false]);
  cluster.reportResult('10.244.1.22:9080', { kind: 'response', status: 500 });
  assert.deepEqual([cluster.balancingSet().endpoints.length, cluster.balancingSet().panic], [3, true]);
  clusters.close();
});

test('without outlierDetection, failing health checks still trigger Envoy’s default 50% panic threshold', () => {
  const down = new Set(['10.244.1.21:9080', '10.244.1.22:9080']);
  const clusters = new UpstreamClusters({ clock: new ManualClock(), isHealthy: (key) => !down.has(key) });
  const resolved = clusters.resolve(mesh(), REVIEWS, CLIENT);
  assert.ok(resolved.ok);
  assert.deepEqual(resolved.cluster.balancingSet().panic, true);
  down.delete('10.244.1.21:9080');
  assert.deepEqual(resolved.cluster.balancingSet().endpoints.map((e) => e.ip), ['10.244.1.21', '10.244.1.23']);
  clusters.close();
});

test('no cluster and no healthy upstream are typed 503s (NC, UH)', () => {
  const s = mesh(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1, maxEjectionPercent: 100}
  subsets: [{name: v9, labels: {version: v9}}]`);
  const clusters = new UpstreamClusters({ clock: new ManualClock() });
  const nc = clusters.resolve(s, { ...REVIEWS, subset: 'v7' }, CLIENT);
  assert.equal(!nc.ok && `${nc.status} ${nc.responseFlag}`, '503 NC');
  const ghost = clusters.resolve(s, { host: 'ghost.bookinfo.svc.cluster.local', port: 80 }, CLIENT);
  assert.match(!ghost.ok ? ghost.message : '', /ghost\.bookinfo\.svc\.cluster\.local is not a service in the mesh/);
  const empty = clusters.resolve(s, { ...REVIEWS, subset: 'v9' }, CLIENT);
  assert.ok(empty.ok);
  const uh = empty.cluster.choose();
  assert.equal(uh.kind === 'noHealthyUpstream' && `${uh.status} ${uh.responseFlag} ${uh.message}`, '503 UH no healthy upstream: outbound|9080|v9|reviews.bookinfo.svc.cluster.local has no endpoints');
  clusters.close();
});

test('health checks come from the readinessProbe; endpoints leave after failureThreshold and return on success', async () => {
  const s = mesh();
  const workload = s.workloads.get('bookinfo/reviews-v2')!;
  const config = healthCheckFromProbe(workload);
  assert.ok(config.ok);
  const spec: HealthCheckSpec = config.spec;
  assert.deepEqual(spec, { kind: 'http', port: 9080, path: '/health', intervalMs: 5000, timeoutMs: 1000, unhealthyThreshold: 3, healthyThreshold: 1 });
  assert.equal(healthCheckFromProbe({ ...workload, readinessProbe: undefined }).ok, false);

  const clock = new ManualClock();
  const answers = new Map<string, 'ok' | 'fail' | 'hang'>([['10.244.1.21', 'ok'], ['10.244.1.22', 'ok'], ['10.244.1.23', 'ok']]);
  const probed: string[] = [];
  const events: HealthEvent[] = [];
  const checker = new HealthChecker(
    async ({ ip }) => {
      probed.push(ip);
      const answer = answers.get(ip);
      if (answer === 'hang') return new Promise<boolean>(() => {});
      return answer === 'ok';
    },
    clock,
    (e) => events.push(e),
  );
  const clusters = new UpstreamClusters({ clock, isHealthy: (key) => checker.isHealthy(key) });
  const resolved = clusters.resolve(mesh(), REVIEWS, CLIENT);
  assert.ok(resolved.ok);
  const cluster = resolved.cluster;
  checker.setTargets(cluster.allEndpoints().map((e) => ({ key: e.key, ip: e.ip, spec })));
  const set = () => cluster.balancingSet().endpoints.map((e) => e.ip).sort();

  await clock.advanceAsync(5000);
  assert.equal(probed.length, 3);
  answers.set('10.244.1.22', 'fail');
  await clock.advanceAsync(10_000);
  assert.equal(checker.isHealthy('10.244.1.22:9080'), true, 'two failures are below the threshold');
  await clock.advanceAsync(5000);
  assert.equal(checker.isHealthy('10.244.1.22:9080'), false);
  assert.deepEqual(set(), ['10.244.1.21', '10.244.1.23']);
  answers.set('10.244.1.22', 'ok');
  await clock.advanceAsync(5000);
  assert.deepEqual(set(), ['10.244.1.21', '10.244.1.22', '10.244.1.23']);
  // A probe that never answers fails at its timeout, on the same clock.
  answers.set('10.244.1.21', 'hang');
  await clock.advanceAsync(3 * 6000);
  assert.equal(checker.isHealthy('10.244.1.21:9080'), false);
  assert.deepEqual(events.map((e) => `${e.kind} ${e.endpoint}`), ['unhealthy 10.244.1.22:9080', 'healthy 10.244.1.22:9080', 'unhealthy 10.244.1.21:9080']);
  checker.stop();
  clusters.close();
  assert.equal(clock.pendingTimers, 0);
});

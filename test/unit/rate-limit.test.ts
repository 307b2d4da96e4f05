// RateLimit (ambit.dev/v1alpha1): parsing with file:line messages, selection by Service and labels, and
// Envoy's local token bucket semantics stepped with a manual clock.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { formatDiagnostic } from '../../agent/config/diagnostics.js';
import { parseConfigFile } from '../../agent/config/load.js';
import { ManualClock } from '../../agent/l7/clock.js';
import { requestHeaders } from '../../agent/l7/request.js';
import { RateLimiter, type RateLimitRequest, rateLimitsFor } from '../../agent/policy/rate-limit.js';
import { buildSnapshot } from '../../agent/state/build.js';
import type { MeshSnapshot, SpiffeId } from '../../agent/state/model.js';

const MESH = `
apiVersion: v1
kind: Pod
metadata: { name: reviews-v1, namespace: bookinfo, labels: { app: reviews, version: v1 } }
spec: { containers: [{ name: c, command: [x], ports: [{ name: http, containerPort: 9080 }] }] }
status: { podIP: 10.1.0.1 }
---
apiVersion: v1
kind: Pod
metadata: { name: reviews-v2, namespace: bookinfo, labels: { app: reviews, version: v2 } }
spec: { containers: [{ name: c, command: [x], ports: [{ name: http, containerPort: 9080 }] }] }
status: { podIP: 10.1.0.2 }
---
apiVersion: v1
kind: Service
metadata: { name: reviews, namespace: bookinfo }
spec: { clusterIP: 10.96.0.21, selector: { app: reviews }, ports: [{ name: http, port: 9080, targetPort: http }, { name: tcp-admin, port: 7000, targetPort: 7000 }] }
`;

function mesh(limits: string): MeshSnapshot {
  const parsed = parseConfigFile(`${MESH}---\n${limits}`, 'limits.yaml');
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic), []);
  return buildSnapshot(parsed.objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
}

function req(s: MeshSnapshot, r: { pod?: string; port?: number; identity?: string; method?: string; path?: string; headers?: string[] } = {}): RateLimitRequest {
  return {
    destination: s.workloads.get(`bookinfo/${r.pod ?? 'reviews-v1'}`)!,
    port: r.port ?? 9080,
    ...(r.identity ? { sourceIdentity: `spiffe://cluster.local/ns/bookinfo/sa/${r.identity}` as SpiffeId } : {}),
    method: r.method ?? 'GET',
    path: r.path ?? '/reviews/1',
    headers: requestHeaders(r.headers ?? []),
  };
}

const SIMPLE = `
apiVersion: ambit.dev/v1alpha1
kind: RateLimit
metadata: { name: reviews, namespace: bookinfo }
spec:
  targetRef: { kind: Service, name: reviews }
  tokenBucket: { maxTokens: 3, tokensPerFill: 2, fillInterval: 1s }
`;

test('a token bucket: starts full, one token a request, whole fills every fillInterval capped at maxTokens', () => {
  const s = mesh(SIMPLE);
  const clock = new ManualClock(1000);
  const limiter = new RateLimiter({ clock });
  const seen = [1, 2, 3, 4].map(() => limiter.check(s, req(s)));
  assert.deepEqual(seen.map((d) => d.limited), [false, false, false, true]);
  assert.deepEqual(seen[0]!.headers, { 'x-ratelimit-limit': '3', 'x-ratelimit-remaining': '2', 'x-ratelimit-reset': '1' });
  const over = seen[3]!;
  assert.ok(over.limited);
  if (over.limited) {
    assert.equal(over.status, 429);
    assert.equal(over.flag, 'RL');
    assert.equal(over.body, 'local_rate_limited');
    assert.equal(over.grpcStatus, 14);
    assert.deepEqual(over.headers, { 'x-ratelimit-limit': '3', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '1' });
    assert.deepEqual(over.bucket, { rateLimit: 'bookinfo/reviews', route: 'default' });
  }
  clock.advance(999);
  assert.equal(limiter.check(s, req(s)).limited, true, 'no partial fills');
  clock.advance(1);
  assert.deepEqual([1, 2, 3].map(() => limiter.check(s, req(s)).limited), [false, false, true], 'one fill brings tokensPerFill back');
  clock.advance(10_000);
  assert.deepEqual([1, 2, 3, 4].map(() => limiter.check(s, req(s)).limited), [false, false, false, true], 'never more than maxTokens');
});

test('buckets are per destination pod; ports the Service does not target are not limited', () => {
  const s = mesh(SIMPLE);
  const limiter = new RateLimiter({ clock: new ManualClock() });
  for (let i = 0; i < 3; i++) limiter.check(s, req(s));
  assert.equal(limiter.check(s, req(s)).limited, true);
  assert.equal(limiter.check(s, req(s, { pod: 'reviews-v2' })).limited, false);
  assert.deepEqual(limiter.check(s, req(s, { port: 8080 })), { limited: false }, 'a port the Service does not target');
  assert.equal(rateLimitsFor(s, s.workloads.get('bookinfo/reviews-v1')!, 9080).length, 1);
  assert.equal(rateLimitsFor(s, s.workloads.get('bookinfo/reviews-v1')!, 8080).length, 0);
});

test('routes: the first match decides (path prefix, method, header value by value), else the default bucket; perSourceIdentity', () => {
  const s = mesh(`
apiVersion: ambit.dev/v1alpha1
kind: RateLimit
metadata: { name: reviews, namespace: bookinfo }
spec:
  selector: { matchLabels: { app: reviews } }
  tokenBucket: { maxTokens: 100, fillInterval: 1m }
  routes:
  - name: jason
    match: [{ headers: { end-user: { exact: jason } } }]
    tokenBucket: { maxTokens: 1, fillInterval: 1m }
  - name: writes
    match: [{ path: { prefix: /reviews }, method: { exact: POST } }, { path: { exact: /ratings } }]
    tokenBucket: { maxTokens: 2, fillInterval: 1m }
    perSourceIdentity: true
`);
  const limiter = new RateLimiter({ clock: new ManualClock() });
  const jason = ['end-user', 'jason'];
  assert.equal(limiter.check(s, req(s, { headers: jason })).limited, false);
  const second = limiter.check(s, req(s, { headers: ['end-user', 'someone', 'End-User', 'jason'] }));
  assert.equal(second.limited, true, 'a second end-user header does not escape the route');
  assert.deepEqual(second.bucket, { rateLimit: 'bookinfo/reviews', route: 'jason' });
  // writes: two per identity.
  const post = (identity?: string) => limiter.check(s, req(s, { method: 'POST', path: '/reviews/1?x=y', ...(identity ? { identity } : {}) }));
  assert.deepEqual([post('productpage'), post('productpage'), post('productpage')].map((d) => d.limited), [false, false, true]);
  assert.deepEqual([post('other'), post('other'), post('other')].map((d) => d.limited), [false, false, true]);
  assert.deepEqual([post(), post(), post()].map((d) => d.limited), [false, false, true], 'plaintext clients share one bucket');
  assert.equal(limiter.check(s, req(s, { path: '/ratings', identity: 'new' })).limited, false);
  const other = limiter.check(s, req(s, { path: '/reviews/2' }));
  assert.deepEqual(other.headers?.['x-ratelimit-remaining'], '99');
});

test('several RateLimits: a request takes a token from each, or from none when one is empty', () => {
  const s = mesh(`${SIMPLE}
---
apiVersion: ambit.dev/v1alpha1
kind: RateLimit
metadata: { name: v2-only, namespace: bookinfo }
spec:
  selector: { matchLabels: { version: v2 } }
  tokenBucket: { maxTokens: 1, fillInterval: 1s }
`);
  const limiter = new RateLimiter({ clock: new ManualClock() });
  const first = limiter.check(s, req(s, { pod: 'reviews-v2' }));
  assert.equal(first.limited, false);
  assert.deepEqual('bucket' in first && first.bucket, { rateLimit: 'bookinfo/v2-only', route: 'default' }, 'the headers are the tightest bucket\'s');
  const second = limiter.check(s, req(s, { pod: 'reviews-v2' }));
  assert.deepEqual(second.limited && second.bucket, { rateLimit: 'bookinfo/v2-only', route: 'default' });
  // The refused request took nothing from the Service bucket: 2 of 3 tokens are still there.
  assert.equal(limiter.check(s, req(s, { pod: 'reviews-v2' })).headers?.['x-ratelimit-remaining'], '0');
});

test('decisions are counted on the registry it is given', async () => {
  const s = mesh(SIMPLE);
  const registry = new Registry();
  const limiter = new RateLimiter({ clock: new ManualClock(), registry });
  for (let i = 0; i < 5; i++) limiter.check(s, req(s));
  new RateLimiter({ registry }); // a second limiter on the same registry reuses the counter
  const text = await registry.metrics();
  assert.match(text, /ambit_rate_limit_decisions_total\{namespace="bookinfo",rate_limit="reviews",route="default",decision="ok"\} 3/);
  assert.match(text, /ambit_rate_limit_decisions_total\{namespace="bookinfo",rate_limit="reviews",route="default",decision="rate_limited"\} 2/);
});

test('per-identity buckets are swept once full, so many clients do not grow memory forever', () => {
  const s = mesh(`
apiVersion: ambit.dev/v1alpha1
kind: RateLimit
metadata: { name: reviews, namespace: bookinfo }
spec:
  targetRef: { kind: Service, name: reviews, port: 9080 }
  perSourceIdentity: true
  tokenBucket: { maxTokens: 5, fillInterval: 100ms }
`);
  const clock = new ManualClock();
  const limiter = new RateLimiter({ clock, sweepAbove: 10 });
  for (let i = 0; i < 10; i++) limiter.check(s, req(s, { identity: `client-${i}` }));
  assert.equal(limiter.bucketCount, 10);
  clock.advance(100);
  limiter.check(s, req(s, { identity: 'late' }));
  assert.equal(limiter.bucketCount, 1, 'the ten refilled buckets were dropped; the busy one stays');
});

test('a changed RateLimit starts a fresh bucket', () => {
  const limiter = new RateLimiter({ clock: new ManualClock() });
  const a = mesh(SIMPLE);
  for (let i = 0; i < 3; i++) limiter.check(a, req(a));
  assert.equal(limiter.check(a, req(a)).limited, true);
  const b = mesh(SIMPLE.replace('maxTokens: 3', 'maxTokens: 10'));
  assert.equal(limiter.check(b, req(b)).headers?.['x-ratelimit-remaining'], '9');
});

test('validation: file:line messages for every mistake, and warnings for targets that do not exist', () => {
  const parsed = parseConfigFile(
    `apiVersion: ambit.dev/v1alpha1
kind: RateLimit
metadata: { name: bad, namespace: bookinfo }
spec:
  targetRef: { kind: Deployment, name: reviews, namespace: other }
  selector: { matchLabels: { app: reviews } }
  tokenBucket: { maxTokens: 0, fillInterval: 10ms, burst: 3 }
  routes:
  - name: default
    tokenBucket: { maxTokens: 1, fillInterval: 1s }
  - name: a
    match: [{ path: { suffix: x } }]
    tokenBucket: { maxTokens: 1, fillInterval: 1s }
  - name: a
    tokenBucket: { maxTokens: 1, fillInterval: 1s }
---
apiVersion: ambit.dev/v1
kind: RateLimit
metadata: { name: empty, namespace: bookinfo }
spec: { selector: { matchLabels: { app: x } } }
`,
    'limits.yaml',
  );
  assert.deepEqual(parsed.objects, []);
  assert.deepEqual(parsed.diagnostics.map(formatDiagnostic), [
    'limits.yaml:4: RateLimit bookinfo/bad: spec: expected only one of targetRef, selector, got targetRef and selector',
    'limits.yaml:5: RateLimit bookinfo/bad: spec.targetRef.kind: expected one of Service, got "Deployment"',
    'limits.yaml:5: RateLimit bookinfo/bad: spec.targetRef.namespace: a RateLimit targets a Service of its own namespace; cross-namespace targetRefs are not supported',
    'limits.yaml:7: RateLimit bookinfo/bad: spec.tokenBucket.maxTokens: expected an integer of at least 1, got 0',
    'limits.yaml:7: RateLimit bookinfo/bad: spec.tokenBucket.fillInterval: expected a duration of at least 50ms, got "10ms"',
    'limits.yaml:9: RateLimit bookinfo/bad: spec.routes[0].name: "default" names the bucket of spec.tokenBucket; choose another route name',
    'limits.yaml:12: RateLimit bookinfo/bad: spec.routes[1].match[0].path: expected one of exact, prefix or regex, got none',
    'limits.yaml:14: RateLimit bookinfo/bad: spec.routes[2]: route name "a" is used twice; names label metrics and must be unique',
    'limits.yaml:17: RateLimit bookinfo/empty: apiVersion: expected ambit.dev/v1alpha1 for a RateLimit, got "ambit.dev/v1"',
    'limits.yaml:20: RateLimit bookinfo/empty: spec: expected tokenBucket, routes or global.descriptors, got none (a RateLimit with no bucket or descriptor limits nothing)',
  ]);

  const dangling = parseConfigFile(SIMPLE.replace('name: reviews }', 'name: ratings }'), 'limits.yaml');
  const snapshot = buildSnapshot(dangling.objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
  assert.deepEqual(snapshot.diagnostics.map(formatDiagnostic), [
    'limits.yaml:2: RateLimit bookinfo/reviews: spec.targetRef.name: warning: Service bookinfo/ratings is not defined; the rate limit applies to nothing yet',
  ]);
  assert.equal(snapshot.ambit.rateLimits.length, 1);
});

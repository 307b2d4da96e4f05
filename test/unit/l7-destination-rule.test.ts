// DestinationRule lookup and policy precedence: the client → service → root namespace path, merging of
// rules for one host, workloadSelector, subsets by labels, and top/port/subset traffic policy layering.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { findDestinationRule, resolveTrafficPolicy, subsetEndpoints } from '../../agent/l7/destination-rule.js';
import { mesh } from './helpers/l7-mesh.js';

const dr = (name: string, spec: string, ns = 'bookinfo') => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ${name}, namespace: ${ns}}
spec:
${spec}`;

const REVIEWS_HOST = 'reviews.bookinfo.svc.cluster.local';
const productpage = { namespace: 'bookinfo', labels: { app: 'productpage' } };
const sleep = { namespace: 'other', labels: { app: 'sleep' } };

// The DestinationRule example of Istio's reference: a top-level policy, a per-port override, and a subset
// with its own policy.
const REVIEWS_DR = dr('reviews', `  host: reviews
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    connectionPool: {tcp: {maxConnections: 100}}
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {simple: LEAST_REQUEST}
    - port: {number: 8080}
      connectionPool: {http: {http1MaxPendingRequests: 7}}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN}
      outlierDetection: {consecutive5xxErrors: 3}
  - name: v3
    labels: {version: v3}
    trafficPolicy:
      portLevelSettings:
      - port: {number: 9080}
        connectionPool: {tcp: {maxConnections: 1}}`);

test('subsets select endpoints by labels; an undefined subset is a typed NC-worthy result', () => {
  const s = mesh(REVIEWS_DR);
  const rule = findDestinationRule(s, REVIEWS_HOST, productpage);
  const reviews = s.servicesByHostname.get(REVIEWS_HOST)!;
  const v2 = subsetEndpoints(s, reviews, rule, 'v2');
  assert.deepEqual(v2.ok && v2.endpoints.map((e) => e.workload), ['bookinfo/reviews-v2']);
  const all = subsetEndpoints(s, reviews, rule, undefined);
  assert.equal(all.ok && all.endpoints.length, 3);
  const missing = subsetEndpoints(s, reviews, rule, 'v9');
  assert.equal(missing.ok, false);
  assert.match(!missing.ok ? missing.message : '', /subset "v9" of reviews\.bookinfo\.svc\.cluster\.local is not defined \(DestinationRule bookinfo\/reviews defines v1, v2, v3\)/);
});

test('policy precedence: top level, then its port settings, then the subset, then the subset’s port settings', () => {
  const rule = findDestinationRule(mesh(REVIEWS_DR), REVIEWS_HOST, productpage);
  const lb = (subset: string | undefined, port: number) => {
    const a = resolveTrafficPolicy(rule, subset, port).loadBalancer?.algorithm;
    return a?.kind === 'simple' ? a.simple : a?.kind;
  };
  assert.equal(lb(undefined, 9090), 'RANDOM');
  assert.equal(lb(undefined, 9080), 'LEAST_REQUEST', 'the port setting overrides the top level');
  assert.equal(lb('v1', 9080), 'LEAST_REQUEST', 'a subset without a policy inherits');
  assert.equal(lb('v2', 9080), 'ROUND_ROBIN', 'the subset overrides the top level’s port setting');
  assert.equal(resolveTrafficPolicy(rule, 'v2', 9080).outlierDetection?.consecutive5xxErrors, 3);
  // Fields are replaced whole, never merged inside: port 8080's pool drops the top level's tcp limits.
  assert.deepEqual(resolveTrafficPolicy(rule, undefined, 8080).connectionPool, { http: { http1MaxPendingRequests: 7 } });
  assert.deepEqual(resolveTrafficPolicy(rule, 'v3', 9080).connectionPool, { tcp: { maxConnections: 1 } });
  assert.deepEqual(resolveTrafficPolicy(rule, 'v3', 9090).connectionPool, { tcp: { maxConnections: 100 } });
  assert.deepEqual(resolveTrafficPolicy(undefined, undefined, 9080), {});
});

test('lookup path: client namespace, then the service’s, then the root namespace; first hit decides', () => {
  const s = mesh(
    dr('root', `  host: "*.svc.cluster.local"
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}`, 'istio-system'),
    dr('service-ns', `  host: reviews
  trafficPolicy: {loadBalancer: {simple: RANDOM}}`),
    dr('client-ns', `  host: reviews.bookinfo.svc.cluster.local
  trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}`, 'other'),
  );
  assert.deepEqual(findDestinationRule(s, REVIEWS_HOST, productpage)?.sources, ['bookinfo/service-ns']);
  assert.deepEqual(findDestinationRule(s, REVIEWS_HOST, sleep)?.sources, ['other/client-ns']);
  assert.deepEqual(findDestinationRule(s, 'ratings.bookinfo.svc.cluster.local', sleep)?.sources, ['istio-system/root']);
  // A short host in another namespace names that namespace's service, not bookinfo's.
  const shortElsewhere = mesh(dr('short', `  host: reviews
  trafficPolicy: {loadBalancer: {simple: RANDOM}}`, 'other'));
  assert.equal(findDestinationRule(shortElsewhere, REVIEWS_HOST, sleep), undefined);
});

test('several rules for one host in a namespace merge: subsets pooled, the first traffic policy wins', () => {
  const s = mesh(
    dr('reviews-a', `  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]`),
    dr('reviews-b', `  host: reviews
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
  subsets: [{name: v1, labels: {version: v2}}, {name: v3, labels: {version: v3}}]`),
    dr('reviews-c', `  host: reviews
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}`),
  );
  const rule = findDestinationRule(s, REVIEWS_HOST, productpage)!;
  assert.deepEqual(rule.sources, ['bookinfo/reviews-a', 'bookinfo/reviews-b', 'bookinfo/reviews-c']);
  assert.deepEqual(rule.subsets.map((x) => `${x.name}=${x.labels.version}`), ['v1=v1', 'v3=v3']);
  assert.deepEqual(rule.trafficPolicy?.loadBalancer?.algorithm, { kind: 'simple', simple: 'RANDOM' });
});

test('exportTo and workloadSelector limit who a rule applies to', () => {
  const s = mesh(
    dr('private', `  host: reviews
  exportTo: ["."]
  trafficPolicy: {loadBalancer: {simple: RANDOM}}`),
    dr('for-productpage', `  host: ratings
  workloadSelector: {matchLabels: {app: productpage}}
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}`),
    dr('ratings', `  host: ratings
  trafficPolicy: {loadBalancer: {simple: RANDOM}}`),
  );
  assert.ok(findDestinationRule(s, REVIEWS_HOST, productpage));
  assert.equal(findDestinationRule(s, REVIEWS_HOST, sleep), undefined);
  const ratings = 'ratings.bookinfo.svc.cluster.local';
  assert.deepEqual(findDestinationRule(s, ratings, productpage)?.sources, ['bookinfo/for-productpage', 'bookinfo/ratings']);
  assert.deepEqual(findDestinationRule(s, ratings, productpage)?.trafficPolicy?.loadBalancer?.algorithm, { kind: 'simple', simple: 'ROUND_ROBIN' });
  assert.deepEqual(findDestinationRule(s, ratings, { namespace: 'bookinfo', labels: { app: 'reviews' } })?.sources, ['bookinfo/ratings']);
});

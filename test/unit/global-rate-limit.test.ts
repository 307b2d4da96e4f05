// Global rate limits (a RateLimit's `global` block) as a client sees them through the destination
// agent's inbound proxy, against a rate limit service on loopback speaking Envoy's ShouldRateLimit:
// 200s with x-ratelimit-* until the service says OVER_LIMIT, then 429; the descriptors the service
// receives; failureMode allow and deny with the service down; the timeout; the per-descriptor metric;
// and validation messages naming file, line, object and field.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { formatDiagnostic } from '../../agent/config/diagnostics.js';
import { parseConfigFile } from '../../agent/config/load.js';
import { requestHeaders } from '../../agent/l7/request.js';
import { GlobalRateLimiter } from '../../agent/policy/global-rate-limit.js';
import { PRODUCTPAGE, inboundHarness } from './helpers/inbound-harness.js';
import { mesh } from './helpers/l7-mesh.js';
import { parsePrometheusText, samplesOf } from './helpers/prometheus-text.js';
import { MapCounters, globalRateLimitYaml, startRateLimitService } from './helpers/rate-limit-service.js';

const limitYaml = (port: number, ...settings: string[]) =>
  globalRateLimitYaml(
    'reviews-global',
    port,
    'mesh',
    settings,
    `    - name: per-service
      entries:
      - genericKey: {descriptorValue: reviews}
    - name: per-client
      entries:
      - remoteAddress: {}
      - sourceIdentity: {}
      - destinationService: {}
      - requestHeaders: {headerName: x-tenant, descriptorKey: tenant, skipIfAbsent: true}
`,
  );

/** A port nothing listens on: a service that is down refuses it. */
async function closedPort(): Promise<number> {
  const rls = await startRateLimitService({ counters: new MapCounters(), perMinute: {} });
  await rls.close();
  return rls.port;
}

test('over the quota the service counts, requests are answered 429; below it 200 with x-ratelimit-* from the service', async () => {
  const rls = await startRateLimitService({ counters: new MapCounters(), perMinute: { generic_key: 3 } });
  const agent = await inboundHarness(limitYaml(rls.port, 'timeout: 2s'));
  try {
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await agent.request('/reviews/1', { 'x-tenant': 'acme' }));
    assert.deepEqual(
      answers.map((a) => a.status),
      [200, 200, 200, 429, 429],
    );
    assert.deepEqual(
      answers.map((a) => a.headers['x-ratelimit-remaining']),
      ['2', '1', '0', '0', '0'],
    );
    assert.equal(answers[0]!.headers['x-ratelimit-limit'], '3');
    assert.ok(Number(answers[0]!.headers['x-ratelimit-reset']) <= 60);
    assert.equal(answers[3]!.headers['x-envoy-ratelimited'], 'true');
    assert.equal(agent.podRequests.length, 3, 'a limited request never reaches the pod');

    const sent = rls.requests[0]!;
    assert.equal(sent.domain, 'mesh');
    assert.deepEqual(
      sent.descriptors.map((d) => d.entries.map((e) => [e.key, e.value])),
      [
        [['generic_key', 'reviews']],
        [
          ['remote_address', '10.244.1.10'],
          ['source_identity', PRODUCTPAGE],
          ['destination_service', 'reviews.bookinfo.svc.cluster.local'],
          ['tenant', 'acme'],
        ],
      ],
    );
  } finally {
    await agent.close();
    await rls.close();
  }
});

test('the service down: failureMode allow lets requests through, deny answers 500 (RLSE), and the agent says why', async () => {
  const port = await closedPort();
  const allow = await inboundHarness(limitYaml(port, 'failureMode: allow', 'timeout: 2s'));
  try {
    assert.equal((await allow.request('/reviews/1')).status, 200);
  } finally {
    await allow.close();
  }
  const deny = await inboundHarness(limitYaml(port, 'failureMode: deny', 'timeout: 2s'));
  try {
    const answer = await deny.request('/reviews/1');
    assert.equal(answer.status, 500);
    assert.equal(deny.podRequests.length, 0);
    await deny.request('/reviews/2');
    // The operator is told which RateLimit, which service and why, once (not once a request).
    const warnings = deny.logLines.filter((l) => l['rateLimit'] === 'bookinfo/reviews-global');
    assert.equal(warnings.length, 1, JSON.stringify(deny.logLines));
    assert.match(String(warnings[0]!['msg']), /did not answer \(UNAVAILABLE from 127\.0\.0\.1:\d+: .*\), so requests are answered 500 \(failureMode deny\)/);
  } finally {
    await deny.close();
  }
});

test('a service slower than timeout counts as down: deny answers 500 within the timeout, allow lets the request through', async () => {
  const rls = await startRateLimitService({ counters: new MapCounters(), perMinute: { generic_key: 100 }, delayMs: 3000 });
  const deny = await inboundHarness(limitYaml(rls.port, 'failureMode: deny', 'timeout: 200ms'));
  const allow = await inboundHarness(limitYaml(rls.port, 'timeout: 200ms'));
  try {
    const started = performance.now();
    assert.equal((await deny.request('/reviews/1')).status, 500);
    const denyMs = performance.now() - started;
    assert.ok(denyMs >= 150 && denyMs < 2000, `answered after ${Math.round(denyMs)} ms; expected about the 200 ms timeout, well before the service's 3 s`);
    const again = performance.now();
    assert.equal((await allow.request('/reviews/1')).status, 200);
    assert.ok(performance.now() - again < 2000);
    assert.ok(rls.requests.length >= 2, 'the service was asked');
  } finally {
    await deny.close();
    await allow.close();
    await rls.close();
  }
});

test('a counter per descriptor and answer: ok, over_limit, error', async () => {
  const rls = await startRateLimitService({ counters: new MapCounters(), perMinute: { generic_key: 1 } });
  const registry = new Registry();
  const limiter = new GlobalRateLimiter({ registry });
  try {
    const snapshot = mesh(limitYaml(rls.port, 'timeout: 2s'));
    const request = {
      destination: snapshot.workloads.get('bookinfo/reviews-v1')!,
      port: 9080,
      method: 'GET',
      path: '/',
      headers: requestHeaders([]),
      sourceIp: '10.244.1.10',
    };
    assert.equal((await limiter.check(snapshot, request)).limited, false);
    const second = await limiter.check(snapshot, request);
    assert.ok(second.limited && second.status === 429);
    const samples = samplesOf(parsePrometheusText(await registry.metrics()), 'ambit_global_rate_limit_decisions_total');
    const byLabels = Object.fromEntries(samples.map((s) => [`${s.labels['descriptor']}/${s.labels['decision']}`, s.value]));
    // per-client has no identity nor service in this request, so it is not sent (as Envoy skips a descriptor missing a value).
    assert.deepEqual(byLabels, { 'per-service/ok': 1, 'per-service/over_limit': 1 });
  } finally {
    await rls.close();
  }
});

test('validation names file, line, object and field', () => {
  const parsed = parseConfigFile(
    `apiVersion: ambit.dev/v1alpha1
kind: RateLimit
metadata: {name: bad, namespace: bookinfo}
spec:
  targetRef: {kind: Service, name: reviews}
  global:
    service: ratelimit.infra
    port: 70000
    domain: mesh
    failureMode: closed
    descriptors:
    - entries: [{clientCert: {}}]
    - entries: [{requestHeaders: {headerName: x-user}}]
    - entries: []
---
apiVersion: ambit.dev/v1alpha1
kind: RateLimit
metadata: {name: orphan, namespace: bookinfo}
spec:
  targetRef: {kind: Service, name: reviews}
  routes:
  - name: r
    descriptors: [{entries: [{genericKey: {descriptorValue: x}}]}]
`,
    'global.yaml',
  );
  assert.deepEqual(parsed.objects, []);
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic), [
    'global.yaml:8: RateLimit bookinfo/bad: spec.global.port: expected an integer from 1 to 65535, got 70000',
    'global.yaml:10: RateLimit bookinfo/bad: spec.global.failureMode: expected one of allow, deny, got "closed"',
    'global.yaml:12: RateLimit bookinfo/bad: spec.global.descriptors[0].entries[0]: expected one of genericKey, requestHeaders, remoteAddress, sourceIdentity, destinationService',
    'global.yaml:13: RateLimit bookinfo/bad: spec.global.descriptors[1].entries[0].requestHeaders.descriptorKey: required field is missing',
    'global.yaml:14: RateLimit bookinfo/bad: spec.global.descriptors[2].entries: expected at least one entry (a descriptor without entries matches no limit in the service)',
    'global.yaml:23: RateLimit bookinfo/orphan: spec.routes[0].descriptors: descriptors are sent to a rate limit service; add spec.global naming it',
  ]);
});

// Retry policy: Istio's default when a route says nothing, retryOn parsing (conditions and status
// codes), and which attempt outcomes each condition retries, as Envoy's router does.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { seededRandom } from '../../agent/l7/random.js';
import {
  ISTIO_DEFAULT_RETRY_POLICY,
  formatRetryOn,
  isRetriable,
  parseRetryOn,
  retryBackoffMs,
  retryPolicy,
} from '../../agent/l7/retry-policy.js';

test("Istio's default policy: 2 attempts on connect-failure, refused-stream, unavailable, cancelled, retriable-status-codes (503)", () => {
  const p = retryPolicy(undefined);
  assert.equal(p, ISTIO_DEFAULT_RETRY_POLICY);
  assert.equal(p.attempts, 2);
  assert.equal(formatRetryOn(p), 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes,503');
  assert.equal(p.perTryTimeoutMs, undefined);
  assert.equal(isRetriable(p, { kind: 'connect-failure' }), true);
  assert.equal(isRetriable(p, { kind: 'refused-stream' }), true);
  assert.equal(isRetriable(p, { kind: 'response', status: 503 }), true);
  assert.equal(isRetriable(p, { kind: 'response', status: 200, grpcStatus: 14 }), true, 'gRPC UNAVAILABLE');
  assert.equal(isRetriable(p, { kind: 'response', status: 200, grpcStatus: 1 }), true, 'gRPC CANCELLED');
  assert.equal(isRetriable(p, { kind: 'response', status: 500 }), false);
  assert.equal(isRetriable(p, { kind: 'response', status: 502 }), false);
  assert.equal(isRetriable(p, { kind: 'reset', beforeRequest: false }), false);
  assert.equal(isRetriable(p, { kind: 'per-try-timeout' }), false);
});

test('attempts without retryOn keep the default conditions; attempts 0 disables retries', () => {
  const p = retryPolicy({ attempts: 5, retryOn: [], retryRemoteLocalities: false, perTryTimeoutMs: 250 });
  assert.equal(p.attempts, 5);
  assert.equal(p.perTryTimeoutMs, 250);
  assert.equal(formatRetryOn(p), formatRetryOn(ISTIO_DEFAULT_RETRY_POLICY));
  assert.equal(retryPolicy({ attempts: 0, retryOn: [], retryRemoteLocalities: false }).attempts, 0);
});

test('retryOn: numeric codes become retriable status codes and turn on retriable-status-codes', () => {
  assert.deepEqual(parseRetryOn('5xx, 409,connect-failure,429'), {
    conditions: new Set(['5xx', 'connect-failure', 'retriable-status-codes']),
    statusCodes: new Set([409, 429]),
  });
  const p = retryPolicy({ attempts: 3, retryOn: ['gateway-error', '429'], retryRemoteLocalities: false });
  assert.equal(isRetriable(p, { kind: 'response', status: 429 }), true);
  assert.equal(isRetriable(p, { kind: 'response', status: 504 }), true);
  assert.equal(isRetriable(p, { kind: 'response', status: 500 }), false, 'gateway-error is 502, 503 and 504 only');
  assert.equal(isRetriable(p, { kind: 'response', status: 503 }), true);
  assert.equal(isRetriable(p, { kind: 'connect-failure' }), true, 'a failed connect is a local 503');
  assert.equal(isRetriable(p, { kind: 'per-try-timeout' }), true);
});

test('each condition retries what Envoy documents for it', () => {
  const only = (retryOn: string) => retryPolicy({ attempts: 1, retryOn: [retryOn], retryRemoteLocalities: false });
  assert.equal(isRetriable(only('5xx'), { kind: 'response', status: 500 }), true);
  assert.equal(isRetriable(only('5xx'), { kind: 'reset', beforeRequest: false }), true);
  assert.equal(isRetriable(only('5xx'), { kind: 'response', status: 409 }), false);
  assert.equal(isRetriable(only('retriable-4xx'), { kind: 'response', status: 409 }), true);
  assert.equal(isRetriable(only('retriable-4xx'), { kind: 'response', status: 404 }), false);
  assert.equal(isRetriable(only('reset'), { kind: 'reset', beforeRequest: false }), true);
  assert.equal(isRetriable(only('reset'), { kind: 'response', status: 503 }), false);
  assert.equal(isRetriable(only('reset-before-request'), { kind: 'reset', beforeRequest: true }), true);
  assert.equal(isRetriable(only('reset-before-request'), { kind: 'reset', beforeRequest: false }), false);
  assert.equal(isRetriable(only('connect-failure'), { kind: 'reset', beforeRequest: true }), false);
  assert.equal(isRetriable(only('refused-stream'), { kind: 'refused-stream' }), true);
  assert.equal(isRetriable(only('deadline-exceeded'), { kind: 'response', status: 200, grpcStatus: 4 }), true);
  assert.equal(isRetriable(only('resource-exhausted'), { kind: 'response', status: 200, grpcStatus: 4 }), false);
  assert.equal(isRetriable(only('envoy-ratelimited'), { kind: 'response', status: 429, rateLimited: true }), true);
});

test("back-off is Envoy's fully jittered exponential: under 25, 75, 175, then 250 ms", () => {
  const random = seededRandom(1);
  const ceilings = [25, 75, 175, 250, 250];
  for (let i = 0; i < 1000; i++) {
    for (const [n, ceiling] of ceilings.entries()) {
      const ms = retryBackoffMs(n + 1, random);
      assert.ok(ms >= 0 && ms < ceiling, `retry ${n + 1}: ${ms}`);
    }
  }
});

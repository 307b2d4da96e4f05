// Retries as Istio configures Envoy: the default policy when a route says nothing, `retryOn` parsed
// into Envoy's conditions plus retriable status codes, and the question asked after each attempt:
// "may this outcome be retried?". The loop itself (attempts, back-off, budget) belongs to the data path.

import type { HTTPRetry } from '../config/istio-networking.js';
import type { Random } from './random.js';

/** Envoy's retry conditions that istiod accepts in retryOn. */
export type RetryCondition =
  | '5xx' | 'gateway-error' | 'reset' | 'reset-before-request' | 'connect-failure' | 'retriable-4xx'
  | 'refused-stream' | 'retriable-status-codes' | 'retriable-headers' | 'envoy-ratelimited'
  | 'http3-post-connect-failure'
  // gRPC conditions, read from the grpc-status of the response.
  | 'cancelled' | 'deadline-exceeded' | 'internal' | 'resource-exhausted' | 'unavailable';

const CONDITIONS: ReadonlySet<string> = new Set<RetryCondition>([
  '5xx', 'gateway-error', 'reset', 'reset-before-request', 'connect-failure', 'retriable-4xx', 'refused-stream',
  'retriable-status-codes', 'retriable-headers', 'envoy-ratelimited', 'http3-post-connect-failure',
  'cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable',
]);

export interface RetryPolicy {
  /** Retries after the first try (so attempts + 1 tries at most); 0 means no retries. */
  readonly attempts: number;
  readonly perTryTimeoutMs?: number;
  readonly retryOn: ReadonlySet<RetryCondition>;
  readonly retriableStatusCodes: ReadonlySet<number>;
  /** Envoy's previous_hosts predicate: a retry avoids endpoints already tried, up to 5 picks. */
  readonly avoidPreviousHosts: boolean;
  readonly hostSelectionAttempts: number;
}

/** Istio's DefaultPolicy: what every route gets when its VirtualService (or the lack of one) says nothing. */
export const ISTIO_DEFAULT_RETRY_POLICY: RetryPolicy = Object.freeze({
  attempts: 2,
  retryOn: new Set<RetryCondition>(['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes']),
  retriableStatusCodes: new Set([503]),
  avoidPreviousHosts: true,
  hostSelectionAttempts: 5,
});

export const NO_RETRIES: RetryPolicy = Object.freeze({ ...ISTIO_DEFAULT_RETRY_POLICY, attempts: 0, retryOn: new Set<RetryCondition>(), retriableStatusCodes: new Set<number>() });

/**
 * Istio's ConvertPolicy: no `retries` → the default policy; `attempts: 0` → none; otherwise the default
 * with the route's attempts, per-try timeout and, when given, its retryOn (where numbers are status
 * codes, and naming codes turns on retriable-status-codes even if it was not written).
 */
export function retryPolicy(retries: HTTPRetry | undefined): RetryPolicy {
  if (!retries) return ISTIO_DEFAULT_RETRY_POLICY;
  if (retries.attempts <= 0) return NO_RETRIES;
  let retryOn = ISTIO_DEFAULT_RETRY_POLICY.retryOn;
  let codes = ISTIO_DEFAULT_RETRY_POLICY.retriableStatusCodes;
  if (retries.retryOn.length > 0) {
    const parsed = parseRetryOn(retries.retryOn.join(','));
    retryOn = parsed.conditions;
    codes = parsed.statusCodes;
  }
  return {
    ...ISTIO_DEFAULT_RETRY_POLICY,
    attempts: retries.attempts,
    ...(retries.perTryTimeoutMs !== undefined ? { perTryTimeoutMs: retries.perTryTimeoutMs } : {}),
    retryOn,
    retriableStatusCodes: codes,
  };
}

/** Splits a retryOn string into conditions and status codes; unknown words are dropped (config validated them). */
export function parseRetryOn(value: string): { conditions: Set<RetryCondition>; statusCodes: Set<number> } {
  const conditions = new Set<RetryCondition>();
  const statusCodes = new Set<number>();
  for (const raw of value.split(',')) {
    const word = raw.trim();
    if (/^\d{3}$/.test(word)) statusCodes.add(Number(word));
    else if (CONDITIONS.has(word)) conditions.add(word as RetryCondition);
  }
  if (statusCodes.size > 0) conditions.add('retriable-status-codes');
  return { conditions, statusCodes };
}

/** How one try ended, as the data path reports it. */
export type AttemptOutcome =
  | { readonly kind: 'response'; readonly status: number; readonly grpcStatus?: number; readonly rateLimited?: boolean }
  /** The TCP/HBONE connection could not be made (refused, unreachable, connect timeout). */
  | { readonly kind: 'connect-failure' }
  /** The upstream reset or closed the stream; `beforeRequest` when nothing had been sent yet. */
  | { readonly kind: 'reset'; readonly beforeRequest: boolean }
  /** HTTP/2 REFUSED_STREAM: the server did not process the request at all. */
  | { readonly kind: 'refused-stream' }
  | { readonly kind: 'per-try-timeout' };

const GRPC_CONDITIONS: readonly [RetryCondition, number][] = [
  ['cancelled', 1],
  ['deadline-exceeded', 4],
  ['resource-exhausted', 8],
  ['internal', 13],
  ['unavailable', 14],
];

/** Whether Envoy would retry this outcome under the policy (attempt counting is the caller's). */
export function isRetriable(policy: RetryPolicy, outcome: AttemptOutcome): boolean {
  const on = (c: RetryCondition): boolean => policy.retryOn.has(c);
  switch (outcome.kind) {
    case 'connect-failure':
      // A failed connect is a local 503 to Envoy: every 5xx-ish condition covers it.
      return on('connect-failure') || on('5xx') || on('gateway-error') || on('reset') || on('reset-before-request');
    case 'refused-stream':
      return on('refused-stream') || on('5xx') || on('reset') || on('reset-before-request');
    case 'reset':
      return on('reset') || on('5xx') || on('gateway-error') || (outcome.beforeRequest && on('reset-before-request'));
    case 'per-try-timeout':
      return on('5xx') || on('gateway-error') || on('reset');
    case 'response': {
      const s = outcome.status;
      if (on('5xx') && s >= 500 && s <= 599) return true;
      if (on('gateway-error') && (s === 502 || s === 503 || s === 504)) return true;
      if (on('retriable-4xx') && s === 409) return true;
      if (on('retriable-status-codes') && policy.retriableStatusCodes.has(s)) return true;
      if (on('envoy-ratelimited') && outcome.rateLimited === true) return true;
      const grpc = outcome.grpcStatus;
      return grpc !== undefined && GRPC_CONDITIONS.some(([c, code]) => code === grpc && on(c));
    }
  }
}

/** Envoy's default back-off: fully jittered exponential, base 25 ms, capped at 250 ms. */
export function retryBackoffMs(retryNumber: number, random: Random, baseMs = 25, maxMs = 250): number {
  const ceiling = Math.min(maxMs, (2 ** Math.max(1, retryNumber) - 1) * baseMs);
  return Math.floor(random() * ceiling);
}

/** retryOn written back in Envoy's spelling, for config_dump and logs. */
export function formatRetryOn(policy: RetryPolicy): string {
  return [...policy.retryOn, ...[...policy.retriableStatusCodes].map(String)].join(',');
}

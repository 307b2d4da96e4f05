// Rate limits, the destination agent's request phase: its local token buckets for the requests its
// workloads receive, then the global limits. The local buckets come from
// Ambit's RateLimit resources (agent/config/rate-limit.ts), with the semantics of Envoy's local_ratelimit:
// a bucket starts full, each request takes one token, and every fillInterval tokensPerFill come back.
// Buckets are per destination pod (as a sidecar's local limit is per replica), per route, and with
// perSourceIdentity per client identity too. A request over the limit is answered 429 with the
// x-ratelimit-* headers, response flag RL, and counted. A request the local buckets admit is then
// checked against the global limits (global-rate-limit.ts), as Envoy runs local_ratelimit before ratelimit.

import { Counter, type Registry } from 'prom-client';
import type { RateLimitObject, TokenBucketSpec } from '../config/rate-limit.js';
import { type Clock, systemClock } from '../l7/clock.js';
import type { RequestHeaders } from '../l7/request.js';
import type { MeshSnapshot, SpiffeId, Workload } from '../state/model.js';
import type { Logger } from '../telemetry/log.js';
import { GlobalRateLimiter } from './global-rate-limit.js';
import { rateLimitsFor, routeFor } from './rate-limit-routes.js';

export { rateLimitsFor } from './rate-limit-routes.js';

/** Envoy's local reply body for a locally rate-limited request. */
export const RATE_LIMITED_BODY = 'local_rate_limited';
/** gRPC's mapping of HTTP 429 (UNAVAILABLE), which Envoy's local reply uses for gRPC requests. */
export const RATE_LIMITED_GRPC_STATUS = 14;

export interface RateLimitRequest {
  readonly destination: Workload;
  /** The workload's own port the request arrived for (a Service's target port). */
  readonly port: number;
  /** The peer's proven identity; requests without one share the "unauthenticated" bucket. */
  readonly sourceIdentity?: SpiffeId;
  readonly method: string;
  /** The (normalized) path; the query string is ignored. */
  readonly path: string;
  readonly headers: RequestHeaders;
  /** The client's IP as the tunnel saw it (global descriptors' remoteAddress). */
  readonly sourceIp?: string;
  /** The hostname of the Service the request is for (global descriptors' destinationService). */
  readonly service?: string;
}

/**
 * x-ratelimit-limit / -remaining / -reset of the tightest bucket (or global descriptor) that applied; a
 * global answer adds the headers its service asked for.
 */
export type RateLimitHeaders = Readonly<Record<string, string>>;

/** Which bucket decided: `namespace/name` of the RateLimit and the route name ("default" for spec.tokenBucket). */
export interface RateLimitBucketRef {
  readonly rateLimit: string;
  readonly route: string;
}

export type RateLimitDecision =
  /** No RateLimit applies to this request. */
  | { readonly limited: false; readonly headers?: undefined }
  | { readonly limited: false; readonly headers: RateLimitHeaders; readonly bucket: RateLimitBucketRef }
  | {
      readonly limited: true;
      /** 429 over a limit; 500 when a global service could not answer and its failureMode is deny. */
      readonly status: 429 | 500;
      readonly grpcStatus: number;
      readonly flag: 'RL' | 'RLSE';
      readonly body: string;
      /** Envoy's response code details: local_rate_limited, request_rate_limited or rate_limiter_error. */
      readonly details: string;
      readonly headers: RateLimitHeaders;
      readonly bucket: RateLimitBucketRef;
    };

export interface RateLimiterOptions {
  /** Monotonic milliseconds; tests pass a ManualClock. */
  readonly clock?: Clock;
  /** Where `ambit_rate_limit_decisions_total` is registered (the agent's MeshMetrics.registry). */
  readonly registry?: Registry;
  /** Above this many buckets, full ones (identical to new ones) are dropped. Default 10000. */
  readonly sweepAbove?: number;
  /** Asks the rate limit services of RateLimits with a global block; by default one on the same registry and log. */
  readonly global?: GlobalRateLimiter;
  /** Where a rate limit service that cannot answer is reported. */
  readonly log?: Logger;
}

interface Bucket {
  tokens: number;
  /** When the last fill happened (or the bucket was made): fills happen every fillIntervalMs after it. */
  lastFill: number;
  readonly spec: TokenBucketSpec;
}

const DECISIONS = 'ambit_rate_limit_decisions_total';
type DecisionLabel = 'namespace' | 'rate_limit' | 'route' | 'decision';

/** The rate-limit phase of a request: the local buckets first, then (through decide()) the global limits. */
export class RateLimiter {
  readonly #clock: Clock;
  readonly #buckets = new Map<string, Bucket>();
  readonly #counter: Counter<DecisionLabel> | undefined;
  readonly #sweepAbove: number;
  readonly #global: GlobalRateLimiter;
  #highWater: number;

  constructor(options: RateLimiterOptions = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#sweepAbove = options.sweepAbove ?? 10_000;
    this.#highWater = this.#sweepAbove;
    const registry = options.registry;
    this.#global = options.global ?? new GlobalRateLimiter({ ...(registry ? { registry } : {}), ...(options.log ? { log: options.log } : {}) });
    if (registry) {
      this.#counter =
        (registry.getSingleMetric(DECISIONS) as Counter<DecisionLabel> | undefined) ??
        new Counter({
          name: DECISIONS,
          help: 'Requests checked against local rate limits (RateLimit resources), by bucket and decision (ok, rate_limited)',
          labelNames: ['namespace', 'rate_limit', 'route', 'decision'],
          registers: [registry],
        });
    }
  }

  /** How many buckets are held (for tests of the sweep). */
  get bucketCount(): number {
    return this.#buckets.size;
  }

  /** The local buckets, then (if they admit the request) the global limits: the rate-limit phase of a request. */
  async decide(snapshot: MeshSnapshot, request: RateLimitRequest): Promise<RateLimitDecision> {
    const local = this.check(snapshot, request);
    if (local.limited) return local;
    const global = await this.#global.check(snapshot, request);
    if (global.limited || !local.headers) return global;
    if (!global.headers) return local;
    // Both admitted with headers: those of the one closer to its limit, as for two local buckets.
    return Number(global.headers['x-ratelimit-remaining'] ?? Infinity) < Number(local.headers['x-ratelimit-remaining'] ?? Infinity) ? global : local;
  }

  /**
   * Takes one token from every bucket that applies to the request, or none if any is empty (then the
   * request is limited by that one). Never throws: a request no RateLimit selects is not limited.
   */
  check(snapshot: MeshSnapshot, request: RateLimitRequest): RateLimitDecision {
    const now = this.#clock.now();
    const applied: { key: string; bucket: Bucket; ref: RateLimitBucketRef; namespace: string }[] = [];
    for (const limit of rateLimitsFor(snapshot, request.destination, request.port)) {
      const chosen = bucketFor(limit, request);
      if (!chosen) continue;
      const { namespace, name } = limit.metadata;
      const identity = chosen.perSourceIdentity ? `\0${request.sourceIdentity ?? 'unauthenticated'}` : '';
      // The bucket's spec is in its key: a changed limit starts a new, full bucket.
      const key = `${namespace}/${name}\0${chosen.route}\0${specKey(chosen.spec)}\0${request.destination.uid}${identity}`;
      const bucket = this.#bucket(key, chosen.spec, now);
      applied.push({ key, bucket, ref: { rateLimit: `${namespace}/${name}`, route: chosen.route }, namespace });
    }
    if (applied.length === 0) return { limited: false };

    const empty = applied.find((a) => a.bucket.tokens < 1);
    if (empty) {
      this.#count(empty.namespace, empty.ref, 'rate_limited');
      return {
        limited: true,
        status: 429,
        grpcStatus: RATE_LIMITED_GRPC_STATUS,
        flag: 'RL',
        body: RATE_LIMITED_BODY,
        details: 'local_rate_limited',
        headers: headersOf(empty.bucket, now),
        bucket: empty.ref,
      };
    }
    for (const a of applied) {
      a.bucket.tokens -= 1;
      this.#count(a.namespace, a.ref, 'ok');
    }
    const tightest = applied.reduce((t, a) => (a.bucket.tokens < t.bucket.tokens ? a : t));
    this.#sweep(now);
    return { limited: false, headers: headersOf(tightest.bucket, now), bucket: tightest.ref };
  }

  #bucket(key: string, spec: TokenBucketSpec, now: number): Bucket {
    let bucket = this.#buckets.get(key);
    if (!bucket) {
      bucket = { tokens: spec.maxTokens, lastFill: now, spec };
      this.#buckets.set(key, bucket);
    }
    refill(bucket, now);
    return bucket;
  }

  #count(namespace: string, ref: RateLimitBucketRef, decision: 'ok' | 'rate_limited'): void {
    this.#counter?.inc({ namespace, rate_limit: ref.rateLimit.slice(namespace.length + 1), route: ref.route, decision });
  }

  /** Drops full buckets (a new bucket is full, so nothing is lost) once there are too many. */
  #sweep(now: number): void {
    if (this.#buckets.size <= this.#highWater) return;
    for (const [key, bucket] of this.#buckets) {
      refill(bucket, now);
      if (bucket.tokens >= bucket.spec.maxTokens) this.#buckets.delete(key);
    }
    // If most buckets are busy, sweep again only when the map has doubled, not on every request.
    this.#highWater = Math.max(this.#sweepAbove, this.#buckets.size * 2);
  }
}

/** Envoy's token bucket: whole fills only, each fillInterval after the previous one, capped at maxTokens. */
function refill(bucket: Bucket, now: number): void {
  const fills = Math.floor((now - bucket.lastFill) / bucket.spec.fillIntervalMs);
  if (fills <= 0) return;
  bucket.tokens = Math.min(bucket.spec.maxTokens, bucket.tokens + fills * bucket.spec.tokensPerFill);
  bucket.lastFill += fills * bucket.spec.fillIntervalMs;
}

function headersOf(bucket: Bucket, now: number): RateLimitHeaders {
  const untilFill = bucket.lastFill + bucket.spec.fillIntervalMs - now;
  return {
    'x-ratelimit-limit': String(bucket.spec.maxTokens),
    'x-ratelimit-remaining': String(Math.max(0, Math.floor(bucket.tokens))),
    'x-ratelimit-reset': String(Math.max(0, Math.ceil(untilFill / 1000))),
  };
}

function specKey(spec: TokenBucketSpec): string {
  return `${spec.maxTokens}/${spec.tokensPerFill}/${spec.fillIntervalMs}`;
}

/** The local bucket of the first route whose match holds, else the resource's default bucket, else nothing (pure: `ambit explain` asks it too). */
export function bucketFor(limit: RateLimitObject, request: RateLimitRequest): { route: string; spec: TokenBucketSpec; perSourceIdentity: boolean } | undefined {
  const route = routeFor(limit, request);
  if (route !== 'default') return route.tokenBucket ? { route: route.name, spec: route.tokenBucket, perSourceIdentity: route.perSourceIdentity } : undefined;
  const spec = limit.spec.tokenBucket;
  return spec ? { route: 'default', spec, perSourceIdentity: limit.spec.perSourceIdentity } : undefined;
}

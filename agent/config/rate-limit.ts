// Ambit's RateLimit resource (ambit.dev/v1alpha1): local token buckets for the requests a workload
// receives, modelled on Envoy's local_ratelimit filter (token_bucket {max_tokens, tokens_per_fill,
// fill_interval}, per-route descriptors). docs/rate-limit.md is the user's reference.

import { readStringMatch, readStringMatches, readWorkloadSelector } from './istio-common.js';
import type { StringMatch, WorkloadSelector } from './istio-networking.js';
import type { ObjectBase } from './kubernetes.js';
import { type Field, type MapReader, PORT_RANGE } from './yaml-reader.js';

export const RATE_LIMIT_VERSIONS = ['ambit.dev/v1alpha1'] as const;

/** Envoy refuses a fill_interval under 50 ms; so does Ambit. */
export const MIN_FILL_INTERVAL_MS = 50;

/** Envoy's TokenBucket: starts full with maxTokens; every fillInterval, tokensPerFill come back (up to maxTokens). */
export interface TokenBucketSpec {
  readonly maxTokens: number;
  readonly tokensPerFill: number;
  readonly fillIntervalMs: number;
}

/** One alternative of a route's match: every field given must hold. */
export interface RateLimitMatch {
  /** The path without its query string. */
  readonly path?: StringMatch;
  readonly method?: StringMatch;
  /** Lowercase header name → match; a header sent twice matches when either value does. */
  readonly headers: Readonly<Record<string, StringMatch>>;
}

export interface RateLimitRoute {
  /** Names the route in metrics and access logs; unique within the resource. */
  readonly name: string;
  /** Alternatives (OR); empty matches every request. */
  readonly match: readonly RateLimitMatch[];
  readonly tokenBucket: TokenBucketSpec;
  /** A bucket per source identity (each client gets the whole limit) rather than one shared bucket. */
  readonly perSourceIdentity: boolean;
}

/** Which workloads' inbound requests are limited: a Service's endpoints (optionally one port) or a label selector. */
export type RateLimitTarget =
  | { readonly kind: 'service'; readonly name: string; readonly port?: number }
  | { readonly kind: 'selector'; readonly selector: WorkloadSelector };

export interface RateLimitObject extends ObjectBase<'RateLimit'> {
  readonly spec: {
    readonly target: RateLimitTarget;
    /** Routes in order; the first that matches a request decides its bucket. */
    readonly routes: readonly RateLimitRoute[];
    /** For requests no route matches; without it they are not limited. */
    readonly tokenBucket?: TokenBucketSpec;
    readonly perSourceIdentity: boolean;
  };
}

export function parseRateLimit(root: MapReader, base: ObjectBase<'RateLimit'>): RateLimitObject | undefined {
  const spec = root.require('spec')?.map();
  if (!spec) return undefined;
  const target = readTarget(spec);
  const perSourceIdentity = spec.bool('perSourceIdentity') ?? false;
  const bucketField = spec.get('tokenBucket');
  const tokenBucket = bucketField ? readTokenBucket(bucketField) : undefined;
  const routesField = spec.get('routes');
  const names = new Set<string>();
  const routes = (routesField?.list() ?? []).flatMap((f) => {
    const route = readRoute(f, perSourceIdentity);
    if (route && names.has(route.name)) return f.fail(`route name ${JSON.stringify(route.name)} is used twice; names label metrics and must be unique`) ?? [];
    if (route) names.add(route.name);
    return route ?? [];
  });
  if (!bucketField && !routesField) spec.ctx.error(spec.line, spec.path, 'expected tokenBucket, routes or both, got neither (a RateLimit with no bucket limits nothing)');
  if (!target) return undefined;
  return { ...base, spec: { target, routes, ...(tokenBucket ? { tokenBucket } : {}), perSourceIdentity } };
}

function readTarget(spec: MapReader): RateLimitTarget | undefined {
  const which = spec.oneOf(['targetRef', 'selector']);
  if (which === undefined) {
    spec.ctx.error(spec.line, spec.path, 'expected targetRef (a Service) or selector (workload labels), got neither');
    return undefined;
  }
  if (which === 'selector') {
    const selector = readWorkloadSelector(spec, 'selector');
    return selector ? { kind: 'selector', selector } : undefined;
  }
  const ref = spec.map('targetRef');
  if (!ref) return undefined;
  const group = ref.string('group') ?? '';
  if (group !== '' && group !== 'core') ref.get('group')?.fail(`expected "" (the core group of Service), got ${JSON.stringify(group)}`);
  ref.require('kind')?.enum(['Service']);
  const name = ref.require('name')?.nonEmptyString();
  if (ref.has('namespace')) ref.get('namespace')?.fail('a RateLimit targets a Service of its own namespace; cross-namespace targetRefs are not supported');
  const port = ref.int('port', PORT_RANGE);
  return name !== undefined ? { kind: 'service', name, ...(port !== undefined ? { port } : {}) } : undefined;
}

function readTokenBucket(field: Field): TokenBucketSpec | undefined {
  const m = field.map();
  if (!m) return undefined;
  const maxTokens = m.require('maxTokens')?.int({ min: 1 });
  const tokensPerFill = m.get('tokensPerFill')?.int({ min: 1 }) ?? 1;
  const fillIntervalMs = m.require('fillInterval')?.duration({ min: MIN_FILL_INTERVAL_MS });
  if (maxTokens === undefined || fillIntervalMs === undefined) return undefined;
  if (tokensPerFill > maxTokens) m.get('tokensPerFill')?.warn(`tokensPerFill ${tokensPerFill} is more than maxTokens ${maxTokens}; a fill never holds more than maxTokens`);
  return { maxTokens, tokensPerFill, fillIntervalMs };
}

function readRoute(field: Field, inherited: boolean): RateLimitRoute | undefined {
  const m = field.map();
  if (!m) return undefined;
  const nameField = m.require('name');
  let name = nameField?.nonEmptyString();
  if (name === 'default') name = nameField?.fail('"default" names the bucket of spec.tokenBucket; choose another route name');
  const match = m.maps('match').map((mm) => readMatch(mm));
  const bucketField = m.require('tokenBucket');
  const tokenBucket = bucketField ? readTokenBucket(bucketField) : undefined;
  const perSourceIdentity = m.bool('perSourceIdentity') ?? inherited;
  if (name === undefined || !tokenBucket) return undefined;
  return { name, match, tokenBucket, perSourceIdentity };
}

function readMatch(m: MapReader): RateLimitMatch {
  const pathField = m.get('path');
  const methodField = m.get('method');
  const path = pathField ? readStringMatch(pathField) : undefined;
  const method = methodField ? readStringMatch(methodField) : undefined;
  const headers = readStringMatches(m, 'headers', 'header');
  if (m.size === 0) m.ctx.warn(m.line, m.path, 'an empty match matches every request; omit match instead');
  return { ...(path ? { path } : {}), ...(method ? { method } : {}), headers };
}

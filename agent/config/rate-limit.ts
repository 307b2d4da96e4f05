// Ambit's RateLimit resource (ambit.dev/v1alpha1): local token buckets for the requests a workload
// receives, modelled on Envoy's local_ratelimit filter (token_bucket {max_tokens, tokens_per_fill,
// fill_interval}, per-route descriptors), and global limits asked of a rate limit service as Envoy's
// ratelimit filter does (domain, descriptors, failure mode, timeout). docs/rate-limit.md is the user's reference.

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

/** Envoy's default rate limit service timeout (the ratelimit filter's `timeout`). */
export const DEFAULT_GLOBAL_TIMEOUT_MS = 20;

/** One entry of a descriptor, from the request (Envoy's rate limit actions, plus Ambit's mesh facts). */
export type DescriptorAction =
  /** (key, value) as written; Envoy's generic_key, key "generic_key" unless given. */
  | { readonly kind: 'genericKey'; readonly key: string; readonly value: string }
  /** (key, the header's value); absent, the descriptor is not sent, or only this entry with skipIfAbsent. */
  | { readonly kind: 'requestHeaders'; readonly header: string; readonly key: string; readonly skipIfAbsent: boolean }
  /** ("remote_address", the client's IP as the tunnel saw it). */
  | { readonly kind: 'remoteAddress' }
  /** ("source_identity", the client's SPIFFE id); an unauthenticated client sends no such descriptor. */
  | { readonly kind: 'sourceIdentity' }
  /** ("destination_service", the Service hostname the request is for). */
  | { readonly kind: 'destinationService' };

/** One descriptor sent to the rate limit service; its name labels the per-descriptor metric. */
export interface GlobalDescriptorSpec {
  readonly name: string;
  readonly actions: readonly DescriptorAction[];
}

/** Where and how the rate limit service is asked (Envoy's ratelimit filter settings). */
export interface GlobalRateLimitSpec {
  /** A mesh Service (`[<namespace>/]<hostname>`: a ready endpoint is called) or an IP or node-resolvable host. */
  readonly service: string;
  readonly port: number;
  readonly domain: string;
  /** What a request gets when the service cannot answer: allowed (Envoy's default) or 500. */
  readonly failureMode: 'allow' | 'deny';
  readonly timeoutMs: number;
  /** For requests no route matches. */
  readonly descriptors: readonly GlobalDescriptorSpec[];
}

export interface RateLimitRoute {
  /** Names the route in metrics and access logs; unique within the resource. */
  readonly name: string;
  /** Alternatives (OR); empty matches every request. */
  readonly match: readonly RateLimitMatch[];
  /** The local bucket; a route may have only global descriptors. */
  readonly tokenBucket?: TokenBucketSpec;
  /** Sent to spec.global's service for the requests of this route. */
  readonly descriptors: readonly GlobalDescriptorSpec[];
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
    readonly global?: GlobalRateLimitSpec;
  };
}

export function parseRateLimit(root: MapReader, base: ObjectBase<'RateLimit'>): RateLimitObject | undefined {
  const spec = root.require('spec')?.map();
  if (!spec) return undefined;
  const target = readTarget(spec);
  const perSourceIdentity = spec.bool('perSourceIdentity') ?? false;
  const bucketField = spec.get('tokenBucket');
  const tokenBucket = bucketField ? readTokenBucket(bucketField) : undefined;
  const globalField = spec.get('global');
  const global = globalField ? readGlobal(globalField) : undefined;
  const routesField = spec.get('routes');
  const names = new Set<string>();
  const routes = (routesField?.list() ?? []).flatMap((f) => {
    const route = readRoute(f, perSourceIdentity, globalField !== undefined);
    if (route && names.has(route.name)) return f.fail(`route name ${JSON.stringify(route.name)} is used twice; names label metrics and must be unique`) ?? [];
    if (route) names.add(route.name);
    return route ?? [];
  });
  if (!bucketField && !routesField && !spec.map('global')?.has('descriptors')) {
    spec.ctx.error(spec.line, spec.path, 'expected tokenBucket, routes or global.descriptors, got none (a RateLimit with no bucket or descriptor limits nothing)');
  }
  if (!target) return undefined;
  return { ...base, spec: { target, routes, ...(tokenBucket ? { tokenBucket } : {}), perSourceIdentity, ...(global ? { global } : {}) } };
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

function readGlobal(field: Field): GlobalRateLimitSpec | undefined {
  const m = field.map();
  if (!m) return undefined;
  const service = m.require('service')?.nonEmptyString();
  const port = m.require('port')?.int(PORT_RANGE);
  const domain = m.require('domain')?.nonEmptyString();
  const failureMode = m.has('failureMode') ? m.enum('failureMode', ['allow', 'deny'] as const) : 'allow';
  const timeoutMs = m.has('timeout') ? m.duration('timeout', { min: 1 }) : DEFAULT_GLOBAL_TIMEOUT_MS;
  const descriptors = readDescriptors(m);
  if (service === undefined || port === undefined || domain === undefined || failureMode === undefined || timeoutMs === undefined) return undefined;
  return { service, port, domain, failureMode, timeoutMs, descriptors };
}

function readDescriptors(m: MapReader): GlobalDescriptorSpec[] {
  const names = new Set<string>();
  return m.list('descriptors').flatMap((f, index) => {
    const d = f.map();
    if (!d) return [];
    const name = d.get('name')?.nonEmptyString() ?? String(index);
    if (names.has(name)) return d.get('name')?.fail(`descriptor name ${JSON.stringify(name)} is used twice; names label metrics and must be unique`) ?? [];
    names.add(name);
    const entries = d.require('entries');
    const list = entries?.list();
    const actions = (list ?? []).flatMap((e) => readAction(e) ?? []);
    if (entries && list?.length === 0) entries.fail('expected at least one entry (a descriptor without entries matches no limit in the service)');
    return actions.length > 0 ? [{ name, actions }] : [];
  });
}

const ACTIONS = ['genericKey', 'requestHeaders', 'remoteAddress', 'sourceIdentity', 'destinationService'] as const;

function readAction(field: Field): DescriptorAction | undefined {
  const m = field.map();
  if (!m) return undefined;
  const which = m.oneOf(ACTIONS);
  if (which === undefined) return field.fail(`expected one of ${ACTIONS.join(', ')}`);
  const body = m.map(which);
  if (!body) return undefined;
  switch (which) {
    case 'genericKey': {
      const value = body.require('descriptorValue')?.nonEmptyString();
      const key = body.get('descriptorKey')?.nonEmptyString() ?? 'generic_key';
      return value !== undefined ? { kind: 'genericKey', key, value } : undefined;
    }
    case 'requestHeaders': {
      const header = body.require('headerName')?.nonEmptyString()?.toLowerCase();
      const key = body.require('descriptorKey')?.nonEmptyString();
      const skipIfAbsent = body.bool('skipIfAbsent') ?? false;
      return header !== undefined && key !== undefined ? { kind: 'requestHeaders', header, key, skipIfAbsent } : undefined;
    }
    default:
      return { kind: which };
  }
}

function readRoute(field: Field, inherited: boolean, hasGlobal: boolean): RateLimitRoute | undefined {
  const m = field.map();
  if (!m) return undefined;
  const nameField = m.require('name');
  let name = nameField?.nonEmptyString();
  if (name === 'default') name = nameField?.fail('"default" names the bucket of spec.tokenBucket; choose another route name');
  const match = m.maps('match').map((mm) => readMatch(mm));
  const bucketField = m.get('tokenBucket');
  const tokenBucket = bucketField ? readTokenBucket(bucketField) : undefined;
  const descriptors = readDescriptors(m);
  if (m.has('descriptors') && !hasGlobal) m.get('descriptors')?.fail('descriptors are sent to a rate limit service; add spec.global naming it');
  if (!bucketField && !m.has('descriptors')) m.ctx.error(m.line, m.path, 'expected tokenBucket, descriptors or both, got neither (the route would limit nothing)');
  const perSourceIdentity = m.bool('perSourceIdentity') ?? inherited;
  if (name === undefined || (bucketField && !tokenBucket)) return undefined;
  return { name, match, ...(tokenBucket ? { tokenBucket } : {}), descriptors, perSourceIdentity };
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

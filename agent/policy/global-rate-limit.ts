// Global rate limits: for each RateLimit with a `global` block, the request's descriptors are sent to the
// user's rate limit service (envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit over plaintext
// gRPC, as Envoy's ratelimit filter calls it), so that every agent and replica counts against one quota.
// OVER_LIMIT is answered 429 (flag RL); a service that cannot answer in time lets the request through
// (failureMode allow, Envoy's default) or answers 500 (deny, flag RLSE). Each descriptor's answer is counted.

import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import type * as grpc from '@grpc/grpc-js';
import { Counter, type Registry } from 'prom-client';
import type { DescriptorAction, GlobalDescriptorSpec, GlobalRateLimitSpec, RateLimitObject } from '../config/rate-limit.js';
import { GrpcStatus, grpcStatusName } from '../identity/grpc-runtime.js';
import { grpcMethodPath } from '../identity/istiod-channel.js';
import type { MeshSnapshot } from '../state/model.js';
import type { Logger } from '../telemetry/log.js';
import { type RateLimitDescriptor_Entry, RateLimitDescriptor_EntrySchema } from '../proto/envoy/extensions/common/ratelimit/v3/ratelimit_pb.js';
import {
  type RateLimitRequest as RlsRequest,
  RateLimitRequestSchema,
  type RateLimitResponse,
  RateLimitResponseSchema,
  type RateLimitResponse_DescriptorStatus,
  RateLimitResponse_Code,
  RateLimitService,
} from '../proto/envoy/service/ratelimit/v3/rls_pb.js';
import { clientFor } from './ext-authz-grpc.js';
import { authorizerAddress } from './ext-authz.js';
import type { RateLimitDecision, RateLimitHeaders, RateLimitRequest } from './rate-limit.js';
import { rateLimitsFor, routeFor } from './rate-limit-routes.js';

export const SHOULD_RATE_LIMIT_PATH = grpcMethodPath(RateLimitService.method.shouldRateLimit);
export const encodeRlsRequest = (m: RlsRequest): Buffer => Buffer.from(toBinary(RateLimitRequestSchema, m));
export const decodeRlsRequest = (b: Buffer): RlsRequest => fromBinary(RateLimitRequestSchema, b);
export const encodeRlsResponse = (m: RateLimitResponse): Buffer => Buffer.from(toBinary(RateLimitResponseSchema, m));
export const decodeRlsResponse = (b: Buffer): RateLimitResponse => fromBinary(RateLimitResponseSchema, b);

/** envoy.service.ratelimit.v3.RateLimitService for grpc-js (a test's server, or the client below). */
export const RATE_LIMIT_SERVICE: grpc.ServiceDefinition = {
  ShouldRateLimit: {
    path: SHOULD_RATE_LIMIT_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: encodeRlsRequest,
    requestDeserialize: decodeRlsRequest,
    responseSerialize: encodeRlsResponse,
    responseDeserialize: decodeRlsResponse,
  },
};

/** Envoy's response code details for the ratelimit filter's two local replies. */
export const GLOBAL_LIMITED_DETAILS = 'request_rate_limited';
export const SERVICE_ERROR_DETAILS = 'rate_limiter_error';

/** One RateLimit's question to its service: the descriptors this request produced (`ambit explain` shows it too). */
export interface GlobalQuestion {
  readonly limit: RateLimitObject;
  readonly global: GlobalRateLimitSpec;
  readonly route: string;
  readonly named: readonly { readonly name: string; readonly entries: RateLimitDescriptor_Entry[] }[];
}

type Answer = { readonly kind: 'answered'; readonly response: RateLimitResponse } | { readonly kind: 'error'; readonly message: string };

const DECISIONS = 'ambit_global_rate_limit_decisions_total';
type DecisionLabel = 'namespace' | 'rate_limit' | 'route' | 'descriptor' | 'decision';

export interface GlobalRateLimiterOptions {
  /** Where `ambit_global_rate_limit_decisions_total` is registered (the agent's MeshMetrics.registry). */
  readonly registry?: Registry;
  /** Where a service that could not answer is reported (at most every 10 s per RateLimit). */
  readonly log?: Logger;
}

/** A failing service fails every request: one warning per RateLimit this often is enough to act on. */
const WARN_EVERY_MS = 10_000;

export class GlobalRateLimiter {
  readonly #counter: Counter<DecisionLabel> | undefined;
  readonly #log: Logger | undefined;
  readonly #warned = new Map<string, number>();

  constructor(options: GlobalRateLimiterOptions = {}) {
    this.#log = options.log;
    const registry = options.registry;
    if (registry) {
      this.#counter =
        (registry.getSingleMetric(DECISIONS) as Counter<DecisionLabel> | undefined) ??
        new Counter({
          name: DECISIONS,
          help: 'Descriptors sent to rate limit services (RateLimit global blocks), by descriptor and answer (ok, over_limit, error)',
          labelNames: ['namespace', 'rate_limit', 'route', 'descriptor', 'decision'],
          registers: [registry],
        });
    }
  }

  /** Asks every service whose RateLimit applies, at once; never throws. No descriptor, no call. */
  async check(snapshot: MeshSnapshot, request: RateLimitRequest): Promise<RateLimitDecision> {
    const questions = rateLimitsFor(snapshot, request.destination, request.port).flatMap((limit) => globalQuestionOf(limit, request) ?? []);
    if (questions.length === 0) return { limited: false };
    const answers = await Promise.all(questions.map(async (q) => ({ q, answer: await this.#ask(snapshot, q) })));

    let tightest: { headers: RateLimitHeaders; remaining: number; q: GlobalQuestion } | undefined;
    for (const { q, answer } of answers) {
      const ref = { rateLimit: `${q.limit.metadata.namespace}/${q.limit.metadata.name}`, route: q.route };
      if (answer.kind === 'error') {
        this.#countAll(q, 'error');
        this.#warn(q, ref.rateLimit, answer.message);
        if (q.global.failureMode === 'deny') {
          return { limited: true, status: 500, grpcStatus: GrpcStatus.UNKNOWN, flag: 'RLSE', body: '', details: SERVICE_ERROR_DETAILS, headers: {}, bucket: ref };
        }
        continue;
      }
      const { response } = answer;
      q.named.forEach((d, i) => this.#count(q, d.name, response.statuses[i]?.code === RateLimitResponse_Code.OVER_LIMIT ? 'over_limit' : 'ok'));
      const status = mostLimiting(response.statuses);
      const headers = { ...(status ? rateLimitHeaders(status) : {}), ...responseHeaders(response) };
      if (response.overallCode === RateLimitResponse_Code.OVER_LIMIT) {
        return {
          limited: true,
          status: 429,
          grpcStatus: GrpcStatus.UNAVAILABLE,
          flag: 'RL',
          body: Buffer.from(response.rawBody).toString(),
          details: GLOBAL_LIMITED_DETAILS,
          headers: { ...headers, 'x-envoy-ratelimited': 'true' },
          bucket: ref,
        };
      }
      const remaining = status?.limitRemaining ?? Number.POSITIVE_INFINITY;
      if (Object.keys(headers).length > 0 && (!tightest || remaining < tightest.remaining)) tightest = { headers, remaining, q };
    }
    if (!tightest) return { limited: false };
    return { limited: false, headers: tightest.headers, bucket: { rateLimit: `${tightest.q.limit.metadata.namespace}/${tightest.q.limit.metadata.name}`, route: tightest.q.route } };
  }

  async #ask(snapshot: MeshSnapshot, q: GlobalQuestion): Promise<Answer> {
    const address = authorizerAddress(snapshot, q.global);
    if (!address) return { kind: 'error', message: `the rate limit service ${q.global.service} has no ready endpoint on port ${q.global.port}` };
    const at = `${address.host}:${address.port}`;
    const channel = await clientFor(address);
    if (!channel.ok) return { kind: 'error', message: channel.message };
    const message = create(RateLimitRequestSchema, { domain: q.global.domain, descriptors: q.named.map((d) => ({ entries: d.entries })), hitsAddend: 1 });
    return new Promise((resolve) => {
      channel.client.makeUnaryRequest(
        SHOULD_RATE_LIMIT_PATH,
        encodeRlsRequest,
        decodeRlsResponse,
        message,
        new channel.grpc.Metadata(),
        { deadline: Date.now() + q.global.timeoutMs },
        (error, response) => {
          if (error || !response) return resolve({ kind: 'error', message: error ? `${grpcStatusName(error.code)} from ${at}: ${error.details}` : `no response from ${at}` });
          // UNKNOWN is what a service answers when it could not decide: an error, as Envoy treats it.
          if (response.overallCode === RateLimitResponse_Code.UNKNOWN) return resolve({ kind: 'error', message: `the rate limit service at ${at} answered UNKNOWN` });
          resolve({ kind: 'answered', response });
        },
      );
    });
  }

  #warn(q: GlobalQuestion, rateLimit: string, message: string): void {
    const now = Date.now();
    if (now - (this.#warned.get(rateLimit) ?? -Infinity) < WARN_EVERY_MS) return;
    this.#warned.set(rateLimit, now);
    const outcome = q.global.failureMode === 'deny' ? 'requests are answered 500 (failureMode deny)' : 'requests are let through unlimited (failureMode allow)';
    this.#log?.warn(
      { rateLimit, service: `${q.global.service}:${q.global.port}`, reason: message },
      `RateLimit ${rateLimit}: the rate limit service did not answer (${message}), so ${outcome}; check that spec.global names a reachable RateLimitService and that its timeout (${q.global.timeoutMs} ms) leaves it time`,
    );
  }

  #countAll(q: GlobalQuestion, decision: 'error'): void {
    for (const d of q.named) this.#count(q, d.name, decision);
  }

  #count(q: GlobalQuestion, descriptor: string, decision: 'ok' | 'over_limit' | 'error'): void {
    this.#counter?.inc({ namespace: q.limit.metadata.namespace, rate_limit: q.limit.metadata.name, route: q.route, descriptor, decision });
  }
}

/** The descriptors of the route the request takes (or the resource's own), those its request can fill; none, no call. */
export function globalQuestionOf(limit: RateLimitObject, request: RateLimitRequest): GlobalQuestion | undefined {
  const global = limit.spec.global;
  if (!global) return undefined;
  const route = routeFor(limit, request);
  const specs = route === 'default' ? global.descriptors : route.descriptors;
  const named = specs.flatMap((d) => {
    const entries = entriesOf(d, request);
    return entries && entries.length > 0 ? [{ name: d.name, entries }] : [];
  });
  return named.length > 0 ? { limit, global, route: route === 'default' ? 'default' : route.name, named } : undefined;
}

/** The descriptor's entries for this request, or undefined when a fact it needs is missing (Envoy then sends no such descriptor). */
export function entriesOf(d: GlobalDescriptorSpec, request: RateLimitRequest): RateLimitDescriptor_Entry[] | undefined {
  const entries: RateLimitDescriptor_Entry[] = [];
  for (const action of d.actions) {
    const entry = entryOf(action, request);
    if (entry === 'skip') continue;
    if (entry === undefined) return undefined;
    entries.push(create(RateLimitDescriptor_EntrySchema, entry));
  }
  return entries;
}

function entryOf(action: DescriptorAction, request: RateLimitRequest): { key: string; value: string } | 'skip' | undefined {
  switch (action.kind) {
    case 'genericKey':
      return { key: action.key, value: action.value };
    case 'requestHeaders': {
      const values = request.headers.get(action.header);
      if (!values || values.length === 0) return action.skipIfAbsent ? 'skip' : undefined;
      return { key: action.key, value: values.join(',') };
    }
    case 'remoteAddress':
      return request.sourceIp !== undefined ? { key: 'remote_address', value: request.sourceIp } : undefined;
    case 'sourceIdentity':
      return request.sourceIdentity !== undefined ? { key: 'source_identity', value: request.sourceIdentity } : undefined;
    case 'destinationService':
      return request.service !== undefined ? { key: 'destination_service', value: request.service } : undefined;
  }
}

/** The status closest to its limit: it sets x-ratelimit-*, as the tightest local bucket does. */
function mostLimiting(statuses: readonly RateLimitResponse_DescriptorStatus[]): RateLimitResponse_DescriptorStatus | undefined {
  return statuses.filter((s) => s.currentLimit).reduce<RateLimitResponse_DescriptorStatus | undefined>((t, s) => (!t || s.limitRemaining < t.limitRemaining ? s : t), undefined);
}

function rateLimitHeaders(status: RateLimitResponse_DescriptorStatus): RateLimitHeaders {
  const reset = status.durationUntilReset;
  const seconds = reset ? Number(reset.seconds) + (reset.nanos > 0 ? 1 : 0) : 0;
  return {
    'x-ratelimit-limit': String(status.currentLimit?.requestsPerUnit ?? 0),
    'x-ratelimit-remaining': String(status.limitRemaining),
    'x-ratelimit-reset': String(seconds),
  };
}

/** The service's response_headers_to_add, those Node can send. */
function responseHeaders(response: RateLimitResponse): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const h of response.responseHeadersToAdd) {
    const name = h.key.toLowerCase();
    if (/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name) && !/[\r\n\0]/.test(h.value)) headers[name] = h.value;
  }
  return headers;
}

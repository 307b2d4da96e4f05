// The upstream phase of forward.ts: tries, each holding its circuit-breaker leases and its place among
// the cluster's active requests until it ends (released once, whatever ended it), to an endpoint that
// earlier tries did not use, under the per-try and route timeouts; retries on what the policy calls
// retriable with Envoy's back-off, outlier reports; and the response streamed back with the route's
// header operations and a sticky-session cookie. The route timeout, as Envoy's, runs from the end of
// the request to the end of the response: expiring mid-body, it resets the client's stream.

import type { PoolLease } from '../connection-pool.js';
import { mutateHeaders } from '../header-mutation.js';
import { type AttemptOutcome, isRetriable, retryBackoffMs } from '../retry-policy.js';
import type { HttpRouteDecision } from '../route-decision.js';
import type { UpstreamCluster } from '../upstream-cluster.js';
import { type Upstream, pickTarget } from './endpoint-pick.js';
import { type HeaderMap, grpcStatusOf, responseHeaderMap } from './headers.js';
import { upstreamSpeaksH2 } from './http-destination.js';
import { startMirrors } from './mirrors.js';
import { GONE, type OutboundRequest, type RequestEnding, answer } from './outbound-request.js';
import { type RelayedResponse, relayResponse } from './response-relay.js';
import { type Deadline, aborted, deadline, routeDeadline, sleep } from './timeouts.js';
import type { ExchangeResult } from './upstream-connections.js';

export type Forward = Extract<HttpRouteDecision, { kind: 'forward' }>;

const UPSTREAM_RESET = 'upstream connect error or disconnect/reset before headers. reset reason: ';
const OVERLOADED = new Map([['x-envoy-overloaded', ['true']]]);

/** What the tries share: the decision, the upstream, the headers after the route's mutations, the route timeout. */
interface Tries {
  readonly decision: Forward;
  readonly upstream: Upstream;
  readonly headers: HeaderMap;
  readonly protocol: 'h1' | 'h2';
  readonly tried: Set<string>;
  readonly overall: Deadline;
}

/** How one try ended: the request's ending, or another try after the back-off. */
type TryEnding = RequestEnding | { readonly kind: 'retry' };

export async function tryUpstreams(req: OutboundRequest, decision: Forward, upstream: Upstream): Promise<RequestEnding> {
  const { d, grpc, ctx } = req;
  const tries: Tries = {
    decision,
    upstream,
    // The request's own map (built for it in startRequest): mutated in place, not copied.
    headers: mutateHeaders(req.headers, decision.requestHeaders),
    // The port's declared protocol decides, as in Istio; gRPC cannot travel over HTTP/1.1 whatever the port says.
    protocol: upstreamSpeaksH2(ctx.destination.protocol) || grpc ? 'h2' : 'h1',
    tried: new Set(),
    overall: routeDeadline(decision.timeoutMs, d),
  };
  try {
    for (;;) {
      const leases = acquireLeases(req, upstream.cluster);
      if (!(leases instanceof TryLeases)) return leases;
      let ending: TryEnding;
      try {
        ending = await oneTry(req, tries);
      } finally {
        leases.release();
      }
      if (ending.kind !== 'retry') return ending;
      if (!(await sleep(retryBackoffMs(req.attempts, ctx.random), d.gone))) return GONE;
    }
  } finally {
    tries.overall.cancel();
  }
}

/** The breaker's request lease, and a retry lease for every try after the first; refused: 503 UO. */
function acquireLeases(req: OutboundRequest, cluster: UpstreamCluster | undefined): TryLeases | RequestEnding {
  const request = cluster?.breaker.acquireRequest();
  if (request?.admitted === false) {
    req.flags.push('UO');
    return answer({ status: 503, body: `${UPSTREAM_RESET}overflow`, headers: OVERLOADED }, request.message);
  }
  const retry = req.attempts > 0 ? cluster?.breaker.acquireRetry() : undefined;
  if (retry?.admitted === false) {
    request?.release();
    req.flags.push('UO');
    return answer({ status: 503, body: 'upstream retry overflow', headers: OVERLOADED }, retry.message);
  }
  return new TryLeases(request, retry);
}

/** A try's circuit-breaker leases, released together when the try ends. */
class TryLeases {
  constructor(
    private readonly request: PoolLease | undefined,
    private readonly retry: PoolLease | undefined,
  ) {}

  release(): void {
    this.request?.release();
    this.retry?.release();
  }
}

async function oneTry(req: OutboundRequest, tries: Tries): Promise<TryEnding> {
  const { ctx, d, body } = req;
  const { decision, upstream, overall } = tries;
  const picked = pickTarget(ctx.snapshot, upstream, req.attrs, tries.tried);
  if (picked.kind === 'fail') {
    req.flags.push(picked.flag);
    return answer({ status: 503, body: picked.message }, picked.message);
  }
  const { target } = picked;
  tries.tried.add(target.key);
  req.upstreamHost = target.key;
  req.upstreamWorkload = target.workload;
  req.attempts++;
  const headers = req.attempts > 1 ? new Map([...tries.headers, ['x-envoy-attempt-count', [String(req.attempts)]]]) : tries.headers;
  const exchange = ctx.upstream.send(target, { method: d.method, path: decision.path, authority: decision.authority, headers }, body, tries.protocol);
  if (req.attempts === 1) startMirrors(ctx, decision.mirrors, d, tries.headers, body, tries.protocol, ctx.snapshot);
  const cluster = upstream.cluster;
  const endActive = cluster?.active.begin(target.key);
  try {
    const perTry = deadline(decision.retry.perTryTimeoutMs, 'per-try');
    // Only the clocks that run take part: most routes have neither timeout.
    const racers: Promise<ExchangeResult | 'per-try' | 'overall' | 'gone'>[] = [exchange.result, aborted(d.gone)];
    if (perTry.expired) racers.push(perTry.expired);
    if (overall.expired) racers.push(overall.expired);
    const result = await Promise.race(racers);
    perTry.cancel();
    if (result === 'gone') {
      exchange.abort();
      return GONE;
    }
    const overallExpired = result === 'overall';
    if (result === 'overall' || result === 'per-try') exchange.abort();
    const outcome = outcomeOf(result);
    if (cluster && outcome.kind !== 'overflow') {
      cluster.reportResult(target.key, outcome.kind === 'response' ? { kind: 'response', status: outcome.status } : { kind: 'local-failure', reason: outcome.kind === 'connect-failure' ? 'connect-failure' : outcome.kind === 'per-try-timeout' ? 'timeout' : 'reset' });
    }
    const retriable = outcome.kind !== 'overflow' && isRetriable(decision.retry, outcome);
    if (!overallExpired && retriable && req.attempts <= decision.retry.attempts && body.replayable && !d.gone.aborted) {
      exchange.abort();
      return { kind: 'retry' };
    }
    if (retriable && req.attempts > 1) req.flags.push('URX');
    if (typeof result === 'object' && result.kind === 'response') {
      return { kind: 'relayed', relayed: await streamResponse(req, result, decision, picked.setCookie, overall) };
    }
    if (overallExpired || outcome.kind === 'per-try-timeout') {
      req.flags.unshift('UT');
      return answer({ status: 504, body: 'upstream request timeout' }, overallExpired ? `route timeout ${decision.timeoutMs} ms` : `per-try timeout ${decision.retry.perTryTimeoutMs} ms`);
    }
    return failed(req, result as Exclude<ExchangeResult, { kind: 'response' }>);
  } finally {
    endActive?.();
  }
}

/** The local answer to a try that reached no response: Envoy's bodies and flags. */
function failed(req: OutboundRequest, result: Exclude<ExchangeResult, { kind: 'response' }>): RequestEnding {
  switch (result.kind) {
    case 'overflow':
      req.flags.unshift('UO');
      return answer({ status: 503, body: `${UPSTREAM_RESET}overflow`, headers: OVERLOADED }, result.message);
    case 'connect-failure':
      req.flags.unshift('UF');
      return answer({ status: 503, body: `${UPSTREAM_RESET}connection failure` }, result.message);
    case 'refused-stream':
    case 'reset':
      req.flags.unshift('UC');
      return answer({ status: 503, body: `${UPSTREAM_RESET}connection termination` }, result.message);
  }
}

function outcomeOf(result: ExchangeResult | 'per-try' | 'overall'): AttemptOutcome | { kind: 'overflow' } {
  if (result === 'per-try' || result === 'overall') return { kind: 'per-try-timeout' };
  switch (result.kind) {
    case 'response': {
      return { kind: 'response', status: result.status, grpcStatus: grpcStatusOf(result.headers) };
    }
    case 'connect-failure':
      return { kind: 'connect-failure' };
    case 'refused-stream':
      return { kind: 'refused-stream' };
    case 'reset':
      return { kind: 'reset', beforeRequest: result.beforeRequest };
    case 'overflow':
      return { kind: 'overflow' };
  }
}

/**
 * The response to the client, with the route's header operations and the sticky cookie. Headers are on
 * their way, so no retry from here; the route timeout still runs until the body has ended (Envoy's
 * route timeout covers the whole response).
 */
function streamResponse(req: OutboundRequest, result: Extract<ExchangeResult, { kind: 'response' }>, decision: Forward, setCookie: string | undefined, overall: Deadline): Promise<RelayedResponse> {
  const headers = mutateHeaders(responseHeaderMap(result.headers), decision.responseHeaders);
  if (setCookie) headers.set('set-cookie', [...(headers.get('set-cookie') ?? []), setCookie]);
  const timeout = overall.expired?.then(() => `route timeout ${decision.timeoutMs} ms expired during the response`);
  return new Promise((resolve) => relayResponse(req.d, result, headers, resolve, timeout));
}

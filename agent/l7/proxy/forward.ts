// One request through the source-side agent, phase by phase as Envoy's router runs it: route
// (VirtualService), local answers (no route, redirect, direct response, fault delay and abort), the
// cluster (DestinationRule), then tries: circuit-breaker leases, an endpoint that earlier tries did
// not use, the per-try and overall timeouts, retry on what the policy calls retriable with Envoy's
// back-off, outlier reports; and the response streamed back with the route's header operations and a
// sticky-session cookie. The route timeout, as Envoy's, runs from the end of the request to the end of
// the response: expiring mid-body, it resets the client's stream (UT with the status already sent).
// Mirrors get a copy and their answers are dropped. A CLIENT span covers the whole exchange, and its
// context goes upstream, so the destination's SERVER span is its child.

import { canonicalName, canonicalRevision } from '../../state/canonical.js';
import type { MeshSnapshot, Workload } from '../../state/model.js';
import type { RequestTracer } from '../../telemetry/tracing.js';
import { applyHeaderMutations } from '../header-mutation.js';
import { routeHttpRequest } from '../http-router.js';
import type { Random } from '../random.js';
import type { HttpRequestAttributes } from '../request.js';
import { type PathNormalization, normalizeOriginForm } from '../request-target.js';
import { type AttemptOutcome, ISTIO_DEFAULT_RETRY_POLICY, isRetriable, retryBackoffMs } from '../retry-policy.js';
import type { HttpRouteDecision, RouteRef } from '../route-decision.js';
import type { UpstreamClusters } from '../upstream-cluster.js';
import { type DownstreamRequest, type LocalReply, refusalReply, sendLocalReply } from './downstream.js';
import { type Upstream, pickTarget } from './endpoint-pick.js';
import { type HeaderMap, addForwardingHeaders, grpcStatusOf, headerMapOf, isGrpc, setSpanContext, withoutHopByHop } from './headers.js';
import { type HttpDestination, upstreamSpeaksH2 } from './http-destination.js';
import { type CompletedRequest, type RequestCompleteHook, type RequestFlag, formatFlags } from './request-record.js';
import { startMirrors } from './mirrors.js';
import { RequestBody } from './request-body.js';
import { type RelayedResponse, relayResponse } from './response-relay.js';
import { deadline, routeDeadline } from './timeouts.js';
import type { ExchangeResult, UpstreamConnections, UpstreamTarget } from './upstream-connections.js';
import { ISTIO_DEFAULT_CONNECT_TIMEOUT_MS } from '../connection-pool.js';

export interface ForwardContext {
  readonly snapshot: MeshSnapshot;
  readonly source: Workload;
  readonly sourceIp: string;
  readonly sourcePort: number;
  readonly destination: HttpDestination;
  readonly node: string;
  readonly upstream: UpstreamConnections;
  readonly clusters: UpstreamClusters;
  readonly random: Random;
  readonly onComplete: RequestCompleteHook;
  readonly tracer: RequestTracer;
  /** The mode the request's path was normalized with, applied again to a rewritten path. */
  readonly pathNormalization: PathNormalization;
}

type Forward = Extract<HttpRouteDecision, { kind: 'forward' }>;

const UPSTREAM_RESET = 'upstream connect error or disconnect/reset before headers. reset reason: ';

export async function forwardRequest(ctx: ForwardContext, d: DownstreamRequest): Promise<void> {
  const startedAt = new Date();
  const started = performance.now();
  const { snapshot, destination } = ctx;
  const service = destination.kind === 'service' ? destination.service : undefined;
  const attrs: HttpRequestAttributes = {
    host: destination.kind === 'service' ? destination.service.hostname : destination.address.ip,
    authority: d.authority,
    port: destination.kind === 'service' ? destination.port : destination.address.port,
    method: d.method,
    path: d.path,
    scheme: 'http',
    headers: d.headers,
    source: { namespace: ctx.source.namespace, labels: ctx.source.labels, ip: ctx.sourceIp, port: ctx.sourcePort },
  };
  const grpc = isGrpc(d.headers);
  const body = new RequestBody(d.body, d.bodyEmpty);
  const requestHeaders = withoutHopByHop(d.headers);
  requestHeaders.delete('host');
  const requestId = addForwardingHeaders(requestHeaders);
  const span = ctx.tracer.startSpan('client', {
    headers: d.headers,
    method: d.method,
    path: d.path,
    authority: d.authority,
    httpVersion: d.version,
    workload: { canonicalService: canonicalName(ctx.source), namespace: ctx.source.namespace, canonicalRevision: canonicalRevision(ctx.source) },
    requestId,
    peerAddress: ctx.sourceIp,
    ...(service ? { upstreamCluster: service.hostname } : {}),
  });
  // The upstream carries this span's context in place of the client's: the destination parents to it.
  setSpanContext(requestHeaders, span);
  const traceparent = requestHeaders.get('traceparent')?.[0] ?? d.headers.get('traceparent')?.[0];

  let route: RouteRef = {};
  let attempts = 0;
  let upstreamHost: string | undefined;
  let upstreamWorkload: Workload | undefined;
  let clusterName: string | undefined;
  const flags: RequestFlag[] = [];
  const finish = (status: number, responseBytes: number, extra: { grpcStatus?: number; detail?: string } = {}): void => {
    const record: CompletedRequest = {
      reporter: 'source',
      source: ctx.source,
      sourceAddress: `${ctx.sourceIp}:${ctx.sourcePort}`,
      ...(service ? { destinationService: service } : {}),
      ...(upstreamWorkload ? { destinationWorkload: upstreamWorkload } : {}),
      ...(upstreamHost ? { upstreamHost } : {}),
      ...(clusterName ? { upstreamCluster: clusterName } : {}),
      securityPolicy: upstreamWorkload?.enrollment.enrolled ? 'mutual_tls' : 'unknown',
      route,
      protocol: grpc ? 'grpc' : 'http',
      httpVersion: d.version,
      method: d.method,
      path: d.path,
      authority: d.authority,
      requestId,
      ...(traceparent ? { traceparent } : {}),
      ...(d.headers.get('user-agent')?.[0] ? { userAgent: d.headers.get('user-agent')![0]! } : {}),
      status,
      flags,
      attempts,
      requestBytes: body.size,
      responseBytes,
      startedAt,
      durationMs: Math.round((performance.now() - started) * 1000) / 1000,
      ...extra,
    };
    span.end({
      statusCode: status,
      ...(extra.grpcStatus !== undefined ? { grpcStatus: extra.grpcStatus } : {}),
      responseFlags: formatFlags(flags),
      ...(upstreamHost ? { upstreamHost } : {}),
      requestBytes: body.size,
      responseBytes,
    });
    ctx.onComplete(record);
  };
  const reply = (r: LocalReply, detail?: string): void => {
    const bytes = sendLocalReply(d, r, grpc);
    finish(r.grpcStatus !== undefined || grpc ? 200 : r.status, bytes, { ...(detail ? { detail } : {}) });
  };

  // The target as downstream.ts normalized it; what it refused is answered here (404s match no route).
  if (d.refused) {
    if (d.refused.status === 404) flags.push('NR');
    return reply(refusalReply(d.refused), d.refused.reason);
  }

  // Route.
  let decision: Forward;
  if (service) {
    const routed = routeHttpRequest(snapshot, attrs, ctx.random);
    route = routed.route;
    if (routed.kind === 'noRoute') {
      flags.push('NR');
      return reply({ status: 404 }, `no route of ${route.virtualService} matches`);
    }
    if (routed.kind === 'redirect') return reply({ status: routed.status, headers: new Map([['location', [routed.location]]]), responseHeaders: routed.responseHeaders });
    if (routed.kind === 'directResponse') return reply({ status: routed.status, ...(routed.body !== undefined ? { body: routed.body } : {}), responseHeaders: routed.responseHeaders });
    decision = routed;
  } else {
    decision = { kind: 'forward', route: {}, destination: { host: attrs.host, port: attrs.port }, path: d.path, authority: d.authority, requestHeaders: [], responseHeaders: [], retry: ISTIO_DEFAULT_RETRY_POLICY, mirrors: [] };
  }

  // A rewrite may make a path the destination would read differently (dots, "//"): send what it will read.
  if (decision.path !== d.path) {
    const rewritten = normalizeOriginForm(decision.path, ctx.pathNormalization);
    if (!rewritten.ok) {
      return reply({ status: 500, body: `the route's rewrite made a path the destination would refuse: ${rewritten.reason}` }, rewritten.reason);
    }
    decision = { ...decision, path: rewritten.path };
  }

  // Fault injection: the delay first, then the abort, as Envoy's fault filter.
  const fault = decision.fault;
  if (fault?.delayMs !== undefined) {
    flags.push('DI');
    if (!(await sleep(fault.delayMs, d.gone))) return finishGone();
  }
  if (fault?.abort) {
    flags.push('FI');
    const abort = fault.abort;
    return reply(abort.kind === 'httpStatus' ? { status: abort.status, body: 'fault filter abort' } : { status: 200, grpcStatus: abort.grpcStatus, body: 'fault filter abort' });
  }

  // Cluster.
  let upstream: Upstream;
  if (service) {
    // The source workload itself: it names the DestinationRule client and becomes the cluster's probe source.
    const resolved = ctx.clusters.resolve(snapshot, decision.destination, ctx.source);
    if (!resolved.ok) {
      flags.push('NC');
      return reply({ status: 503, body: resolved.message }, resolved.message);
    }
    upstream = { cluster: resolved.cluster };
    clusterName = resolved.cluster.name;
  } else {
    const { workload, address } = destination as Extract<HttpDestination, { kind: 'workload' }>;
    upstream = { pod: { key: `${address.ip}:${address.port}`, address, workload, connectTimeoutMs: ISTIO_DEFAULT_CONNECT_TIMEOUT_MS } };
  }

  const headers = applyHeaderMutations(requestHeaders, decision.requestHeaders);
  // The port's declared protocol decides, as in Istio; gRPC cannot travel over HTTP/1.1 whatever the port says.
  const protocol = upstreamSpeaksH2(destination.protocol) || grpc ? 'h2' : 'h1';
  const policy = decision.retry;
  const tried = new Set<string>();
  let overallExpired = false;
  const overall = routeDeadline(decision.timeoutMs, d);

  for (;;) {
    const cluster = upstream.cluster;
    const requestLease = cluster?.breaker.acquireRequest();
    if (requestLease && !requestLease.admitted) {
      flags.push('UO');
      overall.cancel();
      return reply({ status: 503, body: 'upstream connect error or disconnect/reset before headers. reset reason: overflow', headers: new Map([['x-envoy-overloaded', ['true']]]) }, requestLease.message);
    }
    const retryLease = attempts > 0 ? cluster?.breaker.acquireRetry() : undefined;
    if (retryLease && !retryLease.admitted) {
      requestLease?.admitted && requestLease.release();
      overall.cancel();
      flags.push('UO');
      return reply({ status: 503, body: 'upstream retry overflow', headers: new Map([['x-envoy-overloaded', ['true']]]) }, retryLease.message);
    }
    const releaseLeases = (): void => {
      if (requestLease?.admitted) requestLease.release();
      if (retryLease?.admitted) retryLease.release();
    };

    const picked = pickTarget(snapshot, upstream, attrs, tried);
    if (picked.kind === 'fail') {
      releaseLeases();
      overall.cancel();
      flags.push(picked.flag);
      return reply({ status: 503, body: picked.message }, picked.message);
    }
    const { target } = picked;
    tried.add(target.key);
    upstreamHost = target.key;
    upstreamWorkload = target.workload;
    attempts++;
    const attemptHeaders: HeaderMap = attempts > 1 ? new Map([...headers, ['x-envoy-attempt-count', [String(attempts)]]]) : headers;
    const exchange = ctx.upstream.send(target, { method: d.method, path: decision.path, authority: decision.authority, headers: attemptHeaders }, body, protocol);
    if (attempts === 1) startMirrors(ctx, decision.mirrors, d, headers, body, protocol, snapshot);
    const endActive = cluster?.active.begin(target.key) ?? (() => undefined);
    const perTry = deadline(policy.perTryTimeoutMs, 'per-try');
    const result = await Promise.race([exchange.result, perTry.expired, overall.expired, aborted(d.gone)]);
    perTry.cancel();

    if (result === 'gone' || result === 'overall' || result === 'per-try') exchange.abort();
    if (result === 'gone') {
      endActive();
      releaseLeases();
      overall.cancel();
      return finishGone();
    }
    if (result === 'overall') overallExpired = true;
    const outcome: AttemptOutcome | { kind: 'overflow' } = outcomeOf(result);
    if (cluster && outcome.kind !== 'overflow') {
      cluster.reportResult(target.key, outcome.kind === 'response' ? { kind: 'response', status: outcome.status } : { kind: 'local-failure', reason: outcome.kind === 'connect-failure' ? 'connect-failure' : outcome.kind === 'per-try-timeout' ? 'timeout' : 'reset' });
    }
    const retriable = outcome.kind !== 'overflow' && isRetriable(policy, outcome);
    if (!overallExpired && retriable && attempts <= policy.attempts && body.replayable && !d.gone.aborted) {
      exchange.abort();
      endActive();
      releaseLeases();
      if (!(await sleep(retryBackoffMs(attempts, ctx.random), d.gone))) return finishGone();
      continue;
    }
    if (retriable && attempts > 1) flags.push('URX');

    if (typeof result === 'object' && result.kind === 'response') {
      // Headers are on their way to the client, so no retry from here; the route timeout still runs
      // until the body has ended (Envoy's route timeout covers the whole response).
      const timeout = overall.expired.then(() => `route timeout ${decision.timeoutMs} ms expired during the response`);
      return streamResponse(d, result, decision, picked.setCookie, timeout, (relayed) => {
        overall.cancel();
        endActive();
        releaseLeases();
        if (relayed.timedOut) flags.unshift('UT');
        else if (relayed.error) flags.push(relayed.error.flag);
        const detail = relayed.timedOut?.message ?? relayed.error?.message;
        finish(relayed.status, relayed.bytes, { ...(relayed.grpcStatus !== undefined ? { grpcStatus: relayed.grpcStatus } : {}), ...(detail ? { detail } : {}) });
      });
    }
    overall.cancel();
    endActive();
    releaseLeases();
    if (overallExpired || outcome.kind === 'per-try-timeout') {
      flags.unshift('UT');
      return reply({ status: 504, body: 'upstream request timeout' }, overallExpired ? `route timeout ${decision.timeoutMs} ms` : `per-try timeout ${policy.perTryTimeoutMs} ms`);
    }
    if (outcome.kind === 'overflow') {
      flags.unshift('UO');
      return reply({ status: 503, body: `${UPSTREAM_RESET}overflow`, headers: new Map([['x-envoy-overloaded', ['true']]]) }, (result as { message: string }).message);
    }
    const message = (result as { message: string }).message;
    if (outcome.kind === 'connect-failure') {
      flags.unshift('UF');
      return reply({ status: 503, body: `${UPSTREAM_RESET}connection failure` }, message);
    }
    flags.unshift('UC');
    return reply({ status: 503, body: `${UPSTREAM_RESET}connection termination` }, message);
  }

  function finishGone(): void {
    flags.push('DC');
    finish(0, 0, { detail: 'the client went away' });
  }
}

function outcomeOf(result: ExchangeResult | 'per-try' | 'overall'): AttemptOutcome | { kind: 'overflow' } {
  if (result === 'per-try' || result === 'overall') return { kind: 'per-try-timeout' };
  switch (result.kind) {
    case 'response': {
      const grpcStatus = grpcStatusOf(result.headers);
      return { kind: 'response', status: result.status, ...(grpcStatus !== undefined ? { grpcStatus } : {}) };
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

function streamResponse(
  d: DownstreamRequest,
  result: Extract<ExchangeResult, { kind: 'response' }>,
  decision: Forward,
  setCookie: string | undefined,
  timeout: Promise<string>,
  done: (relayed: RelayedResponse) => void,
): void {
  const headers = applyHeaderMutations(withoutHopByHop(headerMapOf(result.headers)), decision.responseHeaders);
  if (setCookie) headers.set('set-cookie', [...(headers.get('set-cookie') ?? []), setCookie]);
  relayResponse(d, result, headers, done, { deadline: timeout });
}

function aborted(signal: AbortSignal): Promise<'gone'> {
  if (signal.aborted) return Promise.resolve('gone');
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve('gone'), { once: true }));
}

/** Resolves true after `ms`, or false as soon as the client goes away. */
function sleep(ms: number, gone: AbortSignal): Promise<boolean> {
  if (gone.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      gone.removeEventListener('abort', onGone);
      resolve(true);
    }, ms);
    const onGone = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    gone.addEventListener('abort', onGone, { once: true });
  });
}

// One request on the destination-side agent, as phases over one per-request context in Envoy's inbound
// filter order: the target (normalized at the edge, downstream.ts: 400/404), authenticate and authorize
// (policy/request-guard.ts: JWT 401, the external authorizer's answer, 403 "RBAC: access denied"), the local then global rate limits (429), then to the pod over a
// connection made as the client, and the response relayed. Each phase hands the next what it decided or
// ends the request, and the request ends in one place, `finish`: the answer if the proxy gives it, the
// SERVER span and the reporter="destination" record, once.

import type { DenialRecorder } from '../../explain/denials.js';
import type { RequestGuard, RequestGuardOutcome } from '../../policy/request-guard.js';
import { applyRequestEdits } from '../../policy/request-guard.js';
import type { RateLimiter, RateLimitDecision } from '../../policy/rate-limit.js';
import { canonicalWorkload } from '../../state/canonical.js';
import type { MeshService, MeshSnapshot, Workload } from '../../state/model.js';
import type { ConnectionDescription } from '../../telemetry/connections.js';
import type { Logger } from '../../telemetry/log.js';
import type { HttpResponseFlag, RequestOutcome, RequestTelemetry } from '../../telemetry/requests.js';
import type { RequestSpan, RequestTracer } from '../../telemetry/tracing.js';
import { authorityHost } from '../request.js';
import { type DownstreamRequest, type LocalReply, grpcStatusForHttp, refusalReply, sendLocalReply } from './downstream.js';
import { addForwardingHeaders, isGrpc, responseHeaderMap, setSpanContext, withoutHopByHop } from './headers.js';
import { upstreamSpeaksH2 } from './http-destination.js';
import type { InboundHttpTunnel } from './inbound-http.js';
import { RequestBody } from './request-body.js';
import { type RelayedResponse, relayResponse } from './response-relay.js';
import { aborted } from './timeouts.js';
import type { ExchangeResult, UpstreamConnections, UpstreamTarget } from './upstream-connections.js';

/** What every request of the inbound proxy shares. */
export interface InboundServices {
  readonly telemetry: RequestTelemetry;
  readonly tracer: RequestTracer;
  readonly rateLimiter: RateLimiter;
  readonly connectTimeoutMs: number;
  readonly log: Logger;
  /** RequestAuthentication, CUSTOM, DENY, ALLOW and AUDIT for each request. */
  readonly guard: RequestGuard;
  /** Told of every request denied by AuthorizationPolicy, for `ambit explain --last-denied`. */
  readonly denials?: DenialRecorder;
}

/** The tunnel a request arrived on and its upstream connections to the pod. */
export interface TunnelContext {
  readonly tunnel: InboundHttpTunnel;
  readonly upstream: UpstreamConnections;
  /**
   * The tunnel's description with the pod's workload and Service as its latest request found them:
   * the same for every request of a tunnel until a snapshot changes them, so built once, not per request.
   */
  described: { readonly workload: Workload; readonly service: MeshService | undefined; readonly connection: ConnectionDescription } | undefined;
}

/** How a request ended, whichever phase ended it. */
type InboundEnding =
  | { readonly kind: 'local'; readonly reply: LocalReply; readonly grpcStatus: number; readonly flags: HttpResponseFlag[] | undefined; readonly details: string; readonly routeName: string | undefined }
  | { readonly kind: 'relayed'; readonly relayed: RelayedResponse; readonly routeName: string | undefined }
  | { readonly kind: 'gone' };

interface InboundRequest {
  readonly services: InboundServices;
  readonly context: TunnelContext;
  readonly d: DownstreamRequest;
  readonly snapshot: MeshSnapshot | undefined;
  /** The pod's workload as the snapshot in force now has it: a keep-alive tunnel outlives snapshots. */
  readonly workload: Workload;
  readonly grpc: boolean;
  readonly body: RequestBody;
  readonly span: RequestSpan;
  readonly timing: { completed: (o: RequestOutcome) => void };
  readonly upstreamHost: string;
  /** The Service the request is for (destination_service), found once per request. */
  readonly service: MeshService | undefined;
  /** The Service the request's authority or the pod's port names (serviceOf), for policy; undefined when none does. */
  readonly addressed: MeshService | undefined;
}

/** Envoy's local-reply bodies for an upstream that could not be reached or reset. */
const UPSTREAM_RESET = 'upstream connect error or disconnect/reset before headers. reset reason: ';

export async function serveInbound(services: InboundServices, context: TunnelContext, snapshot: MeshSnapshot | undefined, d: DownstreamRequest): Promise<void> {
  const req = startRequest(services, context, snapshot, d);
  finish(req, await phases(req));
}

async function phases(req: InboundRequest): Promise<InboundEnding> {
  if (!req.snapshot) return local({ status: 503, body: 'no configuration loaded yet' }, 14, { details: 'no_configuration' });
  const refused = target(req);
  if (refused) return refused;
  const allowed = await authorize(req, req.snapshot);
  if (allowed.kind !== 'allow') return allowed;
  const limit = await rateLimit(req, req.snapshot);
  if ('kind' in limit) return limit;
  return toPod(req, limit, allowed);
}

function local(reply: LocalReply, grpcStatus: number, extra: { flags?: HttpResponseFlag[]; details: string; routeName?: string }): InboundEnding {
  return { kind: 'local', reply, grpcStatus, flags: extra.flags, details: extra.details, routeName: extra.routeName };
}

function startRequest(services: InboundServices, context: TunnelContext, snapshot: MeshSnapshot | undefined, d: DownstreamRequest): InboundRequest {
  const { tunnel } = context;
  const workload = snapshot?.workloads.get(tunnel.workload.key) ?? tunnel.workload;
  const grpc = isGrpc(d.headers);
  const addressed = snapshot ? serviceOf(snapshot, workload, tunnel.destination.port, d.authority) : undefined;
  const service = addressed ?? tunnel.connection.dst.service;
  const requestId = d.headers.get('x-request-id')?.[0];
  // Envoy traces every request its connection manager sees, local replies included.
  const span = services.tracer.startSpan('server', {
    headers: d.headers,
    method: d.method,
    path: d.path,
    authority: d.authority,
    httpVersion: d.version,
    workload: canonicalWorkload(workload),
    requestId,
    peerAddress: tunnel.sourceIp,
    upstreamCluster: `inbound|${tunnel.destination.port}||`,
    proxied: { workload, service },
  });
  const timing = services.telemetry.started({
    connection: describe(context, workload, service),
    protocol: grpc ? 'grpc' : 'http',
    method: d.method,
    path: d.path,
    authority: d.authority,
    httpVersion: d.version,
    requestId: requestId || undefined,
    traceId: span.traceId || undefined,
    userAgent: d.headers.get('user-agent')?.[0] || undefined,
  });
  const upstreamHost = `${tunnel.destination.ip}:${tunnel.destination.port}`;
  return { services, context, d, snapshot, workload, grpc, body: new RequestBody(d.body, d.bodyEmpty), span, timing, upstreamHost, service, addressed };
}

/** The tunnel's description with the pod's workload and Service: the last one built while they stay the same. */
function describe(context: TunnelContext, workload: Workload, service: MeshService | undefined): ConnectionDescription {
  const last = context.described;
  if (last && last.workload === workload && last.service === service) return last.connection;
  const { connection } = context.tunnel;
  const described = { workload, service, connection: { ...connection, dst: { ...connection.dst, workload, service } } };
  context.described = described;
  return described.connection;
}

/** The target, normalized at the edge (downstream.ts): what it refused is answered here. */
function target(req: InboundRequest): InboundEnding | undefined {
  const { refused } = req.d;
  if (!refused) return undefined;
  return local(refusalReply(refused), grpcStatusForHttp(refused.status), { details: refused.details, ...(refused.status === 404 ? { flags: ['NR'] } : {}) });
}

type Allowed = Extract<RequestGuardOutcome, { kind: 'allow' }>;

/** Authenticate (JWT) and authorize (CUSTOM, DENY, ALLOW) with the peer identity the tunnel proved. */
async function authorize(req: InboundRequest, snapshot: MeshSnapshot): Promise<InboundEnding | Allowed> {
  const { tunnel } = req.context;
  const { d } = req;
  const service = req.addressed;
  const requestId = d.headers.get('x-request-id')?.[0];
  const outcome = await req.services.guard.check(snapshot, {
    sourceIdentity: tunnel.sourceIdentity,
    sourceIp: tunnel.sourceIp,
    sourcePort: tunnel.sourcePort,
    destination: req.workload,
    destinationIp: tunnel.destination.ip,
    destinationPort: tunnel.destination.port,
    method: d.method,
    authority: d.authority,
    path: d.path,
    headers: d.headers,
    protocol: d.version,
    service,
    requestId,
    // Only an authorizer that wants the body reads it; the pod then gets what was read, then the rest.
    readBody: async (maxBytes) => {
      const read = await Promise.race([req.body.prefix(maxBytes), aborted(d.gone)]);
      return read === 'gone' ? undefined : read;
    },
  });
  if (d.gone.aborted) return { kind: 'gone' };
  if (outcome.kind === 'allow') return outcome;
  req.services.denials?.record({
    path: 'http',
    sourceIp: tunnel.sourceIp,
    ...(tunnel.sourceIdentity !== undefined ? { sourceIdentity: tunnel.sourceIdentity } : {}),
    destination: tunnel.destination,
    http: { method: d.method, path: d.path, authority: d.authority, headers: [...d.headers].flatMap(([name, values]) => values.map((v) => [name, v] as const)) },
    reason: outcome.details,
  });
  const headers = new Map<string, string[]>();
  for (const h of outcome.headers) headers.set(h.name, [...(h.append ? (headers.get(h.name) ?? []) : []), h.value]);
  return local({ status: outcome.status, body: outcome.body, headers }, outcome.grpcStatus, { details: outcome.details });
}

/** Local then global rate limits: a limited request is answered 429 (500 when a deny-mode service fails); an admitted one may carry x-ratelimit-* headers. */
async function rateLimit(req: InboundRequest, snapshot: MeshSnapshot): Promise<Extract<RateLimitDecision, { limited: false }> | InboundEnding> {
  const { tunnel } = req.context;
  const { d } = req;
  const { service } = req;
  const limit = await req.services.rateLimiter.decide(snapshot, {
    destination: req.workload,
    port: tunnel.destination.port,
    sourceIdentity: tunnel.sourceIdentity,
    method: d.method,
    path: d.path,
    headers: d.headers,
    sourceIp: tunnel.sourceIp,
    service: service?.hostname,
  });
  if (!limit.limited) return limit;
  const headers = new Map(Object.entries(limit.headers).map(([k, v]) => [k, [v]]));
  return local({ status: limit.status, body: limit.body, headers }, limit.grpcStatus, { flags: [limit.flag], details: limit.details, routeName: limit.bucket.route });
}

/** To the pod: the normalized path, the span's trace context, a request id and the client's certificate identity. */
async function toPod(req: InboundRequest, limit: Extract<RateLimitDecision, { limited: false }>, allowed: Allowed): Promise<InboundEnding> {
  const { context, d, workload, services, upstreamHost } = req;
  const { tunnel } = context;
  const headers = withoutHopByHop(d.headers);
  headers.delete('host');
  applyRequestEdits(headers, allowed);
  setSpanContext(headers, req.span);
  addForwardingHeaders(headers);
  // Istio's sidecar default (SANITIZE_SET): what the client claims is dropped, what mTLS proved is set.
  headers.delete('x-forwarded-client-cert');
  if (tunnel.sourceIdentity !== undefined) headers.set('x-forwarded-client-cert', [`By=${workload.identity};URI=${tunnel.sourceIdentity}`]);
  const upstream: UpstreamTarget = { key: upstreamHost, address: tunnel.destination, workload, service: undefined, breaker: undefined, connectTimeoutMs: services.connectTimeoutMs, tls: undefined };
  const protocol = upstreamSpeaksH2(tunnel.protocol) || req.grpc ? 'h2' : 'h1';
  const exchange = context.upstream.send(upstream, { method: d.method, path: d.path, authority: d.authority, headers }, req.body, protocol);
  const result = await Promise.race([exchange.result, aborted(d.gone)]);
  if (result === 'gone') {
    exchange.abort();
    return { kind: 'gone' };
  }
  const routeName = limit.headers ? limit.bucket.route : undefined;
  if (result.kind !== 'response') {
    const connectFailed = result.kind === 'connect-failure' || result.kind === 'overflow';
    services.log.debug({ upstream: upstreamHost, reason: result.message }, 'inbound HTTP request: the pod could not be reached');
    return local({ status: 503, body: `${UPSTREAM_RESET}${connectFailed ? 'connection failure' : 'connection termination'}` }, 14, {
      flags: [connectFailed ? 'UF' : 'UC'],
      details: connectFailed ? 'upstream_reset_before_response_started{connection_failure}' : 'upstream_reset_before_response_started{connection_termination}',
    });
  }
  return { kind: 'relayed', relayed: await streamResponse(d, result, limit.headers, allowed), routeName };
}

/** The pod's response to the client, with backpressure both ways and its trailers (gRPC's status). */
function streamResponse(
  d: DownstreamRequest,
  result: Extract<ExchangeResult, { kind: 'response' }>,
  rateLimitHeaders: Readonly<Record<string, string>> | undefined,
  allowed: Allowed,
): Promise<RelayedResponse> {
  const headers = responseHeaderMap(result.headers);
  for (const [name, value] of Object.entries(rateLimitHeaders ?? {})) headers.set(name, [value]);
  for (const h of allowed.responseHeaders) headers.set(h.name, [...(h.append ? (headers.get(h.name) ?? []) : []), h.value]);
  return new Promise((resolve) => relayResponse(d, result, headers, resolve));
}

/** Answers the client when the proxy must, then reports the request and ends its span: once per request. */
function finish(req: InboundRequest, ending: InboundEnding): void {
  const { status, bytes, grpcStatus, flags, details, routeName, reached } = conclude(req, ending);
  const { body } = req;
  const upstreamHost = reached ? req.upstreamHost : undefined;
  // One shape for every outcome, absent values undefined.
  req.timing.completed({
    responseCode: status,
    grpcStatus,
    flags,
    requestBytes: body.size,
    responseBytes: bytes,
    upstreamHost,
    routeName: routeName || undefined,
    responseCodeDetails: details || undefined,
  });
  req.span.end({ statusCode: status, grpcStatus, responseFlags: flags && flags.length > 0 ? flags.join(',') : '-', upstreamHost, requestBytes: body.size, responseBytes: bytes });
}

interface Concluded {
  readonly status: number;
  readonly bytes: number;
  readonly grpcStatus: number | undefined;
  readonly flags: HttpResponseFlag[] | undefined;
  readonly details: string;
  readonly routeName: string | undefined;
  /** The pod answered: the record names it as the upstream host. */
  readonly reached: boolean;
}

function conclude(req: InboundRequest, ending: InboundEnding): Concluded {
  switch (ending.kind) {
    case 'local': {
      const bytes = sendLocalReply(req.d, ending.reply, req.grpc);
      req.body.discard();
      const { flags, details, routeName } = ending;
      // A gRPC client is answered 200 with the status in grpc-status, which Istio's labels report.
      return { status: req.grpc ? 200 : ending.reply.status, bytes, grpcStatus: req.grpc ? ending.grpcStatus : undefined, flags, details, routeName, reached: false };
    }
    case 'relayed': {
      const { relayed, routeName } = ending;
      const { error } = relayed;
      return {
        status: relayed.status,
        bytes: relayed.bytes,
        grpcStatus: relayed.grpcStatus,
        flags: error ? [error.flag] : undefined,
        details: error ? error.message : 'via_upstream',
        routeName,
        reached: true,
      };
    }
    case 'gone':
      return { status: 0, bytes: 0, grpcStatus: undefined, flags: ['DC'], details: 'downstream_remote_disconnect', routeName: undefined, reached: false };
  }
}

/**
 * The Service a request is for, as Istio's destination_service: the one whose host the request's
 * authority names (FQDN or short name in the pod's namespace), else the only Service that routes to
 * this pod port.
 */
export function serviceOf(snapshot: MeshSnapshot, workload: Workload, port: number, authority: string): MeshService | undefined {
  const candidates = servicesOfPodPort(snapshot, workload, port);
  const host = authorityHost(authority);
  const named = candidates.find((s) => host === s.hostname || host === s.name || host === `${s.name}.${s.namespace}` || host === `${s.name}.${s.namespace}.svc`);
  return named ?? (candidates.length === 1 ? candidates[0] : undefined);
}

// Snapshots never change: the Services routing to a pod's port are found once per snapshot, not by a
// scan of every Service's endpoints on every request.
const podPortServices = new WeakMap<MeshSnapshot, Map<string, readonly MeshService[]>>();

function servicesOfPodPort(snapshot: MeshSnapshot, workload: Workload, port: number): readonly MeshService[] {
  let byPodPort = podPortServices.get(snapshot);
  if (!byPodPort) podPortServices.set(snapshot, (byPodPort = new Map()));
  const key = `${workload.key} ${port}`;
  let services = byPodPort.get(key);
  if (!services) {
    services = [...snapshot.services.values()].filter((s) => s.endpoints.some((e) => e.workload === workload.key && [...e.ports.values()].includes(port)));
    byPodPort.set(key, services);
  }
  return services;
}

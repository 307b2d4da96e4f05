// One request's context on the source-side agent, carried through every phase of forward.ts, and the
// one place a request ends: however a phase ended it (a local answer, a relayed response, a client that
// went away), `finishRequest` answers if the proxy must, ends the span and reports the record once.

import { canonicalWorkload } from '../../state/canonical.js';
import type { MeshService, Workload } from '../../state/model.js';
import type { RequestSpan } from '../../telemetry/tracing.js';
import type { HttpRequestAttributes } from '../request.js';
import type { RouteRef } from '../route-decision.js';
import { type DownstreamRequest, type LocalReply, sendLocalReply } from './downstream.js';
import type { ForwardContext } from './forward.js';
import { type HeaderMap, addForwardingHeaders, isGrpc, setSpanContext, withoutHopByHop } from './headers.js';
import { type CompletedRequest, type RequestFlag, formatFlags } from './request-record.js';
import { RequestBody } from './request-body.js';
import type { RelayedResponse } from './response-relay.js';

/** How a request ended, whichever phase ended it. */
export type RequestEnding =
  /** The proxy answers itself (no route, a fault abort, no upstream, a timeout...); `detail` is for the log. */
  | { readonly kind: 'local'; readonly reply: LocalReply; readonly detail: string | undefined }
  /** An upstream response went to the client, whole or cut short. */
  | { readonly kind: 'relayed'; readonly relayed: RelayedResponse }
  /** The client went away before any answer. */
  | { readonly kind: 'gone' };

/** What a phase hands the next one, or how it ended the request. */
export type Phase<T> = { readonly kind: 'next'; readonly value: T } | RequestEnding;

export const next = <T>(value: T): Phase<T> => ({ kind: 'next', value });
export const answer = (reply: LocalReply, detail?: string): RequestEnding => ({ kind: 'local', reply, detail });
export const GONE: RequestEnding = { kind: 'gone' };

/** The per-request context: fixed at the start, then the little each phase learns (route, endpoint, flags). */
export interface OutboundRequest {
  readonly ctx: ForwardContext;
  readonly d: DownstreamRequest;
  /** The Service the client addressed; undefined when it dialled a pod. */
  readonly service: MeshService | undefined;
  readonly attrs: HttpRequestAttributes;
  readonly grpc: boolean;
  readonly body: RequestBody;
  /** The upstream request's headers before the route's mutations: hop-by-hop gone, ids and span context set. */
  readonly headers: HeaderMap;
  readonly requestId: string;
  readonly span: RequestSpan;
  readonly traceparent: string | undefined;
  readonly startedAt: Date;
  readonly started: number;
  route: RouteRef;
  attempts: number;
  /** The endpoint of the latest try, and its workload. */
  upstreamHost: string | undefined;
  upstreamWorkload: Workload | undefined;
  clusterName: string | undefined;
  readonly flags: RequestFlag[];
}

export function startRequest(ctx: ForwardContext, d: DownstreamRequest): OutboundRequest {
  const startedAt = new Date();
  const started = performance.now();
  const { destination, source } = ctx;
  const service = destination.kind === 'service' ? destination.service : undefined;
  const attrs: HttpRequestAttributes = {
    host: destination.kind === 'service' ? destination.service.hostname : destination.address.ip,
    authority: d.authority,
    port: destination.kind === 'service' ? destination.port : destination.address.port,
    method: d.method,
    path: d.path,
    scheme: 'http',
    headers: d.headers,
    source: { namespace: source.namespace, labels: source.labels, ip: ctx.sourceIp, port: ctx.sourcePort },
  };
  const headers = withoutHopByHop(d.headers);
  headers.delete('host');
  const requestId = addForwardingHeaders(headers);
  const span = ctx.tracer.startSpan('client', {
    headers: d.headers,
    method: d.method,
    path: d.path,
    authority: d.authority,
    httpVersion: d.version,
    workload: canonicalWorkload(source),
    requestId,
    peerAddress: ctx.sourceIp,
    upstreamCluster: service?.hostname,
    proxied: { workload: source },
  });
  // The upstream carries this span's context in place of the client's: the destination parents to it.
  setSpanContext(headers, span);
  return {
    ctx,
    d,
    service,
    attrs,
    grpc: isGrpc(d.headers),
    body: new RequestBody(d.body, d.bodyEmpty),
    headers,
    requestId,
    span,
    traceparent: headers.get('traceparent')?.[0] ?? d.headers.get('traceparent')?.[0],
    startedAt,
    started,
    route: {},
    attempts: 0,
    upstreamHost: undefined,
    upstreamWorkload: undefined,
    clusterName: undefined,
    flags: [],
  };
}

/** Answers the client when the proxy must, then ends the span and reports the request: once per request. */
export function finishRequest(req: OutboundRequest, ending: RequestEnding): void {
  const { status, bytes, grpcStatus, detail } = conclude(req, ending);
  const { ctx, d, upstreamWorkload, upstreamHost, flags, body } = req;
  // Every field written, in one order, whatever the ending: one shape for every record.
  const record: CompletedRequest = {
    reporter: 'source',
    source: ctx.source,
    sourceAddress: `${ctx.sourceIp}:${ctx.sourcePort}`,
    destinationService: req.service,
    destinationWorkload: upstreamWorkload,
    upstreamHost,
    upstreamCluster: req.clusterName,
    securityPolicy: upstreamWorkload?.enrollment.enrolled ? 'mutual_tls' : 'unknown',
    route: req.route,
    protocol: req.grpc ? 'grpc' : 'http',
    httpVersion: d.version,
    method: d.method,
    path: d.path,
    authority: d.authority,
    requestId: req.requestId,
    traceparent: req.traceparent || undefined,
    userAgent: d.headers.get('user-agent')?.[0] || undefined,
    status,
    grpcStatus,
    flags,
    attempts: req.attempts,
    requestBytes: body.size,
    responseBytes: bytes,
    startedAt: req.startedAt,
    durationMs: Math.round((performance.now() - req.started) * 1000) / 1000,
    detail,
  };
  req.span.end({ statusCode: status, grpcStatus, responseFlags: formatFlags(flags), upstreamHost, requestBytes: body.size, responseBytes: bytes });
  ctx.onComplete(record);
}

/** What the client got, in one shape whatever the ending. */
interface Concluded {
  readonly status: number;
  readonly bytes: number;
  readonly grpcStatus: number | undefined;
  readonly detail: string | undefined;
}

/** What the client got: a local answer is sent here; a relayed response's flags are added here. */
function conclude(req: OutboundRequest, ending: RequestEnding): Concluded {
  switch (ending.kind) {
    case 'local': {
      const { reply, detail } = ending;
      const bytes = sendLocalReply(req.d, reply, req.grpc);
      // A gRPC client is answered 200 with its status in grpc-status.
      return { status: reply.grpcStatus !== undefined || req.grpc ? 200 : reply.status, bytes, grpcStatus: undefined, detail: detail || undefined };
    }
    case 'relayed': {
      const { relayed } = ending;
      if (relayed.timedOut) req.flags.unshift('UT');
      else if (relayed.error) req.flags.push(relayed.error.flag);
      const detail = relayed.timedOut?.message ?? relayed.error?.message;
      return { status: relayed.status, bytes: relayed.bytes, grpcStatus: relayed.grpcStatus, detail: detail || undefined };
    }
    case 'gone':
      req.flags.push('DC');
      return { status: 0, bytes: 0, grpcStatus: undefined, detail: 'the client went away' };
  }
}

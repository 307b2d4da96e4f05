// The destination-side agent's HTTP proxy: a tunnel admitted to a pod's port that speaks HTTP (HBONE on
// 15008, plaintext on 15006, or same-node traffic the outbound listener keeps) is parsed by Node's own
// servers, and each request is, in Envoy's inbound filter order: its target normalized (400/404; the
// path every later step reads and the pod receives, l7/request-target.ts), authorized with the
// peer's proven identity (403 "RBAC: access denied"), rate-limited (429), traced (a SERVER span), sent
// to the pod over a connection made as the client (keep-alive per tunnel), and counted with
// reporter="destination". The tunnel code relays to this proxy as it would relay to the pod's socket.

import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Http2Server, Http2ServerRequest, Http2ServerResponse, ServerHttp2Session } from 'node:http2';
import { Socket } from 'node:net';
import { type Duplex, PassThrough } from 'node:stream';
import { socketPair } from '../../redirect/bpf-binding.js';
import { RBAC_DENIED_BODY, RBAC_DENIED_STATUS, authorizeRequest, denialDetails } from '../../policy/http-authorization.js';
import type { LocalRateLimiter } from '../../policy/rate-limit.js';
import { canonicalName, canonicalRevision } from '../../state/canonical.js';
import type { MeshService, MeshSnapshot, SpiffeId, Workload } from '../../state/model.js';
import type { AppProtocol } from '../../state/protocol.js';
import type { WorkloadStore } from '../../state/store.js';
import type { ConnectionDescription } from '../../telemetry/connections.js';
import type { Logger } from '../../telemetry/log.js';
import type { HttpResponseFlag, RequestTelemetry } from '../../telemetry/requests.js';
import type { RequestSpan, RequestTracer } from '../../telemetry/tracing.js';
import { authorityHost } from '../request.js';
import { DEFAULT_PATH_NORMALIZATION, type PathNormalization } from '../request-target.js';
import { ConnectionSlots } from './connection-slots.js';
import { type DownstreamRequest, type LocalReply, grpcStatusForHttp, http1Downstream, http2Downstream, refusalReply, sendLocalReply } from './downstream.js';
import { addForwardingHeaders, headerMapOf, isGrpc, setSpanContext, withoutHopByHop } from './headers.js';
import { DEFAULT_HTTP_SERVER_LIMITS, type HttpServerLimits, firstBytesDeadline, h2cServer, http1Server } from './http-servers.js';
import { relayResponse } from './response-relay.js';
import { upstreamSpeaksH2 } from './http-destination.js';
import { RequestBody } from './request-body.js';
import { ReplayedSocket, sniffHttpVersion } from './protocol-sniff.js';
import { type ExchangeResult, UpstreamConnections, type UpstreamTarget } from './upstream-connections.js';

export interface InboundHttpOptions {
  readonly store: WorkloadStore;
  readonly log: Logger;
  readonly rateLimiter: LocalRateLimiter;
  /** Istio's request metrics and the per-request access log; this side reports "destination". */
  readonly telemetry: RequestTelemetry;
  readonly tracer: RequestTracer;
  /** How request paths are normalized before policy and forwarding; default: DEFAULT_PATH_NORMALIZATION. */
  readonly pathNormalization?: PathNormalization;
  /** Header, request and idle timeouts for the tunnels' connections; default: DEFAULT_HTTP_SERVER_LIMITS. */
  readonly limits?: HttpServerLimits;
  /** Connect timeout to the pod, per upstream connection. Default 10 s. */
  readonly connectTimeoutMs?: number;
}

/** One admitted tunnel to an HTTP port of a pod of this node. */
export interface InboundHttpTunnel {
  /** The tunnel as its TCP telemetry describes it (direction "inbound"). */
  readonly connection: ConnectionDescription;
  readonly sourceIp: string;
  readonly sourcePort: number;
  /** Proven by the peer's certificate (HBONE) or known to this agent (same node); absent for plaintext. */
  readonly sourceIdentity?: SpiffeId;
  /** The pod's address and the application port. */
  readonly destination: { readonly ip: string; readonly port: number };
  readonly workload: Workload;
  /** What the port speaks (admitInbound's httpProtocol). */
  readonly protocol: AppProtocol;
  /** Opens one connection to the pod, as the client (the same way the L4 path would). */
  readonly connect: () => Promise<Duplex | string>;
}

interface TunnelContext {
  readonly tunnel: InboundHttpTunnel;
  readonly upstream: UpstreamConnections;
}

/** Envoy's local-reply bodies for an upstream that could not be reached or reset. */
const UPSTREAM_RESET = 'upstream connect error or disconnect/reset before headers. reset reason: ';

export class InboundHttpProxy {
  readonly #h1: Server;
  readonly #h2: Http2Server;
  readonly #limits: HttpServerLimits;
  readonly #normalization: PathNormalization;
  readonly #contexts = new WeakMap<object, TunnelContext>();
  readonly #slots = new ConnectionSlots();
  #pendingH2: TunnelContext | undefined;

  constructor(private readonly options: InboundHttpOptions) {
    // Servers fed tunnels, never listening.
    this.#limits = options.limits ?? DEFAULT_HTTP_SERVER_LIMITS;
    this.#normalization = options.pathNormalization ?? DEFAULT_PATH_NORMALIZATION;
    this.#h1 = http1Server(this.#limits, (req, res) => this.#onHttp1(req, res));
    this.#h2 = h2cServer(this.#limits, (req, res) => this.#onHttp2(req, res));
    this.#h2.on('session', (session: ServerHttp2Session) => {
      if (this.#pendingH2) this.#contexts.set(session, this.#pendingH2);
      session.on('error', () => undefined);
    });
  }

  /**
   * The socket the tunnel relays to, in place of the pod's: one end of a socket pair, whose other end
   * Node's servers parse (HTTP/1.1, or HTTP/2 when the client sends the prior-knowledge preface). Being a
   * real socket, the native HBONE engine takes it as a stream's fd, and a plain TCP tunnel is spliced
   * to it by the kernel: no JavaScript copies a tunnel's bytes on their way to the parser.
   */
  open(tunnel: InboundHttpTunnel): Duplex {
    const pair = socketPair();
    if (!pair.ok) {
      // Out of file descriptors, most likely: the tunnel fails like an unreachable pod.
      const failed = new PassThrough();
      process.nextTick(() => failed.destroy(new Error(`the HTTP proxy cannot take the tunnel: ${pair.error.message}`)));
      return failed;
    }
    const [outerFd, innerFd] = pair.value;
    const outer = new Socket({ fd: outerFd, allowHalfOpen: true, readable: true, writable: true });
    const inner = new Socket({ fd: innerFd, allowHalfOpen: true, readable: true, writable: true });
    inner.pause();
    const context: TunnelContext = { tunnel, upstream: new UpstreamConnections(() => tunnel.connect(), this.#slots) };
    inner.once('close', () => context.upstream.close());
    inner.on('error', () => undefined);
    const sniffing = firstBytesDeadline(inner, this.#limits.headersTimeoutMs);
    void sniffHttpVersion(inner).then((sniffed) => {
      sniffing();
      if (sniffed === undefined) return void inner.destroy();
      if (sniffed.version === 'HTTP/2') {
        this.#pendingH2 = context;
        this.#h2.emit('connection', new ReplayedSocket(sniffed.first, inner));
        this.#pendingH2 = undefined;
      } else {
        this.#contexts.set(inner, context);
        inner.unshift(sniffed.first);
        this.#h1.emit('connection', inner);
        inner.resume();
      }
    });
    return outer;
  }

  /** Stops the servers' deadline checks; tunnels still open keep being served. */
  close(): void {
    this.#h1.close();
    this.#h2.close();
  }

  #onHttp1(req: IncomingMessage, res: ServerResponse): void {
    this.#serve(this.#contexts.get(req.socket), http1Downstream(req, res, this.#normalization));
  }

  #onHttp2(req: Http2ServerRequest, res: Http2ServerResponse): void {
    this.#serve(this.#contexts.get(req.stream.session as object), http2Downstream(req, res, this.#normalization));
  }

  #serve(context: TunnelContext | undefined, d: DownstreamRequest): void {
    if (!context) {
      sendLocalReply(d, { status: 503, body: 'no tunnel for this connection' }, isGrpc(d.headers));
      return;
    }
    this.#handle(context, d).catch((err: Error) => {
      this.options.log.error({ err: err.message, path: d.path }, 'inbound HTTP request failed in the proxy');
      if (!d.headersSent) sendLocalReply(d, { status: 500, body: 'internal proxy error' }, isGrpc(d.headers));
      else d.response.destroy();
    });
  }

  async #handle(context: TunnelContext, d: DownstreamRequest): Promise<void> {
    const { store, telemetry, tracer, rateLimiter } = this.options;
    const { tunnel } = context;
    const snapshot = store.current;
    // A keep-alive tunnel outlives snapshots: each request is judged on the one in force now.
    const workload = snapshot?.workloads.get(tunnel.workload.key) ?? tunnel.workload;
    const grpc = isGrpc(d.headers);
    const service = (snapshot && serviceOf(snapshot, workload, tunnel.destination.port, d.authority)) ?? tunnel.connection.dst.service;
    const requestId = d.headers.get('x-request-id')?.[0];
    const userAgent = d.headers.get('user-agent')?.[0];
    // Envoy traces every request its connection manager sees, local replies included.
    const span: RequestSpan = tracer.startSpan('server', {
      headers: d.headers,
      method: d.method,
      path: d.path,
      authority: d.authority,
      httpVersion: d.version,
      workload: { canonicalService: canonicalName(workload), namespace: workload.namespace, canonicalRevision: canonicalRevision(workload) },
      ...(requestId ? { requestId } : {}),
      peerAddress: tunnel.sourceIp,
      upstreamCluster: `inbound|${tunnel.destination.port}||`,
    });
    const timing = telemetry.started({
      connection: { ...tunnel.connection, dst: { ...tunnel.connection.dst, workload, ...(service ? { service } : {}) } },
      protocol: grpc ? 'grpc' : 'http',
      method: d.method,
      path: d.path,
      authority: d.authority,
      httpVersion: d.version,
      ...(requestId ? { requestId } : {}),
      ...(span.traceId ? { traceId: span.traceId } : {}),
      ...(userAgent ? { userAgent } : {}),
    });
    const body = new RequestBody(d.body, d.bodyEmpty);
    const upstreamHost = `${tunnel.destination.ip}:${tunnel.destination.port}`;
    const finish = (status: number, responseBytes: number, extra: { grpcStatus?: number; flags?: HttpResponseFlag[]; details?: string; routeName?: string; reached?: boolean } = {}): void => {
      timing.completed({
        responseCode: status,
        ...(extra.grpcStatus !== undefined ? { grpcStatus: extra.grpcStatus } : {}),
        ...(extra.flags ? { flags: extra.flags } : {}),
        requestBytes: body.size,
        responseBytes,
        ...(extra.reached ? { upstreamHost } : {}),
        ...(extra.routeName ? { routeName: extra.routeName } : {}),
        ...(extra.details ? { responseCodeDetails: extra.details } : {}),
      });
      span.end({
        statusCode: status,
        ...(extra.grpcStatus !== undefined ? { grpcStatus: extra.grpcStatus } : {}),
        responseFlags: extra.flags && extra.flags.length > 0 ? extra.flags.join(',') : '-',
        ...(extra.reached ? { upstreamHost } : {}),
        requestBytes: body.size,
        responseBytes,
      });
    };
    const reply = (r: LocalReply, grpcStatus: number, extra: { flags?: HttpResponseFlag[]; details: string; routeName?: string }): void => {
      const bytes = sendLocalReply(d, r, grpc);
      // A gRPC client is answered 200 with the status in grpc-status, which Istio's labels report.
      finish(grpc ? 200 : r.status, bytes, { ...extra, ...(grpc ? { grpcStatus } : {}) });
    };

    if (!snapshot) return reply({ status: 503, body: 'no configuration loaded yet' }, 14, { details: 'no_configuration' });

    // 1. The target, normalized at the edge (downstream.ts): what it refused is answered here.
    const refused = d.refused;
    if (refused) {
      return reply(refusalReply(refused), grpcStatusForHttp(refused.status), { details: refused.details, ...(refused.status === 404 ? { flags: ['NR'] } : {}) });
    }

    // 2. Authorize with the peer identity the tunnel proved.
    const decision = authorizeRequest(snapshot, {
      ...(tunnel.sourceIdentity !== undefined ? { sourceIdentity: tunnel.sourceIdentity } : {}),
      sourceIp: tunnel.sourceIp,
      destination: workload,
      destinationIp: tunnel.destination.ip,
      destinationPort: tunnel.destination.port,
      method: d.method,
      authority: d.authority,
      path: d.path,
      headers: d.headers,
    });
    if (!decision.allowed) return reply({ status: RBAC_DENIED_STATUS, body: RBAC_DENIED_BODY }, 7, { details: denialDetails(decision) });

    // 3. Local rate limits.
    const limit = rateLimiter.check(snapshot, {
      destination: workload,
      port: tunnel.destination.port,
      ...(tunnel.sourceIdentity !== undefined ? { sourceIdentity: tunnel.sourceIdentity } : {}),
      method: d.method,
      path: d.path,
      headers: d.headers,
    });
    if (limit.limited) {
      const headers = new Map(Object.entries(limit.headers).map(([k, v]) => [k, [v]]));
      return reply({ status: limit.status, body: limit.body, headers }, limit.grpcStatus, { flags: [limit.flag], details: 'local_rate_limited', routeName: limit.bucket.route });
    }

    // 4. To the pod: the normalized path, the span's trace context, a request id and the client's certificate identity.
    const headers = withoutHopByHop(d.headers);
    headers.delete('host');
    setSpanContext(headers, span);
    addForwardingHeaders(headers);
    // Istio's sidecar default (SANITIZE_SET): what the client claims is dropped, what mTLS proved is set.
    headers.delete('x-forwarded-client-cert');
    if (tunnel.sourceIdentity !== undefined) headers.set('x-forwarded-client-cert', [`By=${workload.identity};URI=${tunnel.sourceIdentity}`]);
    const target: UpstreamTarget = { key: upstreamHost, address: tunnel.destination, workload, connectTimeoutMs: this.options.connectTimeoutMs ?? 10_000 };
    const protocol = upstreamSpeaksH2(tunnel.protocol) || grpc ? 'h2' : 'h1';
    const exchange = context.upstream.send(target, { method: d.method, path: d.path, authority: d.authority, headers }, body, protocol);
    const result = await Promise.race([exchange.result, gone(d.gone)]);
    if (result === 'gone') {
      exchange.abort();
      return finish(0, 0, { flags: ['DC'], details: 'downstream_remote_disconnect' });
    }
    if (result.kind !== 'response') {
      const connectFailed = result.kind === 'connect-failure' || result.kind === 'overflow';
      this.options.log.debug({ upstream: upstreamHost, reason: result.message }, 'inbound HTTP request: the pod could not be reached');
      return reply(
        { status: 503, body: `${UPSTREAM_RESET}${connectFailed ? 'connection failure' : 'connection termination'}` },
        14,
        { flags: [connectFailed ? 'UF' : 'UC'], details: connectFailed ? 'upstream_reset_before_response_started{connection_failure}' : 'upstream_reset_before_response_started{connection_termination}' },
      );
    }
    streamResponse(d, result, limit.headers, (status, bytes, grpcStatus, error) =>
      finish(status, bytes, {
        ...(grpcStatus !== undefined ? { grpcStatus } : {}),
        reached: true,
        ...(error ? { flags: [error.flag], details: error.message } : { details: 'via_upstream' }),
        ...(limit.headers ? { routeName: limit.bucket.route } : {}),
      }),
    );
  }
}

/**
 * The Service a request is for, as Istio's destination_service: the one whose host the request's
 * authority names (FQDN or short name in the pod's namespace), else the only Service that routes to
 * this pod port.
 */
export function serviceOf(snapshot: MeshSnapshot, workload: Workload, port: number, authority: string): MeshService | undefined {
  const candidates = [...snapshot.services.values()].filter((s) => s.endpoints.some((e) => e.workload === workload.key && [...e.ports.values()].includes(port)));
  const host = authorityHost(authority);
  const named = candidates.find((s) => host === s.hostname || host === s.name || host === `${s.name}.${s.namespace}` || host === `${s.name}.${s.namespace}.svc`);
  return named ?? (candidates.length === 1 ? candidates[0] : undefined);
}

/** The pod's response to the client, with backpressure both ways and its trailers (gRPC's status). */
function streamResponse(
  d: DownstreamRequest,
  result: Extract<ExchangeResult, { kind: 'response' }>,
  rateLimitHeaders: Readonly<Record<string, string>> | undefined,
  done: (status: number, bytes: number, grpcStatus: number | undefined, error?: { readonly flag: 'UC' | 'DC'; readonly message: string }) => void,
): void {
  const headers = withoutHopByHop(headerMapOf(result.headers));
  for (const [name, value] of Object.entries(rateLimitHeaders ?? {})) headers.set(name, [value]);
  relayResponse(d, result, headers, (relayed) => done(relayed.status, relayed.bytes, relayed.grpcStatus, relayed.error));
}

function gone(signal: AbortSignal): Promise<'gone'> {
  if (signal.aborted) return Promise.resolve('gone');
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve('gone'), { once: true }));
}

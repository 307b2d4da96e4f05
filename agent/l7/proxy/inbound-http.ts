// The destination-side agent's HTTP proxy: a tunnel admitted to a pod's port that speaks HTTP (HBONE on
// 15008, plaintext on 15006, or same-node traffic the outbound listener keeps) is parsed by Node's own
// servers, and each request goes through inbound-request.ts's phases (target, authorize, rate limit,
// to the pod over a connection made as the client, kept alive per tunnel) and is counted with
// reporter="destination". The tunnel code relays to this proxy as it would relay to the pod's socket.

import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Http2Server, Http2ServerRequest, Http2ServerResponse, ServerHttp2Session } from 'node:http2';
import { Socket } from 'node:net';
import { type Duplex, PassThrough } from 'node:stream';
import type { RateLimiter } from '../../policy/rate-limit.js';
import { RequestGuard } from '../../policy/request-guard.js';
import { socketPair } from '../../redirect/bpf-binding.js';
import type { SpiffeId, Workload } from '../../state/model.js';
import type { AppProtocol } from '../../state/protocol.js';
import type { WorkloadStore } from '../../state/store.js';
import type { ConnectionDescription } from '../../telemetry/connections.js';
import type { Logger } from '../../telemetry/log.js';
import type { RequestTelemetry } from '../../telemetry/requests.js';
import type { RequestTracer } from '../../telemetry/tracing.js';
import { DEFAULT_PATH_NORMALIZATION, type PathNormalization } from '../request-target.js';
import { ConnectionSlots } from './connection-slots.js';
import { type DownstreamRequest, http1Downstream, http2Downstream, sendLocalReply } from './downstream.js';
import { isGrpc } from './headers.js';
import { DEFAULT_HTTP_SERVER_LIMITS, type HttpServerLimits, type IdleOnDrain, firstBytesDeadline, h2cServer, http1Server } from './http-servers.js';
import type { DenialRecorder } from '../../explain/denials.js';
import { type InboundServices, type TunnelContext, serveInbound } from './inbound-request.js';
import { ReplayedSocket, sniffHttpVersion } from './protocol-sniff.js';
import { UpstreamConnections } from './upstream-connections.js';

export interface InboundHttpOptions {
  readonly store: WorkloadStore;
  readonly log: Logger;
  readonly rateLimiter: RateLimiter;
  /** Istio's request metrics and the per-request access log; this side reports "destination". */
  readonly telemetry: RequestTelemetry;
  readonly tracer: RequestTracer;
  /** How request paths are normalized before policy and forwarding; default: DEFAULT_PATH_NORMALIZATION. */
  readonly pathNormalization?: PathNormalization;
  /** Header, request and idle timeouts for the tunnels' connections; default: DEFAULT_HTTP_SERVER_LIMITS. */
  readonly limits?: HttpServerLimits;
  /** Connect timeout to the pod, per upstream connection. Default 10 s. */
  readonly connectTimeoutMs?: number;
  /** Told of every request denied by AuthorizationPolicy, for `ambit explain --last-denied`. */
  readonly denials?: DenialRecorder;
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
  /** What this agent's drain does to the tunnel's idle kept-alive connection; default 'keep'. */
  readonly idleOnDrain?: IdleOnDrain;
}

export class InboundHttpProxy {
  readonly #h1: Server;
  readonly #h2: Http2Server;
  readonly #limits: HttpServerLimits;
  readonly #normalization: PathNormalization;
  readonly #contexts = new WeakMap<object, TunnelContext>();
  readonly #slots = new ConnectionSlots();
  #pendingH2: TunnelContext | undefined;
  readonly #services: InboundServices;

  constructor(private readonly options: InboundHttpOptions) {
    // Servers fed tunnels, never listening.
    this.#limits = options.limits ?? DEFAULT_HTTP_SERVER_LIMITS;
    this.#normalization = options.pathNormalization ?? DEFAULT_PATH_NORMALIZATION;
    const { telemetry, tracer, rateLimiter, log } = options;
    this.#services = { telemetry, tracer, rateLimiter, log, guard: new RequestGuard({ log }), connectTimeoutMs: options.connectTimeoutMs ?? 10_000, ...(options.denials ? { denials: options.denials } : {}) };
    this.#h1 = http1Server(this.#limits, (socket) => this.#contexts.get(socket)?.tunnel.idleOnDrain ?? 'keep', (req, res) => this.#onHttp1(req, res));
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
    const context: TunnelContext = { tunnel, upstream: new UpstreamConnections(() => tunnel.connect(), this.#slots), described: undefined };
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
    serveInbound(this.#services, context, this.options.store.current, d).catch((err: Error) => {
      this.options.log.error({ err: err.message, path: d.path }, 'inbound HTTP request failed in the proxy');
      if (!d.headersSent()) sendLocalReply(d, { status: 500, body: 'internal proxy error' }, isGrpc(d.headers));
      else d.response.destroy();
    });
  }
}

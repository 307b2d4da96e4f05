// The source-side agent's HTTP proxy: a captured connection from an enrolled pod to a port that speaks
// HTTP is parsed by Node's own servers (HTTP/1.1, or HTTP/2 with prior knowledge for h2c and gRPC),
// and each request is routed, balanced and retried (forward.ts) over upstream connections the caller
// opens for the source pod (upstream-connections.ts). No HTTP parsing of our own.

import type http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2Server, Http2ServerRequest, Http2ServerResponse, ServerHttp2Session } from 'node:http2';
import type { Socket } from 'node:net';
import type { MeshSnapshot, Workload } from '../../state/model.js';
import type { WorkloadStore } from '../../state/store.js';
import type { Logger } from '../../telemetry/log.js';
import { RequestTracer } from '../../telemetry/tracing.js';
import { type Clock, systemClock } from '../clock.js';
import { ClusterHealthChecks } from '../cluster-health.js';
import type { HealthEvent } from '../health-check.js';
import { type Random, mathRandom } from '../random.js';
import { UpstreamClusters } from '../upstream-cluster.js';
import { DEFAULT_PATH_NORMALIZATION, type PathNormalization } from '../request-target.js';
import { ConnectionSlots } from './connection-slots.js';
import { type DownstreamRequest, http1Downstream, http2Downstream, sendLocalReply } from './downstream.js';
import { type ForwardContext, forwardRequest } from './forward.js';
import { isGrpc } from './headers.js';
import { DEFAULT_HTTP_SERVER_LIMITS, type HttpServerLimits, firstBytesDeadline, h2cServer, http1Server } from './http-servers.js';
import { type CapturedAddress, type HttpDestination, httpDestinationOf } from './http-destination.js';
import type { CompletedRequest, RequestCompleteHook } from './request-record.js';
import { ReplayedSocket, sniffHttpVersion } from './protocol-sniff.js';
import type { EndpointProbe } from './health-probe.js';
import { type TcpRouteTarget, tcpRouteTarget } from './tcp-route-target.js';
import { type OpenUpstream, UpstreamConnections } from './upstream-connections.js';

export interface OutboundHttpOptions {
  readonly node: string;
  readonly store: WorkloadStore;
  readonly log: Logger;
  /**
   * Called once per finished request with every input of Istio's request metrics. Request telemetry
   * (istio_requests_total and friends, and the access-log record) plugs in here.
   */
  readonly onRequestComplete?: RequestCompleteHook;
  readonly clock?: Clock;
  readonly random?: Random;
  /** CLIENT spans per request; default: tracing off (contexts pass through). */
  readonly tracer?: RequestTracer;
  /** Active health checks of the clusters in use (from readinessProbes); default: none. */
  readonly healthChecks?: { readonly probe: EndpointProbe; readonly onTransition?: (cluster: string, event: HealthEvent) => void };
  /** Header, request and idle timeouts for the pods' connections; default: DEFAULT_HTTP_SERVER_LIMITS. */
  readonly limits?: HttpServerLimits;
  /** How request paths are normalized before routing and forwarding; default: DEFAULT_PATH_NORMALIZATION. */
  readonly pathNormalization?: PathNormalization;
  /** How long a source pod's upstream connections outlive its last client connection; default: UPSTREAM_LINGER_MS. */
  readonly upstreamLingerMs?: number;
}

/**
 * A source pod's upstream connections stay this long after its last client connection closed. A client
 * that comes back (a new process, a pooled client that let its connections go, a connection per
 * request with pauses) then finds them kept alive, instead of paying for each a new HBONE stream, the
 * destination agent's admission and its connection to the pod: measured in the L7 bench's lab, a
 * fresh client's first requests took 25-38 ms at 500/s, and the stall made it open up to 32 connections,
 * each with an upstream of its own; with the upstream kept, 14-16 ms, as on the direct path. The
 * figure is ztunnel's for an unused pooled HBONE connection (Envoy keeps upstream HTTP connections 1 h).
 */
export const UPSTREAM_LINGER_MS = 5 * 60_000;

/** A captured connection, once the outbound listener knows its source pod and that it speaks HTTP. */
export interface CapturedHttpConnection {
  readonly socket: Socket;
  readonly source: Workload;
  readonly sourceIp: string;
  readonly sourcePort: number;
  /** What the client dialled. */
  readonly originalDst: CapturedAddress;
  readonly destination: HttpDestination;
  /** Opens the connection to an endpoint for this source pod (HBONE, same node, or plain TCP). */
  readonly openUpstream: OpenUpstream;
}

interface ConnectionContext {
  readonly captured: CapturedHttpConnection;
  readonly upstream: UpstreamConnections;
}

/**
 * The upstream connections of one source pod (its identity and address) towards one captured
 * destination, shared by that pod's client connections while any of them is open, and kept for
 * UPSTREAM_LINGER_MS after the last one. A client that opens a connection per request then finds its
 * endpoints' connections (an HBONE stream each, ~1.4 ms to open across nodes) already there instead of
 * opening them again.
 */
interface SharedUpstream {
  readonly key: string;
  /** The source pod: a pod gone from the mesh takes its kept connections (its identity) with it. */
  readonly source: Pick<Workload, 'key' | 'uid'>;
  readonly connections: UpstreamConnections;
  clients: number;
  /** Set while no client connection uses them: closes them at the end of the linger. */
  linger?: NodeJS.Timeout;
}

export class OutboundHttpProxy {
  readonly clusters: UpstreamClusters;
  readonly health: ClusterHealthChecks | undefined;
  readonly #slots = new ConnectionSlots();
  readonly #random: Random;
  readonly #tracer: RequestTracer;
  readonly #h1: http.Server;
  readonly #h2: Http2Server;
  readonly #limits: HttpServerLimits;
  readonly #normalization: PathNormalization;
  readonly #contexts = new WeakMap<object, ConnectionContext>();
  readonly #upstreams = new Map<string, SharedUpstream>();
  #pendingH2: ConnectionContext | undefined;
  readonly #unsubscribe: () => void;
  /** Made once: every request's context carries it, rather than a closure of its own. */
  readonly #onComplete: RequestCompleteHook = (record) => this.#completed(record);

  constructor(private readonly options: OutboundHttpOptions) {
    this.#random = options.random ?? mathRandom;
    this.#tracer = options.tracer ?? RequestTracer.disabled();
    const clock = options.clock ?? systemClock;
    const checks = options.healthChecks;
    const health = checks
      ? new ClusterHealthChecks({ node: options.node, clock, probe: checks.probe, log: options.log, view: () => ({ snapshot: options.store.current, clusters: this.clusters.inUse() }), ...(checks.onTransition ? { onTransition: checks.onTransition } : {}) })
      : undefined;
    this.health = health;
    this.clusters = new UpstreamClusters({
      node: options.node,
      clock,
      random: this.#random,
      onOutlierEvent: (cluster, event) => options.log.info({ cluster, ...event }, `outlier detection: ${event.endpoint} ${event.kind}`),
      ...(health ? { isHealthy: (key: string) => health.isHealthy(key), onChange: () => health.changed() } : {}),
    });
    this.#unsubscribe = options.store.subscribe((next) => {
      this.clusters.retain(next);
      health?.changed();
      for (const shared of this.#upstreams.values()) {
        if (shared.clients === 0 && !this.#inMesh(shared.source, next)) this.#closeUpstream(shared);
      }
    });
    // One server of each kind for every connection: servers are fed sockets, they never listen.
    this.#limits = options.limits ?? DEFAULT_HTTP_SERVER_LIMITS;
    this.#normalization = options.pathNormalization ?? DEFAULT_PATH_NORMALIZATION;
    this.#h1 = http1Server(this.#limits, () => 'keep', (req, res) => this.#onHttp1(req, res));
    this.#h2 = h2cServer(this.#limits, (req, res) => this.#onHttp2(req, res));
    this.#h2.on('session', (session: ServerHttp2Session) => {
      if (this.#pendingH2) this.#contexts.set(session, this.#pendingH2);
      session.on('error', () => undefined);
    });
  }

  /** Whether the captured destination speaks HTTP, so that this proxy should take the connection. */
  destinationOf(snapshot: MeshSnapshot, dst: CapturedAddress): HttpDestination | undefined {
    return httpDestinationOf(snapshot, dst);
  }

  /** The weighted tcp[] route pick for a TCP port of a Service, or undefined when none applies. */
  tcpTarget(snapshot: MeshSnapshot, source: Workload, dst: CapturedAddress): TcpRouteTarget | undefined {
    return tcpRouteTarget(snapshot, this.clusters, source, dst, this.#random);
  }

  /** Serves the connection's requests; resolves when the client connection has closed. */
  async handle(captured: CapturedHttpConnection): Promise<void> {
    const { socket } = captured;
    const shared = this.#shareUpstream(captured);
    const context: ConnectionContext = { captured, upstream: shared.connections };
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.setNoDelay(true);
    const sniffing = firstBytesDeadline(socket, this.#limits.headersTimeoutMs);
    const sniffed = await sniffHttpVersion(socket);
    sniffing();
    if (sniffed?.version === 'HTTP/2') {
      this.#pendingH2 = context;
      this.#h2.emit('connection', new ReplayedSocket(sniffed.first, socket));
      this.#pendingH2 = undefined;
    } else if (sniffed) {
      this.#contexts.set(socket, context);
      socket.unshift(sniffed.first);
      this.#h1.emit('connection', socket);
      socket.resume();
    }
    await closed;
    this.#releaseUpstream(shared);
  }

  close(): void {
    this.#unsubscribe();
    for (const shared of this.#upstreams.values()) this.#closeUpstream(shared);
    this.health?.stop();
    this.clusters.close();
    this.#h1.close();
    this.#h2.close();
  }

  /**
   * The upstream connections this client connection uses. They carry the source pod's identity and
   * address, so only the same pod's connections to the same destination share them, and the opener of
   * the first one opens for all (it differs from the others' only in the client's port).
   */
  #shareUpstream(captured: CapturedHttpConnection): SharedUpstream {
    const { originalDst } = captured;
    const key = `${captured.source.key} ${captured.source.uid} ${captured.source.identity} ${captured.sourceIp} ${originalDst.ip}:${originalDst.port}`;
    let shared = this.#upstreams.get(key);
    if (!shared) {
      const source = { key: captured.source.key, uid: captured.source.uid };
      shared = { key, source, connections: new UpstreamConnections(captured.openUpstream, this.#slots), clients: 0 };
      this.#upstreams.set(key, shared);
    }
    clearTimeout(shared.linger);
    shared.linger = undefined;
    shared.clients++;
    return shared;
  }

  /** A client connection closed: after the last one, the upstream connections stay for the linger. */
  #releaseUpstream(shared: SharedUpstream): void {
    if (--shared.clients > 0 || this.#upstreams.get(shared.key) !== shared) return;
    if (!this.#inMesh(shared.source, this.options.store.current)) return this.#closeUpstream(shared);
    shared.linger = setTimeout(() => this.#closeUpstream(shared), this.options.upstreamLingerMs ?? UPSTREAM_LINGER_MS);
    // Kept connections alone never keep the agent alive.
    shared.linger.unref();
  }

  /** Whether the pod is still the one the connections were opened for (they carry its identity). */
  #inMesh(source: SharedUpstream['source'], snapshot: MeshSnapshot | undefined): boolean {
    return snapshot?.workloads.get(source.key)?.uid === source.uid;
  }

  #closeUpstream(shared: SharedUpstream): void {
    clearTimeout(shared.linger);
    this.#upstreams.delete(shared.key);
    shared.connections.close();
  }

  #onHttp1(req: IncomingMessage, res: ServerResponse): void {
    this.#serve(this.#contexts.get(req.socket), http1Downstream(req, res, this.#normalization));
  }

  #onHttp2(req: Http2ServerRequest, res: Http2ServerResponse): void {
    this.#serve(this.#contexts.get(req.stream.session as object), http2Downstream(req, res, this.#normalization));
  }

  #serve(context: ConnectionContext | undefined, d: DownstreamRequest): void {
    const snapshot = this.options.store.current;
    if (!context || !snapshot) {
      sendLocalReply(d, { status: 503, body: 'no configuration loaded yet' }, isGrpc(d.headers));
      return;
    }
    const { captured } = context;
    // A keep-alive connection outlives snapshots: each request is routed on the one in force now.
    const destination = httpDestinationOf(snapshot, captured.originalDst) ?? captured.destination;
    const ctx: ForwardContext = {
      snapshot,
      source: snapshot.workloads.get(captured.source.key) ?? captured.source,
      sourceIp: captured.sourceIp,
      sourcePort: captured.sourcePort,
      destination,
      node: this.options.node,
      upstream: context.upstream,
      clusters: this.clusters,
      random: this.#random,
      onComplete: this.#onComplete,
      tracer: this.#tracer,
      pathNormalization: this.#normalization,
    };
    forwardRequest(ctx, d).catch((err: Error) => {
      this.options.log.error({ err: err.message, path: d.path }, 'HTTP request failed in the proxy');
      if (!d.headersSent()) sendLocalReply(d, { status: 500, body: 'internal proxy error' }, isGrpc(d.headers));
      else d.response.destroy();
    });
  }

  #completed(r: CompletedRequest): void {
    try {
      this.options.onRequestComplete?.(r);
    } catch (err) {
      this.options.log.warn({ err: (err as Error).message }, 'request telemetry hook failed');
    }
  }
}

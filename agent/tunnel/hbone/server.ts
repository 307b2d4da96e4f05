// The inbound HBONE server (port 15008) on the native engine: TLS 1.3 and HTTP/2 run in the engine's
// data threads; this side chooses the certificate by the address the client dialled (the pod IP:
// Istio clients send no SNI), judges the client's verified chain, and hands every CONNECT to the same
// handler the agent always used, answering with the pod's socket (whose bytes the engine then moves).

import { type AddressInfo, type Server as NetServer, type Socket, createServer as createNetServer } from 'node:net';
import type { Duplex } from 'node:stream';
import { checkTrustDomain, verifyPeerChain } from '../../identity/peer-verification.js';
import { trustDomainOf } from '../../identity/spiffe.js';
import type { WorkloadCertificate } from '../../identity/workload-certificate.js';
import type { SpiffeId } from '../../state/model.js';
import type { ConnectionOutcome, ResponseFlag } from '../../telemetry/connections.js';
import type { Logger } from '../../telemetry/log.js';
import type { TlsContext } from '../engine/engine.js';
import type { ConnId, EngineEvent, StreamEndCause, StreamId } from '../engine/events.js';
import type { EngineResult } from '../engine/native.js';
import { handOverFd } from '../kernel-relay.js';
import { relay } from '../relay.js';
import { tuneRelaySocket } from '../socket-options.js';
import { type ConnectRequestHeaders, type HboneAuthority, type ServiceAuthority, canonicalIp, formatAuthority, readConnectRequest } from './connect-headers.js';
import { EngineHost, engineContext, handOverSocket, pairedSocket } from './engine-host.js';
import { messageOf } from './errors.js';
import type { HboneServerEvent } from './events.js';
import { HBONE_PORT, type HboneTuning } from './settings.js';
import { type CertificateSource, IdentityTlsCache } from './tls-contexts.js';

export interface SocketAddress {
  readonly ip: string;
  readonly port: number;
}

/** One CONNECT stream that passed the transport's checks, for the handler to decide on. */
export interface HboneInboundRequest {
  /** The client's SPIFFE id, from its verified certificate. */
  readonly peerIdentity: SpiffeId;
  /** The TCP peer: the client pod's IP when the sending node keeps it, else that node's. */
  readonly peerAddress: SocketAddress;
  /** The address the client dialled: the destination pod's IP and 15008. */
  readonly localAddress: SocketAddress;
  /** The identity whose certificate this connection presented. */
  readonly localIdentity: SpiffeId;
  /** The target; its IP equals localAddress.ip, unless resolveService chose it for a Service. */
  readonly authority: HboneAuthority;
  /** The Service the CONNECT named instead of an address (double HBONE's inner tunnel), resolved into `authority`. */
  readonly service?: ServiceAuthority;
  readonly headers: ConnectRequestHeaders;
  /** Aborted when the client gives up on the stream while the handler still works. */
  readonly signal: AbortSignal;
}

/**
 * What a handler's decision reports to (agent/tunnel/connection-flow.ts): `open` at the 200 with how to
 * cut the tunnel, `finish` at its end with the bytes the engine moved, `fail` when it was never answered.
 */
export interface TunnelFlow {
  open(close: (reason: string) => void): void;
  finish(outcome: ConnectionOutcome): void;
  fail(flag: ResponseFlag, reason: string): void;
}

/**
 * `connected`: the upstream socket must allow half-open (`allowHalfOpen: true`) so that a FIN from the
 * workload ends only the response direction; `flow`, when given, is told of the tunnel's 200 and its
 * end. `refused`: 401 for a policy denial, 503 for an unknown workload or a failed connect, as ztunnel.
 */
export type HboneInboundDecision =
  | { readonly kind: 'connected'; readonly upstream: Duplex; readonly flow?: TunnelFlow }
  | { readonly kind: 'refused'; readonly status: 400 | 401 | 503; readonly reason: string };

export type HboneConnectHandler = (request: HboneInboundRequest) => Promise<HboneInboundDecision>;

export interface HboneServerOptions {
  /** The agent's engine; without one the server starts its own (with `tuning`) and stops it on close(). */
  readonly host?: EngineHost;
  readonly tuning?: Partial<HboneTuning>;
  readonly certificates: CertificateSource;
  /** The identity of the workload at `ip` on this node, whose certificate a connection to it presents. */
  readonly identityForAddress: (ip: string) => SpiffeId | undefined;
  readonly handler: HboneConnectHandler;
  /**
   * Where a CONNECT that names `hostname:port` goes, becoming the request's `authority`: on a node, the
   * pod dialled at its target port for that Service port (the inner tunnel of double HBONE, as ztunnel's
   * find_inbound_upstream); on an east-west gateway, the gateway itself (its handler routes the
   * Service after authorizing the client). A string says why there is none (answered 503). Without it
   * such a CONNECT is refused with 400.
   */
  readonly resolveService?: (service: ServiceAuthority, localIp: string) => HboneAuthority | string;
  readonly log?: Logger;
  readonly onEvent?: (event: HboneServerEvent) => void;
}

/** A CONNECT this server accepts: where it goes, and the Service it named when it named one; or why not. */
type ConnectTarget =
  | { readonly ok: true; readonly authority: HboneAuthority; readonly service?: ServiceAuthority; readonly headers: ConnectRequestHeaders }
  | { readonly ok: false; readonly status: 400 | 503; readonly reason: string };

/** A connection from its handover to its end. */
interface ServerConnection {
  readonly peerAddress: SocketAddress;
  readonly localAddress: SocketAddress;
  readonly certificate: WorkloadCertificate;
  peerIdentity?: SpiffeId;
  /** Why this side refused the peer, reported when the connection ends. */
  refusal?: string;
  readonly streams: Map<StreamId, ServerStream>;
}

/** One CONNECT: `request` once it reached the handler; `upstream` once it was answered 200. */
interface ServerStream {
  readonly aborted: AbortController;
  request?: HboneInboundRequest;
  upstream?: Duplex;
  flow?: TunnelFlow;
  started?: number;
  /** Answered 200 and not ended yet. */
  open?: boolean;
}

export class HboneServer {
  readonly #options: HboneServerOptions;
  readonly #host: EngineHost;
  readonly #ownsHost: boolean;
  readonly #contexts: IdentityTlsCache<TlsContext>;
  readonly #connections = new Map<ConnId, ServerConnection>();
  readonly #listeners: NetServer[] = [];
  #closed = false;

  constructor(options: HboneServerOptions) {
    this.#options = options;
    this.#ownsHost = options.host === undefined;
    this.#host = options.host ?? EngineHost.start(options.tuning);
    this.#contexts = new IdentityTlsCache(options.certificates, engineContext);
  }

  /** Listens on `host:port` (default 15008 on every address); may be called for several addresses. */
  listen(port: number = HBONE_PORT, host = '0.0.0.0'): Promise<AddressInfo> {
    // Paused: the engine reads the ClientHello, never libuv.
    const listener = createNetServer({ pauseOnConnect: true }, (socket) => this.handleConnection(socket));
    this.#listeners.push(listener);
    return new Promise((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(port, host, () => {
        listener.off('error', reject);
        resolve(listener.address() as AddressInfo);
      });
    });
  }

  /** Serves one accepted TCP connection (from listen(), or the agent's transparent listener). */
  handleConnection(socket: Socket): void {
    socket.on('error', () => socket.destroy());
    const localAddress = { ip: canonicalIp(socket.localAddress ?? ''), port: socket.localPort ?? 0 };
    const peerAddress = { ip: canonicalIp(socket.remoteAddress ?? ''), port: socket.remotePort ?? 0 };
    const peer = `${peerAddress.ip}:${peerAddress.port}`;
    if (this.#closed) return void socket.destroy();
    const identity = this.#options.identityForAddress(localAddress.ip);
    if (!identity) return this.#refuse(socket, peer, localAddress.ip, `no workload on this node has the address ${localAddress.ip}`);
    void this.#contexts.get(identity).then((tls) => {
      if (!tls.ok) return this.#refuse(socket, peer, localAddress.ip, tls.error.message);
      if (socket.destroyed || this.#closed) return void socket.destroy();
      const served = handOverSocket(socket, (fd) => this.#host.engine.serve(fd, tls.value.value));
      if (!served?.ok) return this.#refuse(socket, peer, localAddress.ip, served ? served.error.message : 'the connection closed before the engine took it');
      const conn = served.value;
      this.#connections.set(conn, { peerAddress, localAddress, certificate: tls.value.certificate, streams: new Map() });
      this.#host.own(conn, (event) => this.#onEvent(conn, event));
    });
  }

  /** Open connections. */
  get sessionCount(): number {
    return this.#connections.size;
  }

  /** Stops accepting; connections still open after `graceMs` are closed (their streams reset). */
  async close(graceMs = 5000): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#listeners.map((listener) => new Promise<void>((resolve) => listener.close(() => resolve()))));
    const deadline = Date.now() + graceMs;
    while (this.#connections.size > 0 && Date.now() < deadline) {
      if ([...this.#connections.values()].every((c) => c.streams.size === 0)) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    for (const conn of this.#connections.keys()) this.#host.engine.closeConn(conn);
    this.#contexts.close();
    if (this.#ownsHost) this.#host.close();
  }

  #onEvent(conn: ConnId, event: Exclude<EngineEvent, { type: 'drained' }>): void {
    const connection = this.#connections.get(conn);
    if (!connection) return;
    switch (event.type) {
      case 'peer':
        return this.#judgePeer(conn, connection, event.chainDer);
      case 'connect':
        return void this.#onConnect(conn, connection, event.stream, event.authority, event.headers);
      case 'streamEnd':
        return this.#onStreamEnd(connection, event.stream, event.bytesIn, event.bytesOut, event.cause, event.code);
      case 'connEnd': {
        this.#connections.delete(conn);
        if (connection.peerIdentity) {
          this.#emit({ type: 'session-closed', peerIdentity: connection.peerIdentity, peer: formatPeer(connection), reason: event.message });
        } else {
          const reason = connection.refusal ?? event.message;
          this.#options.log?.warn({ peer: formatPeer(connection), local: connection.localAddress.ip }, `refused HBONE connection from ${formatPeer(connection)} to ${connection.localAddress.ip}: ${reason}`);
          this.#emit({ type: 'connection-refused', peer: formatPeer(connection), local: connection.localAddress.ip, reason });
        }
        return;
      }
      case 'limit':
        this.#options.log?.warn({ peer: event.peer, limit: event.limit, cap: event.cap }, `HBONE peer ${event.peer} reached ${event.limit} (${event.cap}): ${event.hint}`);
        return;
      default:
        return;
    }
  }

  /** The engine verified the chain against the roots; the SPIFFE half and the trust domain are checked here. */
  #judgePeer(conn: ConnId, connection: ServerConnection, chainDer: readonly Buffer[]): void {
    const verified = verifyPeerChain(chainDer, connection.certificate.rootsPem);
    const peer = verified.ok ? checkTrustDomain(verified.value, trustDomainOf(connection.certificate.identity)) : verified;
    if (!peer.ok) {
      connection.refusal = peer.error.message;
      return this.#host.engine.acceptPeer(conn, false);
    }
    connection.peerIdentity = peer.value.identity;
    this.#host.engine.acceptPeer(conn, true);
    this.#emit({ type: 'session-opened', peerIdentity: peer.value.identity, peer: formatPeer(connection), local: connection.localAddress.ip });
  }

  async #onConnect(conn: ConnId, connection: ServerConnection, stream: StreamId, authority: string, headers: Readonly<Record<string, string>>): Promise<void> {
    const { engine } = this.#host;
    const peerIdentity = connection.peerIdentity;
    if (!peerIdentity) return void engine.answer(conn, stream, { status: 400 });
    const check = this.#readConnect({ ...headers, ':method': 'CONNECT', ':authority': authority }, connection.localAddress.ip);
    if (!check.ok) return this.#refuseStream(conn, stream, peerIdentity, check.status, check.reason);
    const entry: ServerStream = { aborted: new AbortController() };
    connection.streams.set(stream, entry);
    const request: HboneInboundRequest = {
      peerIdentity,
      peerAddress: connection.peerAddress,
      localAddress: connection.localAddress,
      localIdentity: connection.certificate.identity,
      authority: check.authority,
      ...(check.service ? { service: check.service } : {}),
      headers: check.headers,
      signal: entry.aborted.signal,
    };
    entry.request = request;
    let decision: HboneInboundDecision;
    try {
      decision = await this.#options.handler(request);
    } catch (err) {
      decision = { kind: 'refused', status: 503, reason: `the inbound handler failed: ${messageOf(err)}` };
    }
    if (decision.kind === 'refused') {
      connection.streams.delete(stream);
      return this.#refuseStream(conn, stream, peerIdentity, decision.status, decision.reason);
    }
    // The client reset the stream while the handler worked: the engine already ended it.
    if (entry.aborted.signal.aborted) {
      decision.flow?.fail('CONNECT', 'the client reset the stream before it was answered');
      return void decision.upstream.destroy();
    }
    entry.flow = decision.flow;
    this.#answerConnected(conn, stream, entry, decision.upstream);
  }

  /** readConnectRequest, with a Service authority resolved to where it goes when this server resolves them. */
  #readConnect(headers: Readonly<Record<string, string>>, localIp: string): ConnectTarget {
    const resolve = this.#options.resolveService;
    const check = resolve ? readConnectRequest(headers, localIp, true) : readConnectRequest(headers, localIp);
    if (!check.ok) return check;
    const { authority } = check;
    if (!('hostname' in authority)) return { ok: true, authority, headers: check.headers };
    const resolved = resolve!(authority, localIp);
    if (typeof resolved === 'string') return { ok: false, status: 503, reason: `${formatAuthority(authority)} on ${localIp}: ${resolved}` };
    return { ok: true, authority: resolved, service: authority, headers: check.headers };
  }

  /**
   * 200 with the upstream's bytes moved by the engine: a plain TCP socket is handed over as it is; any
   * other Duplex (the inbound HTTP proxy's) is joined to the engine through a socket pair.
   */
  #answerConnected(conn: ConnId, stream: StreamId, entry: ServerStream, upstream: Duplex): void {
    const { engine } = this.#host;
    entry.upstream = upstream;
    entry.started = Date.now();
    // The pod's TCP socket, or the L7 proxy's end of its socket pair: either goes to the engine as it is.
    const direct = handOverFd(upstream) !== undefined;
    // handOverFd found a plain socket with nothing read ahead or left to write. No Nagle delay and
    // keepalive first, as on the client side (outbound-open.ts): the engine's dup keeps them.
    if (direct) tuneRelaySocket(upstream as Socket);
    const answered = direct ? handOverSocket(upstream as Socket, (fd) => engine.answer(conn, stream, { status: 200, fd })) : this.#answerThroughPair(conn, stream, upstream);
    if (!answered?.ok) {
      upstream.destroy();
      entry.flow?.fail('CONNECT', `the engine could not answer the CONNECT: ${answered ? answered.error.message : 'the workload connection closed first'}`);
      return void engine.resetStream(conn, stream);
    }
    entry.open = true;
    // A cut (a policy change, the end of a drain): Node's socket of a direct upstream is closed
    // already, so the engine's stream is reset; through a pair, destroying the upstream ends the pair,
    // and the engine sees its fd close.
    entry.flow?.open((reason) => {
      if (direct && entry.open) engine.resetStream(conn, stream);
      upstream.destroy(new Error(`closed by policy: ${reason}`));
    });
    this.#emit({ type: 'tunnel-opened', request: entry.request! });
  }

  #answerThroughPair(conn: ConnId, stream: StreamId, upstream: Duplex): EngineResult<void> {
    const { socket, result } = pairedSocket((fd) => this.#host.engine.answer(conn, stream, { status: 200, fd }));
    if (result.ok) void relay(socket, upstream);
    else socket.destroy();
    return result;
  }

  #onStreamEnd(connection: ServerConnection, stream: StreamId, bytesIn: number, bytesOut: number, cause: StreamEndCause, code: number): void {
    const entry = connection.streams.get(stream);
    if (!entry) return;
    connection.streams.delete(stream);
    entry.aborted.abort();
    entry.open = false;
    if (!entry.upstream || !entry.request) return;
    // The engine's copy of the upstream is closed; Node's own handle (if any) goes now.
    entry.upstream.destroy();
    const error = streamError(cause, code);
    entry.flow?.finish({ bytesSent: bytesIn, bytesReceived: bytesOut, ...(error ? { error } : {}) });
    this.#emit({
      type: 'tunnel-closed',
      request: entry.request,
      bytesIn,
      bytesOut,
      durationMs: Date.now() - (entry.started ?? Date.now()),
      ...(error ? { error: `${error.side}: ${error.message}` } : {}),
    });
  }

  #refuseStream(conn: ConnId, stream: StreamId, peerIdentity: SpiffeId, status: 400 | 401 | 503, reason: string): void {
    this.#options.log?.info({ peerIdentity, status }, `refused HBONE CONNECT from ${peerIdentity}: ${reason}`);
    this.#emit({ type: 'stream-refused', peerIdentity, status, reason });
    this.#host.engine.answer(conn, stream, { status });
  }

  #refuse(socket: Socket, peer: string, local: string, reason: string): void {
    this.#options.log?.warn({ peer, local }, `refused HBONE connection from ${peer} to ${local}: ${reason}`);
    this.#emit({ type: 'connection-refused', peer, local, reason });
    socket.destroy();
  }

  #emit(event: HboneServerEvent): void {
    try {
      this.#options.onEvent?.(event);
    } catch (err) {
      this.#options.log?.error({ err }, `an HBONE server event listener failed: ${messageOf(err)}`);
    }
  }
}

function formatPeer(connection: ServerConnection): string {
  return `${connection.peerAddress.ip}:${connection.peerAddress.port}`;
}

/** Which side failed and how, as the relay reports it, for telemetry; undefined for a clean end. */
function streamError(cause: StreamEndCause, code: number): { side: string; message: string } | undefined {
  switch (cause) {
    case 'done':
      return undefined;
    case 'peer-reset':
      return { side: 'downstream', message: `the client reset the stream (HTTP/2 error ${code})` };
    case 'fd-error':
      return { side: 'upstream', message: `the workload's connection failed (errno ${code})` };
    case 'conn-closed':
      return { side: 'downstream', message: 'the HBONE connection ended' };
    default:
      return { side: 'tunnel', message: cause };
  }
}

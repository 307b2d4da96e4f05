// The inbound HBONE server (port 15008): mutual TLS 1.3 presenting the certificate of the workload the
// client dialled (chosen from the accepted socket's local address, the pod IP: Istio clients send no
// SNI), HTTP/2, and per stream a CONNECT that a caller's handler turns into a relayed TCP connection.

import type { IncomingHttpHeaders, ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import { createServer as createH2Server } from 'node:http2';
import { type AddressInfo, type Server as NetServer, type Socket, createServer as createNetServer } from 'node:net';
import type { Duplex } from 'node:stream';
import { type Server as TlsServer, type TLSSocket, createServer as createTlsServer } from 'node:tls';
import { verifyClientPeer } from '../../identity/peer-verification.js';
import { trustDomainOf } from '../../identity/spiffe.js';
import type { WorkloadCertificate } from '../../identity/workload-certificate.js';
import type { SpiffeId } from '../../state/model.js';
import type { Logger } from '../../telemetry/log.js';
import { relay } from '../relay.js';
import { type ConnectRequestHeaders, type HboneAuthority, canonicalIp, readConnectRequest } from './connect-headers.js';
import { messageOf } from './errors.js';
import type { HboneServerEvent } from './events.js';
import { keepSessionAlive } from './keepalive.js';
import { HBONE_PORT, HBONE_TLS, type HboneTuning, resolveTuning, serverSettings } from './settings.js';
import { type CertificateSource, IdentityTlsCache, secureContextOptions } from './tls-contexts.js';
import { watchSessionProgress } from './watchdog.js';

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
  /** The target; its IP equals localAddress.ip. */
  readonly authority: HboneAuthority;
  readonly headers: ConnectRequestHeaders;
  /** Aborted when the client gives up on the stream while the handler still works. */
  readonly signal: AbortSignal;
}

/**
 * `connected`: the upstream socket must allow half-open (`allowHalfOpen: true`) so that a FIN from the
 * workload ends only the response direction. `refused`: 401 for a policy denial, 503 for an unknown
 * workload or a failed connect, as ztunnel.
 */
export type HboneInboundDecision =
  | { readonly kind: 'connected'; readonly upstream: Duplex }
  | { readonly kind: 'refused'; readonly status: 400 | 401 | 503; readonly reason: string };

export type HboneConnectHandler = (request: HboneInboundRequest) => Promise<HboneInboundDecision>;

export interface HboneServerOptions {
  readonly certificates: CertificateSource;
  /** The identity of the workload at `ip` on this node, whose certificate a connection to it presents. */
  readonly identityForAddress: (ip: string) => SpiffeId | undefined;
  readonly handler: HboneConnectHandler;
  readonly tuning?: Partial<HboneTuning>;
  readonly log?: Logger;
  readonly onEvent?: (event: HboneServerEvent) => void;
}

/** What a session knows about its connection; set between the TLS check and node:http2's 'session'. */
interface ConnectionContext {
  readonly peerIdentity: SpiffeId;
  readonly peerAddress: SocketAddress;
  readonly localAddress: SocketAddress;
  readonly localIdentity: SpiffeId;
}

interface SessionEntry {
  readonly context: ConnectionContext;
  readonly streams: Set<ServerHttp2Stream>;
  /** The first reason the session ended for, for its session-closed event. */
  reason?: string;
}

export class HboneServer {
  readonly #options: HboneServerOptions;
  readonly #tuning: HboneTuning;
  readonly #h2: ReturnType<typeof createH2Server>;
  readonly #tls: IdentityTlsCache<TlsServer>;
  readonly #sessions = new Map<ServerHttp2Session, SessionEntry>();
  readonly #listeners: NetServer[] = [];
  /** Every accepted TCP socket until it closes, so that close() can cut what a stuck session holds. */
  readonly #sockets = new Set<Socket>();
  #pending: ConnectionContext | undefined;
  #closed = false;

  constructor(options: HboneServerOptions) {
    this.#options = options;
    this.#tuning = resolveTuning(options.tuning);
    this.#h2 = createH2Server({ settings: serverSettings(this.#tuning), maxSessionMemory: this.#tuning.maxSessionMemoryMb });
    this.#h2.on('session', (session) => this.#onSession(session));
    this.#tls = new IdentityTlsCache(options.certificates, (certificate) => this.#tlsServerFor(certificate));
  }

  /**
   * Listens on `host:port` (default 15008 on every address); may be called for several addresses (one
   * per pod IP). Every accepted socket goes through handleConnection.
   */
  listen(port: number = HBONE_PORT, host = '0.0.0.0'): Promise<AddressInfo> {
    // Paused until TLS takes the socket over: its first bytes must wait for the certificate lookup.
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

  /** Serves one accepted TCP connection (from listen(), or a socket the capture code hands over). */
  handleConnection(socket: Socket): void {
    socket.setNoDelay(true);
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    // Until TLS owns the socket, a reset only ends this connection.
    socket.on('error', () => socket.destroy());
    const local = canonicalIp(socket.localAddress ?? '');
    const peer = `${canonicalIp(socket.remoteAddress ?? '')}:${socket.remotePort ?? 0}`;
    if (this.#closed) return void socket.destroy();
    const identity = this.#options.identityForAddress(local);
    if (!identity) return this.#refuse(socket, peer, local, `no workload on this node has the address ${local}`);
    void this.#tls.get(identity).then((tls) => {
      if (!tls.ok) return this.#refuse(socket, peer, local, tls.error.message);
      if (socket.destroyed || this.#closed) return void socket.destroy();
      tls.value.value.emit('connection', socket);
    });
  }

  /** Open HTTP/2 sessions. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Stops accepting, sends GOAWAY on every session, and destroys what is still open after `graceMs`. */
  async close(graceMs = 5000): Promise<void> {
    this.#closed = true;
    const stopped = Promise.all(this.#listeners.map((listener) => new Promise<void>((resolve) => listener.close(() => resolve()))));
    const sessions = [...this.#sessions.keys()];
    const drained = Promise.all(sessions.map((session) => new Promise<void>((resolve) => (session.closed ? resolve() : session.close(resolve)))));
    const timer = setTimeout(() => {
      sessions.forEach((session) => session.destroy());
      this.#sockets.forEach((socket) => socket.destroy());
    }, graceMs);
    await Promise.all([stopped, drained]);
    clearTimeout(timer);
    this.#tls.close();
  }

  #tlsServerFor(certificate: WorkloadCertificate): TlsServer {
    // Never listens: it only runs handshakes for sockets handed to it, with this identity's certificate.
    // rejectUnauthorized is off so that a refused client reaches verifyClientPeer and is logged with why.
    const server = createTlsServer({
      ...secureContextOptions(certificate),
      requestCert: true,
      rejectUnauthorized: false,
      ALPNProtocols: [...HBONE_TLS.alpn],
      handshakeTimeout: this.#tuning.connectTimeoutMs,
    });
    server.on('secureConnection', (socket: TLSSocket) => this.#onSecure(socket, certificate));
    server.on('tlsClientError', (err, socket: TLSSocket) =>
      this.#refuse(socket, `${canonicalIp(socket.remoteAddress ?? '')}:${socket.remotePort ?? 0}`, canonicalIp(socket.localAddress ?? ''), `TLS handshake failed: ${err.message}`),
    );
    return server;
  }

  #onSecure(socket: TLSSocket, certificate: WorkloadCertificate): void {
    const peerAddress = { ip: canonicalIp(socket.remoteAddress ?? ''), port: socket.remotePort ?? 0 };
    const localAddress = { ip: canonicalIp(socket.localAddress ?? ''), port: socket.localPort ?? 0 };
    const where = [`${peerAddress.ip}:${peerAddress.port}`, localAddress.ip] as const;
    // node reports a missing client certificate as UNABLE_TO_GET_ISSUER_CERT; say what happened.
    if (Object.keys(socket.getPeerCertificate()).length === 0) return this.#refuse(socket, ...where, 'the client sent no certificate');
    const peer = verifyClientPeer(socket, certificate.rootsPem, trustDomainOf(certificate.identity));
    if (!peer.ok) return this.#refuse(socket, ...where, peer.error.message);
    if (socket.alpnProtocol !== 'h2') return this.#refuse(socket, ...where, 'the client did not offer ALPN h2');
    this.#pending = { peerIdentity: peer.value.identity, peerAddress, localAddress, localIdentity: certificate.identity };
    try {
      // node:http2 creates the session and emits 'session' synchronously inside this call.
      this.#h2.emit('connection', socket);
    } finally {
      this.#pending = undefined;
    }
  }

  #onSession(session: ServerHttp2Session): void {
    const context = this.#pending;
    if (!context) return void session.destroy();
    const entry: SessionEntry = { context, streams: new Set() };
    this.#sessions.set(session, entry);
    const peer = `${context.peerAddress.ip}:${context.peerAddress.port}`;
    const kill = (reason: string): void => {
      entry.reason ??= reason;
      this.#options.log?.warn({ peer, peerIdentity: context.peerIdentity }, `closing HBONE session from ${context.peerIdentity} (${peer}): ${reason}`);
      session.destroy();
    };
    session.setLocalWindowSize(this.#tuning.connectionWindowBytes);
    keepSessionAlive(session, { intervalMs: this.#tuning.pingIntervalMs, timeoutMs: this.#tuning.pingTimeoutMs }, kill);
    const pending = (): boolean => [...entry.streams].some((stream) => stream.writableLength > 0);
    watchSessionProgress(session, { stallTimeoutMs: this.#tuning.stallTimeoutMs, pending }, kill);
    session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      entry.streams.add(stream);
      stream.once('close', () => entry.streams.delete(stream));
      void this.#onStream(context, stream, headers);
    });
    session.on('goaway', (code) => (entry.reason ??= `the client sent GOAWAY (code ${code})`));
    session.on('error', (err) => (entry.reason ??= `session error: ${err.message}`));
    session.once('close', () => {
      this.#sessions.delete(session);
      this.#emit({ type: 'session-closed', peerIdentity: context.peerIdentity, peer, reason: entry.reason ?? 'closed' });
    });
    this.#options.log?.debug({ peer, peerIdentity: context.peerIdentity, local: context.localAddress.ip }, 'HBONE session opened');
    this.#emit({ type: 'session-opened', peerIdentity: context.peerIdentity, peer, local: context.localAddress.ip });
  }

  async #onStream(context: ConnectionContext, stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
    // A reset before the relay owns the stream must not become an uncaught 'error'.
    stream.on('error', () => stream.destroy());
    const check = readConnectRequest(headers, context.localAddress.ip);
    if (!check.ok) return this.#respondError(context, stream, check.status, check.reason);
    const aborted = new AbortController();
    stream.once('close', () => aborted.abort());
    // Rapid reset: a peer can send HEADERS and RST_STREAM in one write, hundreds at a time. The session
    // parses the whole read before this callback's turn ends, so waiting one turn lets the resets land:
    // a stream already gone never reaches the handler, and never costs the pod a connection.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (aborted.signal.aborted || stream.destroyed) return;
    const request: HboneInboundRequest = { ...context, authority: check.authority, headers: check.headers, signal: aborted.signal };
    let decision: HboneInboundDecision;
    try {
      decision = await this.#options.handler(request);
    } catch (err) {
      decision = { kind: 'refused', status: 503, reason: `the inbound handler failed: ${messageOf(err)}` };
    }
    if (decision.kind === 'refused') return this.#respondError(context, stream, decision.status, decision.reason);
    if (stream.destroyed || stream.closed) return void decision.upstream.destroy();
    stream.respond({ ':status': 200 });
    this.#emit({ type: 'tunnel-opened', request });
    const started = Date.now();
    const result = await relay(stream, decision.upstream);
    this.#emit({
      type: 'tunnel-closed',
      request,
      bytesIn: result.bytesSent,
      bytesOut: result.bytesReceived,
      durationMs: Date.now() - started,
      ...(result.error ? { error: `${result.error.side}: ${result.error.message}` } : {}),
    });
  }

  #respondError(context: ConnectionContext, stream: ServerHttp2Stream, status: number, reason: string): void {
    this.#options.log?.info({ peerIdentity: context.peerIdentity, peer: context.peerAddress.ip, status }, `refused HBONE CONNECT from ${context.peerIdentity}: ${reason}`);
    this.#emit({ type: 'stream-refused', peerIdentity: context.peerIdentity, status, reason });
    if (!stream.destroyed && !stream.headersSent) stream.respond({ ':status': status }, { endStream: true });
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

// The upstream side of one source pod's client connections to one destination: requests sent to
// endpoints with Node's own HTTP clients over the connections the caller opens (an HBONE stream, a
// transparent socket, plain TCP). HTTP/1.1 connections are kept alive per endpoint by an http.Agent
// whose createConnection opens that duplex; HTTP/2 (h2c prior knowledge) keeps one session per
// endpoint. Both live until the owner closes them (outbound-http.ts: when the pod's last client
// connection closes): upstream connections carry the source pod's identity and address, so they are
// never shared between pods.

import http, { type ClientRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import http2, { type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { Socket } from 'node:net';
import type { Duplex, Readable } from 'node:stream';
import type { ClientTLSSettings } from '../../config/istio-networking.js';
import type { MeshService, Workload } from '../../state/model.js';
import type { CircuitBreaker, PoolLease } from '../connection-pool.js';
import type { ConnectionSlots } from './connection-slots.js';
import { type HeaderMap, outgoingHeaders } from './headers.js';
import type { CapturedAddress } from './http-destination.js';
import type { RequestBody } from './request-body.js';
import { PEER_GOAWAY } from '../../tunnel/hbone/events.js';
import { originateTls } from './upstream-tls.js';

/** Opens the byte stream to one endpoint (the caller knows how: HBONE, same node, plain TCP), or says why not. */
export type OpenUpstream = (target: Pick<UpstreamTarget, 'workload' | 'address' | 'service'>) => Promise<Duplex | string>;

export interface UpstreamTarget {
  /** `ip:port`, the balancing key. */
  readonly key: string;
  readonly address: CapturedAddress;
  readonly workload?: Workload;
  /** The Service it was picked from: its subject_alt_names may answer for the workload's identity. */
  readonly service?: MeshService;
  /** The cluster's breaker: connections hold its slots; undefined for a pod dialled directly. */
  readonly breaker?: CircuitBreaker;
  readonly connectTimeoutMs: number;
  /** Originate TLS to `host` with these settings (a DestinationRule's tls for a host outside the mesh). */
  readonly tls?: { readonly settings: ClientTLSSettings; readonly host: string };
}

export interface UpstreamHead {
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  /** Without hop-by-hop headers and without host. */
  readonly headers: HeaderMap;
}

export type ExchangeResult =
  | {
      readonly kind: 'response';
      readonly status: number;
      readonly headers: IncomingHttpHeaders;
      readonly body: Readable;
      /** Trailers, once the body has ended (HTTP/2: gRPC's grpc-status lives there). */
      readonly trailers: () => IncomingHttpHeaders | undefined;
    }
  | { readonly kind: 'connect-failure'; readonly message: string }
  | { readonly kind: 'overflow'; readonly message: string }
  | { readonly kind: 'reset'; readonly beforeRequest: boolean; readonly message: string }
  | { readonly kind: 'refused-stream'; readonly message: string };

export interface Exchange {
  readonly result: Promise<ExchangeResult>;
  /** Abandons the attempt (timeout, retry, client gone): the upstream request is reset. */
  abort(): void;
}

interface TargetedArgs extends http.ClientRequestArgs {
  readonly ambitTarget: UpstreamTarget;
}

class ConnectFailure extends Error {
  constructor(
    message: string,
    readonly overflow: boolean,
  ) {
    super(message);
  }
}

/** What a kept-alive HTTP/1.1 connection remembers: its breaker slot and how many requests it served. */
interface ConnectionState {
  readonly lease?: PoolLease;
  readonly breaker?: CircuitBreaker;
  served: number;
  /** In the agent's free list, between requests. */
  idle: boolean;
  /** Its HBONE connection got GOAWAY (the destination agent drains): not kept after its current request. */
  goaway: boolean;
  /** The socket's bytesWritten when its current request took it: unchanged, nothing of the request went out. */
  writtenAtStart: number;
  readonly close: () => void;
}

/**
 * Methods a server may receive twice with the effect of once (RFC 9110 §9.2.2): a request on a kept
 * connection reset before any response is sent again only if it is one of these or none of it was written.
 */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

export class UpstreamConnections {
  readonly #agent: ShuttleAgent;
  readonly #sessions = new Map<string, Promise<ClientHttp2Session | ConnectFailure>>();
  readonly #abort = new AbortController();

  constructor(
    private readonly open: OpenUpstream,
    private readonly slots: ConnectionSlots,
  ) {
    this.#agent = new ShuttleAgent(this);
  }

  send(target: UpstreamTarget, head: UpstreamHead, body: RequestBody, protocol: 'h1' | 'h2'): Exchange {
    return protocol === 'h2' ? this.#sendH2(target, head, body) : this.#sendH1(target, head, body, true);
  }

  /** Closes every upstream connection (the downstream connections are gone). */
  close(): void {
    this.#abort.abort();
    this.#agent.destroy();
    for (const session of this.#sessions.values()) void session.then((s) => s instanceof ConnectFailure || s.destroy());
    this.#sessions.clear();
  }

  /** A new upstream connection to `target`, holding one of its cluster's connection slots. */
  async connect(target: UpstreamTarget, protocol: 'h1' | 'h2'): Promise<{ stream: Duplex; lease?: PoolLease } | ConnectFailure> {
    let lease: PoolLease | undefined;
    if (target.breaker) {
      const grant = await this.slots.acquire(target.breaker, this.#abort.signal);
      if (!grant.ok) return new ConnectFailure(grant.message, true);
      lease = grant.lease;
    }
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve(`connect to ${target.key} timed out after ${target.connectTimeoutMs} ms`), target.connectTimeoutMs);
    });
    // The TLS handshake is part of connecting: the connect timeout covers it, and its failure is a connect failure (UF).
    const tls = target.tls;
    const opening = tls ? this.open(target).then((s) => (typeof s === 'string' ? s : originateTls(s, tls.settings, tls.host, protocol))) : this.open(target);
    const opened = await Promise.race([opening, timedOut]);
    clearTimeout(timer);
    if (typeof opened === 'string') {
      lease?.release();
      // A connection that arrives after its timeout is not wanted any more.
      void opening.then((late) => typeof late === 'string' || late.destroy());
      return new ConnectFailure(opened, false);
    }
    if (lease) opened.once('close', () => lease.release());
    // A TCP connection to the pod (inbound, same node, plain) without Nagle: a request's head and body
    // or a pipelined next request must not wait for the previous segment's ACK. A socket-pair end to
    // the HBONE engine is a Unix socket, which has no Nagle, and the engine's TCP has TCP_NODELAY.
    if (opened instanceof Socket) opened.setNoDelay(true);
    return { stream: opened, ...(lease ? { lease } : {}) };
  }

  /** Keep-alive bookkeeping for the agent: whether a connection that just finished a request stays. */
  keep(socket: Duplex, state: ConnectionState): boolean {
    state.served++;
    if (state.goaway) return false;
    const breaker = state.breaker;
    if (breaker && (breaker.connectionExhausted(state.served) || this.slots.hasWaiters(breaker))) return false;
    if (breaker) this.slots.setIdle(breaker, state.close, true);
    return !socket.destroyed;
  }

  reuse(state: ConnectionState): void {
    if (state.breaker) this.slots.setIdle(state.breaker, state.close, false);
  }

  #sendH1(target: UpstreamTarget, head: UpstreamHead, body: RequestBody, mayRetryStale: boolean): Exchange {
    let request: ClientRequest | undefined;
    let aborted = false;
    const headers = outgoingHeaders(head.headers);
    headers.host = head.authority;
    const result = new Promise<ExchangeResult>((resolve) => {
      const args: TargetedArgs = {
        agent: this.#agent,
        host: target.address.ip,
        port: target.address.port,
        method: head.method,
        path: head.path,
        headers,
        setHost: false,
        ambitTarget: target,
      };
      const req = http.request(args);
      request = req;
      let responded = false;
      req.once('response', (res: IncomingMessage) => {
        responded = true;
        resolve({ kind: 'response', status: res.statusCode ?? 502, headers: res.headers, body: res, trailers: () => res.trailers });
      });
      req.once('error', (err: Error) => {
        if (responded) return;
        if (err instanceof ConnectFailure) return resolve(err.overflow ? { kind: 'overflow', message: err.message } : { kind: 'connect-failure', message: err.message });
        // A kept-alive connection the server closed meanwhile (an idle close racing this request, as a
        // draining agent's): sent once more on a new connection, as Envoy's reset-before-request retry,
        // when that cannot do twice what the server did once; never a POST whose bytes went out.
        const safe = IDEMPOTENT.has(head.method) || this.#agent.unwritten(req.socket);
        if (req.reusedSocket && mayRetryStale && !aborted && body.replayable && safe) {
          const again = this.#sendH1(target, head, body, false);
          request = undefined;
          void again.result.then(resolve);
          return;
        }
        resolve({ kind: 'reset', beforeRequest: false, message: err.message });
      });
      if (!body.attach(req)) resolve({ kind: 'reset', beforeRequest: true, message: 'the request body is too large to send again' });
    });
    return {
      result,
      abort: () => {
        aborted = true;
        body.detach();
        request?.destroy();
      },
    };
  }

  #sendH2(target: UpstreamTarget, head: UpstreamHead, body: RequestBody): Exchange {
    let stream: ClientHttp2Stream | undefined;
    let aborted = false;
    const result = (async (): Promise<ExchangeResult> => {
      const session = await this.#session(target);
      if (session instanceof ConnectFailure) return session.overflow ? { kind: 'overflow', message: session.message } : { kind: 'connect-failure', message: session.message };
      if (aborted) return { kind: 'reset', beforeRequest: true, message: 'abandoned' };
      return new Promise<ExchangeResult>((resolve) => {
        let s: ClientHttp2Stream;
        try {
          const headers = outgoingHeaders(head.headers);
          headers[':method'] = head.method;
          headers[':path'] = head.path;
          headers[':authority'] = head.authority;
          headers[':scheme'] = 'http';
          s = session.request(headers, { endStream: false });
        } catch (err) {
          return resolve({ kind: 'reset', beforeRequest: true, message: (err as Error).message });
        }
        stream = s;
        let trailers: IncomingHttpHeaders | undefined;
        s.once('trailers', (t) => (trailers = t));
        s.once('response', (headers) => {
          resolve({ kind: 'response', status: Number(headers[':status'] ?? 502), headers, body: s, trailers: () => trailers });
        });
        s.once('error', (err: Error & { code?: string }) => {
          if (s.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM) resolve({ kind: 'refused-stream', message: err.message });
          else resolve({ kind: 'reset', beforeRequest: false, message: err.message });
        });
        s.once('close', () => resolve({ kind: 'reset', beforeRequest: false, message: `stream closed with code ${s.rstCode}` }));
        if (!body.attach(s)) resolve({ kind: 'reset', beforeRequest: true, message: 'the request body is too large to send again' });
      });
    })();
    return {
      result,
      abort: () => {
        aborted = true;
        body.detach();
        stream?.close(http2.constants.NGHTTP2_CANCEL);
      },
    };
  }

  #session(target: UpstreamTarget): Promise<ClientHttp2Session | ConnectFailure> {
    const existing = this.#sessions.get(target.key);
    if (existing) return existing;
    const created = (async (): Promise<ClientHttp2Session | ConnectFailure> => {
      const connected = await this.connect(target, 'h2');
      if (connected instanceof ConnectFailure) {
        this.#sessions.delete(target.key);
        return connected;
      }
      const session = http2.connect(`http://${target.key}`, { createConnection: () => connected.stream, settings: { enablePush: false } });
      session.on('error', () => undefined);
      session.once('close', () => {
        if (this.#sessions.get(target.key) === created) this.#sessions.delete(target.key);
        connected.stream.destroy();
      });
      session.once('goaway', () => {
        if (this.#sessions.get(target.key) === created) this.#sessions.delete(target.key);
      });
      // Its HBONE connection's GOAWAY: new streams go to a new session, open ones finish on this one.
      connected.stream.once(PEER_GOAWAY, () => {
        if (this.#sessions.get(target.key) === created) this.#sessions.delete(target.key);
        session.close();
      });
      return session;
    })();
    this.#sessions.set(target.key, created);
    return created;
  }
}

/**
 * An HBONE stream is a Duplex, not a net.Socket: the Agent's keep-alive calls (setKeepAlive, ref, unref)
 * are no-ops for it, and its idle timeout is the stream's own setTimeout.
 */
function socketShims(stream: Duplex): void {
  const s = stream as Duplex & Record<string, unknown>;
  for (const name of ['setKeepAlive', 'ref', 'unref', 'setNoDelay']) if (typeof s[name] !== 'function') s[name] = () => stream;
  if (typeof s['setTimeout'] !== 'function') s['setTimeout'] = () => stream;
}

/**
 * Node's keep-alive Agent over the caller's duplexes, with the breaker's bookkeeping added when it
 * keeps or reuses a connection.
 */
class ShuttleAgent extends http.Agent {
  readonly #states = new WeakMap<Duplex, ConnectionState>();

  constructor(private readonly owner: UpstreamConnections) {
    // LIFO: the most recently used connection is the least likely to have been closed by the server.
    // Every connection a burst opened is kept (Node's default cap, 256 per endpoint; the breaker's
    // maxConnections bounds them too): a cap of 16 closed the rest as the burst ended, and the next
    // burst opened them again, each a new HBONE stream, the destination agent's admission and a pod
    // connection, just when the agents were busiest (the L7 bench's lab at 500/s with 32 client
    // connections: 2072 streams for 14,000 requests on a loaded machine).
    super({ keepAlive: true, scheduling: 'lifo' });
  }

  override createConnection(options: http.ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): undefined {
    const target = (options as TargetedArgs).ambitTarget;
    void this.owner.connect(target, 'h1').then((connected) => {
      if (connected instanceof Error) return callback?.(connected, undefined as unknown as Duplex);
      const { stream, lease } = connected;
      // ClientRequest corks a request's head (a latin1 string) with its first body chunk into one writev.
      // Into an HBONE stream (an Http2Stream) that arrived with the request line overwritten: measured in
      // the lab, a POST across nodes reached the destination as 16 bytes of garbage and then its headers.
      // Chunks written one at a time arrive intact; TCP sockets keep their writev.
      if (!(stream instanceof Socket)) (stream as { _writev?: unknown })._writev = undefined;
      // The opener's connections allow half-open (the L4 relay carries each FIN on its own), but an
      // HTTP/1.1 connection the server has half-closed carries no more responses: its FIN must close
      // ours, or the pool keeps it and the next request waits on a server that will never answer
      // (measured in the lab: Node's 5 s keep-alive timeout on the pod, then a request hung until the
      // client gave up).
      (stream as Duplex & { allowHalfOpen: boolean }).allowHalfOpen = false;
      socketShims(stream);
      const state: ConnectionState = { ...(lease ? { lease } : {}), ...(target.breaker ? { breaker: target.breaker } : {}), served: 0, idle: false, goaway: false, writtenAtStart: 0, close: () => stream.destroy() };
      this.#states.set(stream, state);
      // The destination agent drains: an idle connection closes now, a busy one after its response, so
      // that no request goes to an agent about to reset it; the next opens a stream on a new HBONE connection.
      stream.once(PEER_GOAWAY, () => {
        state.goaway = true;
        if (state.idle) stream.destroy();
      });
      if (lease) stream.once('close', () => target.breaker && this.owner.reuse(this.#states.get(stream)!));
      callback?.(null, stream);
    });
    return undefined;
  }

  override keepSocketAlive(socket: Duplex): boolean {
    const state = this.#states.get(socket);
    // Node's own rules first (it honours the server's Keep-Alive timeout hint), then the breaker's.
    const keep = (super.keepSocketAlive(socket) as unknown as boolean) !== false;
    const kept = keep && state !== undefined && this.owner.keep(socket, state);
    if (kept) state.idle = true;
    return kept;
  }

  override reuseSocket(socket: Duplex, request: ClientRequest): void {
    super.reuseSocket(socket, request);
    const state = this.#states.get(socket);
    if (!state) return;
    state.idle = false;
    state.writtenAtStart = socket instanceof Socket ? socket.bytesWritten : 0;
    this.owner.reuse(state);
  }

  /** Whether nothing of the request that took `socket` was written to it (a socket we cannot count: no). */
  unwritten(socket: Duplex | null): boolean {
    const state = socket ? this.#states.get(socket) : undefined;
    return state !== undefined && socket instanceof Socket && socket.bytesWritten === state.writtenAtStart;
  }
}

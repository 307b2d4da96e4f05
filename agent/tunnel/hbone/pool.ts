// The outbound HBONE pool on the native engine, keyed as ztunnel's proxy/pool.rs: (source identity,
// expected destination identities, destination, source IP), up to the engine's stream limit per
// connection before another is dialled; the engine closes a connection idle for 5 minutes. TCP is
// dialled here (from the source pod's address), TLS and HTTP/2 run in the engine's data threads.

import { constants as http2Codes } from 'node:http2';
import { type Socket, connect as connectTcp } from 'node:net';
import type { Duplex } from 'node:stream';
import { socketFd } from '../../redirect/bpf-binding.js';
import type { SpiffeId } from '../../state/model.js';
import type { Logger } from '../../telemetry/log.js';
import type { TlsContext } from '../engine/engine.js';
import type { ConnEndCause, ConnId, EngineEvent, StreamId } from '../engine/events.js';
import type { EngineResult } from '../engine/native.js';
import type { RelayResult } from '../relay.js';
import { formatAuthority, outboundConnectHeaders } from './connect-headers.js';
import { EngineHost, engineContext, handOverSocket, pairedSocket } from './engine-host.js';
import { HboneError, type HboneErrorReason, type HboneResult, fail, messageOf, ok } from './errors.js';
import { type HbonePoolEvent, PEER_GOAWAY } from './events.js';
import type { SocketAddress } from './server.js';
import { type HboneOpenRequest, poolKey } from './open-request.js';
import { HBONE_PORT, type HboneTuning } from './settings.js';
import { type CertificateSource, IdentityTlsCache } from './tls-contexts.js';

/**
 * Opens the TCP socket. The default binds to `localAddress` when given; the eBPF redirect code replaces
 * it with one that binds transparently (IP_TRANSPARENT) to a pod IP the node does not own.
 */
export type TcpDialer = (target: SocketAddress, localAddress: string | undefined) => Socket;

export const defaultTcpDialer: TcpDialer = (target, localAddress) =>
  connectTcp({ host: target.ip, port: target.port, noDelay: true, ...(localAddress ? { localAddress } : {}) });

export interface PooledConnectionStatus {
  readonly key: string;
  readonly target: string;
  readonly streams: number;
  readonly maxStreams: number;
  readonly ready: boolean;
}

/** A pod's connection carried by the engine: how it ended, and how to cut it (a policy change, a drain). */
export interface CarriedTunnel {
  readonly ended: Promise<RelayResult>;
  close(reason: string): void;
}

/** A stream after its 200: on `socket` (a pair's end) or on the caller's own fd. */
interface OpenedStream {
  readonly connection: PooledConnection;
  readonly conn: ConnId;
  readonly stream: StreamId;
  readonly socket?: Socket;
  /** A carried stream's end. */
  readonly ended?: Promise<RelayResult>;
}

export interface HbonePoolOptions {
  /** The agent's engine; without one the pool starts its own (with `tuning`) and stops it on close(). */
  readonly host?: EngineHost;
  readonly tuning?: Partial<HboneTuning>;
  /** Close a connection this long after its last stream ended (own engine only). Default: 5 min, ztunnel's pool. */
  readonly idleTimeoutMs?: number;
  readonly certificates: CertificateSource;
  readonly dialTcp?: TcpDialer;
  readonly log?: Logger;
  readonly onEvent?: (event: HbonePoolEvent) => void;
}

/** One engine connection of the pool. */
interface PooledConnection {
  readonly key: string;
  readonly target: string;
  /** Resolves once TLS is up and the server proved one of the expected identities. */
  readonly ready: Promise<HboneResult<ConnId>>;
  conn?: ConnId;
  /** Streams reserved from open() until they end. */
  streams: number;
  /** Streams it may carry: ours, lowered to what the server allows once the engine refuses one more. */
  maxStreams: number;
  /** No new streams: it failed, got GOAWAY, or ended. */
  retired: boolean;
  /** Over a caller's socket for one stream (HboneOpenRequest.over): closed when that stream ends. */
  readonly dedicated: boolean;
  /** Why it ended, once the engine said so: what a stream that never opened on it failed with. */
  ended?: HboneError;
  /** Waiting for a stream's 200 (or its end), by stream id. */
  readonly responses: Map<StreamId, (result: HboneResult<number>) => void>;
  /** Carried tunnels waiting for their end, by stream id. */
  readonly endings: Map<StreamId, (result: RelayResult) => void>;
  /** The sockets open() handed out on its streams, told of its GOAWAY. */
  readonly sockets: Set<Socket>;
}

const STATUS_HINTS: Readonly<Record<number, string>> = {
  400: 'the destination found the request malformed (its :authority must be the pod IP dialled)',
  401: 'an AuthorizationPolicy at the destination denied it',
  503: 'the destination could not reach the workload (no such workload there, or its port refused)',
};

/** How a connection that never came up is reported, by the engine's cause. */
const DIAL_FAILURES: Partial<Record<ConnEndCause, HboneErrorReason>> = {
  handshake: 'tls-failed',
  untrusted: 'unexpected-server',
  'handshake-timeout': 'tls-failed',
  identity: 'unexpected-server',
  'refused-by-server': 'refused-by-server',
  'peer-closed': 'refused-by-server',
};

export class HbonePool {
  readonly #options: HbonePoolOptions;
  readonly #host: EngineHost;
  readonly #ownsHost: boolean;
  readonly #contexts: IdentityTlsCache<TlsContext>;
  readonly #connections = new Map<string, PooledConnection[]>();
  readonly #byConn = new Map<ConnId, PooledConnection>();
  /** Connections over a caller's socket made so far, which keeps their keys apart. */
  #dedicated = 0;
  #closed = false;

  constructor(options: HbonePoolOptions) {
    this.#options = options;
    this.#ownsHost = options.host === undefined;
    this.#host = options.host ?? EngineHost.start(options.tuning, options.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: options.idleTimeoutMs });
    this.#contexts = new IdentityTlsCache(options.certificates, engineContext);
  }

  /**
   * A tunnel to `request.authority` after its 200, as a socket whose bytes the engine carries (one end of
   * a socket pair, for the L7 proxy and health probes), or why there is none.
   */
  async open(request: HboneOpenRequest): Promise<HboneResult<Duplex>> {
    const opened = await this.#tunnel(request, undefined);
    return opened.ok ? ok(opened.value.socket!) : opened;
  }

  /**
   * A tunnel that carries `downstream` itself (a pod's captured connection): the engine takes its fd,
   * so no thread of this process copies its bytes. Node's socket is closed once the tunnel is up; until
   * then a failed stream leaves it open for another try, or for the caller to close.
   */
  async carry(request: HboneOpenRequest, downstream: Socket): Promise<HboneResult<CarriedTunnel>> {
    const opened = await this.#tunnel(request, downstream);
    if (!opened.ok) return opened;
    const { conn, stream, ended } = opened.value;
    downstream.destroy();
    return ok({ ended: ended!, close: () => this.#host.engine.resetStream(conn, stream) });
  }

  async #tunnel(request: HboneOpenRequest, downstream: Socket | undefined): Promise<HboneResult<OpenedStream>> {
    const started = performance.now();
    const key = request.over ? `${poolKey(request)}|own#${++this.#dedicated}` : poolKey(request);
    // A connection that ended between being picked and the request is retired; the next try dials anew.
    for (let attempt = 0; ; attempt++) {
      if (this.#closed) return fail('closed', 'the HBONE pool is closed');
      if (request.expectedIdentities.length === 0) return fail('invalid-request', `no expected identity for ${formatAuthority(request.authority)}; refusing to trust any server`);
      const existing = this.#connections.get(key)?.find((c) => !c.retired && c.streams < c.maxStreams);
      const connection = existing ?? this.#dial(key, request);
      const reused = existing?.conn !== undefined;
      connection.streams++;
      const ready = await connection.ready;
      if (!ready.ok) {
        connection.streams--;
        return this.#streamFailed(key, ready.error);
      }
      // It ended or got GOAWAY while this request waited for it: the engine would refuse the stream.
      if (connection.retired) {
        connection.streams--;
        // One that went away (GOAWAY, idle, a reset) is worth a new dial; a server that refused us is not.
        if (attempt === 0 && (connection.ended === undefined || connection.ended.reason === 'stream-failed')) continue;
        return this.#streamFailed(key, connection.ended ?? new HboneError('stream-failed', `the connection to ${connection.target} closed before the stream could open`));
      }
      const opened = this.#openStream(connection, ready.value, request, downstream);
      if (!opened.ok) {
        // What fails here is this process, not the connection (the engine reports those as events): the
        // client's fd gone, or no fd left to dup it or make a socket pair (EMFILE, ENFILE, ENOMEM). So
        // only this stream fails; the connection stays pooled, and a new one would need fds too.
        connection.streams--;
        return this.#streamFailed(key, opened.error);
      }
      const { socket, stream } = opened.value;
      // Registered before any event can arrive: a short stream's end may come in the same batch as its 200.
      const ended = downstream ? new Promise<RelayResult>((resolve) => connection.endings.set(stream, resolve)) : undefined;
      const answered = await new Promise<HboneResult<number>>((resolve) => connection.responses.set(stream, resolve));
      const what = `CONNECT ${formatAuthority(request.authority)} via ${connection.target}`;
      if (!answered.ok && answered.error.reason === 'invalid-request' && attempt < 8) {
        // The connection is at the server's stream limit: it carries no more, another one will.
        socket?.destroy();
        continue;
      }
      if (!answered.ok && answered.error.reason === 'refused-stream' && attempt < 2) {
        // Refused unprocessed, typically a stream that crossed a draining agent's GOAWAY during an upgrade
        // (RFC 9113 §8.7: safe to send again): the engine left the client's socket as it was, so the
        // same tunnel goes again on another connection.
        socket?.destroy();
        this.#retire(connection, 'it refused a stream unprocessed');
        continue;
      }
      if (!answered.ok) {
        socket?.destroy();
        return this.#streamFailed(key, new HboneError(answered.error.reason, `${what} failed before a response: ${answered.error.message}`));
      }
      if (answered.value !== 200) {
        socket?.destroy();
        const hint = STATUS_HINTS[answered.value];
        return this.#streamFailed(key, new HboneError('http-status', `${what} was answered ${answered.value}${hint ? `: ${hint}` : ''}`, answered.value));
      }
      this.#emit({ type: 'stream-opened', key, reused, setupMs: performance.now() - started });
      if (socket) {
        connection.sockets.add(socket);
        socket.once('close', () => connection.sockets.delete(socket));
      }
      return ok({ connection, conn: ready.value, stream, ...(socket ? { socket } : {}), ...(ended ? { ended } : {}) });
    }
  }

  /** Every connection, for `ambit zc connections` and tests. */
  status(): PooledConnectionStatus[] {
    return [...this.#connections.values()].flat().map((c) => ({ key: c.key, target: c.target, streams: c.streams, maxStreams: c.maxStreams, ready: c.conn !== undefined }));
  }

  /** Refuses new tunnels; connections with streams still open after `graceMs` are closed. */
  async close(graceMs = 5000): Promise<void> {
    this.#closed = true;
    const deadline = Date.now() + graceMs;
    while ([...this.#byConn.values()].some((c) => c.streams > 0) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    for (const conn of this.#byConn.keys()) this.#host.engine.closeConn(conn);
    this.#contexts.close();
    if (this.#ownsHost) this.#host.close();
  }

  /** The CONNECT, on a socket pair whose other end is returned, or on `downstream`'s own fd (the engine dups it). */
  #openStream(connection: PooledConnection, conn: ConnId, request: HboneOpenRequest, downstream: Socket | undefined): HboneResult<{ socket?: Socket; stream: StreamId }> {
    const { ':authority': authority, ':method': _method, ...headers } = outboundConnectHeaders({ ...request, clientIp: request.source.ip });
    const open = (fd: number): EngineResult<StreamId> => this.#host.engine.openStream(conn, String(authority), headers as Record<string, string>, fd);
    const failed = (message: string): HboneResult<never> => fail('stream-failed', `opening a stream to ${connection.target} failed: ${message}`);
    try {
      if (downstream) {
        const fd = socketFd(downstream);
        if (fd === undefined) return failed('the client connection closed first');
        const result = open(fd);
        return result.ok ? ok({ stream: result.value }) : failed(result.error.message);
      }
      const { socket, result } = pairedSocket(open);
      if (!result.ok) {
        socket.destroy();
        return failed(result.error.message);
      }
      return ok({ socket, stream: result.value });
    } catch (err) {
      return failed(messageOf(err));
    }
  }

  #dial(key: string, request: HboneOpenRequest): PooledConnection {
    const target: SocketAddress = { ip: request.destination.ip, port: request.destination.port ?? HBONE_PORT };
    let settle: (result: HboneResult<ConnId>) => void = () => undefined;
    const connection: PooledConnection = {
      key,
      target: formatAuthority(target),
      streams: 0,
      maxStreams: this.#host.tuning.poolMaxStreamsPerConnection,
      retired: false,
      dedicated: request.over !== undefined,
      responses: new Map(),
      endings: new Map(),
      sockets: new Set(),
      ready: new Promise((resolve) => (settle = resolve)),
    };
    const list = this.#connections.get(key) ?? [];
    list.push(connection);
    this.#connections.set(key, list);
    void this.#connect(connection, target, request).then((result) => {
      if (!result.ok) this.#retire(connection, result.error.message);
      settle(result);
    });
    return connection;
  }

  /** TCP, then the engine's TLS: resolves once the server proved one of the expected identities. */
  async #connect(connection: PooledConnection, target: SocketAddress, request: HboneOpenRequest): Promise<HboneResult<ConnId>> {
    const started = performance.now();
    const where = connection.target;
    const tls = await this.#contexts.get(request.source.identity);
    const result = !tls.ok ? tls : request.over ? ok(request.over) : await this.#tcp(target, request.bindSource ? request.source.ip : undefined);
    const up = result.ok && tls.ok ? await this.#handshake(connection, result.value, tls.value.value, request) : (result as HboneResult<never>);
    if (up.ok) this.#emit({ type: 'connection-opened', key: connection.key, target: where, setupMs: performance.now() - started });
    else {
      this.#options.log?.warn({ target: where, source: request.source.identity, reason: up.error.reason }, `HBONE connection to ${where} failed: ${up.error.message}`);
      this.#emit({ type: 'connection-failed', key: connection.key, target: where, error: up.error });
    }
    return up;
  }

  #tcp(target: SocketAddress, localAddress: string | undefined): Promise<HboneResult<Socket>> {
    const where = formatAuthority(target);
    const timeoutMs = this.#host.tuning.connectTimeoutMs;
    const socket = (this.#options.dialTcp ?? defaultTcpDialer)(target, localAddress);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        socket.destroy();
        resolve(fail('connect-timeout', `connecting to ${where}: connection timed out, maybe a NetworkPolicy is blocking HBONE port ${target.port}`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(ok(socket));
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        resolve(fail('connect-failed', `connecting to ${where}: ${err.message}`));
      });
    });
  }

  #handshake(connection: PooledConnection, socket: Socket, context: TlsContext, request: HboneOpenRequest): Promise<HboneResult<ConnId>> {
    const host = this.#host;
    const dialed = handOverSocket(socket, (fd) => host.engine.dial(fd, context, [...new Set(request.expectedIdentities)]));
    if (!dialed?.ok) return Promise.resolve(fail('connect-failed', `connecting to ${connection.target}: ${dialed ? dialed.error.message : 'the socket closed'}`));
    const conn = dialed.value;
    this.#byConn.set(conn, connection);
    return new Promise((resolve) => {
      let up = false;
      host.own(conn, (event) => {
        if (event.type === 'connected') {
          up = true;
          connection.conn = conn;
          return resolve(ok(conn));
        }
        if (event.type === 'connEnd' && !up) resolve(fail(DIAL_FAILURES[event.cause] ?? 'connect-failed', event.message));
        this.#onEvent(connection, conn, event);
      });
    });
  }

  #onEvent(connection: PooledConnection, conn: ConnId, event: Exclude<EngineEvent, { type: 'drained' }>): void {
    switch (event.type) {
      case 'response':
        return connection.responses.get(event.stream)?.(ok(event.status));
      case 'streamEnd': {
        connection.streams--;
        connection.endings.get(event.stream)?.(relayResultOf(event));
        connection.endings.delete(event.stream);
        if (connection.dedicated && connection.streams === 0) this.#host.engine.closeConn(conn);
        const waiting = connection.responses.get(event.stream);
        // Its connection is ending: connEnd says why, for every stream still waiting.
        if (event.cause === 'conn-closed') return;
        connection.responses.delete(event.stream);
        if (event.cause === 'refused-locally') {
          connection.maxStreams = Math.max(1, connection.streams);
          return waiting?.(fail('invalid-request', `the connection to ${connection.target} is at its stream limit`));
        }
        if (event.cause === 'peer-reset' && event.code === http2Codes.NGHTTP2_REFUSED_STREAM) {
          return waiting?.(fail('refused-stream', `the server refused the stream unprocessed (REFUSED_STREAM)`));
        }
        waiting?.(fail('stream-failed', `${event.cause}${event.code ? ` (code ${event.code})` : ''}`));
        return;
      }
      case 'goaway':
        for (const socket of connection.sockets) socket.emit(PEER_GOAWAY);
        return this.#retire(connection, `the server sent GOAWAY (code ${event.code})`);
      case 'connEnd':
        this.#byConn.delete(conn);
        // A server that ends the connection before its first frame refused us (our certificate, most likely).
        connection.ended = new HboneError(DIAL_FAILURES[event.cause] ?? 'stream-failed', event.message);
        for (const waiting of connection.responses.values()) waiting({ ok: false, error: connection.ended });
        connection.responses.clear();
        return this.#retire(connection, event.cause === 'idle' ? 'idle' : event.message);
      case 'limit':
        this.#options.log?.warn({ target: connection.target, limit: event.limit }, `HBONE connection to ${connection.target} reached ${event.limit} (${event.cap}): ${event.hint}`);
        return;
      default:
        return;
    }
  }

  /** Takes the connection out of the pool, once; its streams run on until they end. */
  #retire(connection: PooledConnection, reason: string): void {
    if (connection.retired) return;
    connection.retired = true;
    const list = this.#connections.get(connection.key)?.filter((c) => c !== connection) ?? [];
    if (list.length > 0) this.#connections.set(connection.key, list);
    else this.#connections.delete(connection.key);
    if (connection.conn === undefined) return; // a failed dial was reported as connection-failed
    if (reason !== 'idle') this.#options.log?.info({ target: connection.target, streams: connection.streams }, `HBONE connection to ${connection.target} retired: ${reason}`);
    this.#emit({ type: 'connection-closed', key: connection.key, target: connection.target, reason });
  }

  #streamFailed(key: string, error: HboneError): HboneResult<never> {
    this.#emit({ type: 'stream-failed', key, error });
    return { ok: false, error };
  }

  #emit(event: HbonePoolEvent): void {
    try {
      this.#options.onEvent?.(event);
    } catch (err) {
      this.#options.log?.error({ err }, `an HBONE pool event listener failed: ${messageOf(err)}`);
    }
  }
}

/** A carried stream's end as relay() reports one: bytes from the client (read from its fd) and back. */
function relayResultOf(event: Extract<EngineEvent, { type: 'streamEnd' }>): RelayResult {
  const clean = event.cause === 'done';
  const side = event.cause === 'fd-error' ? 'downstream' : 'upstream';
  return {
    bytesSent: event.bytesOut,
    bytesReceived: event.bytesIn,
    ...(clean ? {} : { error: { side, message: `${event.cause}${event.code ? ` (code ${event.code})` : ''}` } }),
  };
}

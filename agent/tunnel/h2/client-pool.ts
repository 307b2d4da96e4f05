// The outbound HBONE connection pool, as ztunnel's proxy/pool.rs: connections keyed by (source identity,
// expected destination identities, destination address, source IP), up to 100 streams each (fewer if
// the server says so) before another is opened, closed after 5 idle minutes; one CONNECT per tunnel.

import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { SpiffeId } from '../../state/model.js';
import type { Logger } from '../../telemetry/log.js';
import { type TcpDialer, dialHbone } from './client-connection.js';
import { type HboneAuthority, formatAuthority, outboundConnectHeaders } from './connect-headers.js';
import { HboneError, type HboneResult, fail, messageOf, ok } from './errors.js';
import type { HbonePoolEvent } from './events.js';
import { keepSessionAlive } from './keepalive.js';
import type { SocketAddress } from './server.js';
import { HBONE_PORT, type HboneTuning, resolveTuning } from './settings.js';
import { type CertificateSource, IdentityTlsCache, clientSecureContext } from './tls-contexts.js';
import { watchSessionProgress } from './watchdog.js';

export interface HboneOpenRequest {
  /** The client workload: its identity signs the connection; its IP is the `forwarded` client and part of the key. */
  readonly source: { readonly identity: SpiffeId; readonly ip: string };
  /** Bind the TCP socket to source.ip (the node must own it, or the dialer must bind transparently). */
  readonly bindSource?: boolean;
  /** Where the TCP connection goes; the port defaults to 15008. */
  readonly destination: { readonly ip: string; readonly port?: number };
  /** The server must present one of these: the workload's identity, or a Service's subject_alt_names. */
  readonly expectedIdentities: readonly SpiffeId[];
  /** The tunnel's target, usually the destination pod's IP and the application port. */
  readonly authority: HboneAuthority;
  /** The Service hostname the client asked for, sent as `forwarded: …;host=`. */
  readonly serviceHostname?: string;
  /** A ready `baggage` header (see formatBaggage). */
  readonly baggage?: string;
}

export interface HbonePoolOptions {
  readonly certificates: CertificateSource;
  readonly tuning?: Partial<HboneTuning>;
  /** Close a connection this long after its last stream ended. Default: 5 min (POOL_UNUSED_RELEASE_TIMEOUT). */
  readonly idleTimeoutMs?: number;
  readonly dialTcp?: TcpDialer;
  readonly log?: Logger;
  readonly onEvent?: (event: HbonePoolEvent) => void;
}

export interface PooledConnectionStatus {
  readonly key: string;
  readonly target: string;
  readonly streams: number;
  readonly maxStreams: number;
  readonly ready: boolean;
}

/** One HTTP/2 connection of the pool. */
interface PooledConnection {
  readonly key: string;
  readonly target: string;
  readonly ready: Promise<HboneResult<ClientHttp2Session>>;
  session?: ClientHttp2Session;
  /** Reserved streams: counted from open() until the stream closes. */
  streams: number;
  /** The streams actually open on the session, for the stall watchdog. */
  readonly open: Set<ClientHttp2Stream>;
  maxStreams: number;
  /** No new streams: it failed, got GOAWAY, died or idled out. */
  retired: boolean;
  idleTimer?: NodeJS.Timeout;
}

const STATUS_HINTS: Readonly<Record<number, string>> = {
  400: 'the destination found the request malformed (its :authority must be the pod IP dialled)',
  401: 'an AuthorizationPolicy at the destination denied it',
  503: 'the destination could not reach the workload (no such workload there, or its port refused)',
};

export class HbonePool {
  readonly #options: HbonePoolOptions;
  readonly #tuning: HboneTuning;
  readonly #idleTimeoutMs: number;
  readonly #contexts: IdentityTlsCache<ReturnType<typeof clientSecureContext>>;
  readonly #connections = new Map<string, PooledConnection[]>();
  #closed = false;

  constructor(options: HbonePoolOptions) {
    this.#options = options;
    this.#tuning = resolveTuning(options.tuning);
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 5 * 60_000;
    this.#contexts = new IdentityTlsCache(options.certificates, clientSecureContext);
  }

  /** A tunnel to `request.authority`: the CONNECT stream after its 200, or why there is none. */
  async open(request: HboneOpenRequest): Promise<HboneResult<Duplex>> {
    const started = performance.now();
    const key = poolKey(request);
    // A connection that died between being picked and the request is retired; the next try dials anew.
    for (let attempt = 0; ; attempt++) {
      if (this.#closed) return fail('closed', 'the HBONE pool is closed');
      if (request.expectedIdentities.length === 0) return fail('invalid-request', `no expected identity for ${formatAuthority(request.authority)}; refusing to trust any server`);
      const existing = this.#pick(key);
      const connection = existing ?? this.#dial(key, request);
      const reused = existing?.session !== undefined;
      connection.streams++;
      clearTimeout(connection.idleTimer);
      const session = await connection.ready;
      if (!session.ok) {
        this.#release(connection);
        return this.#streamFailed(key, session.error);
      }
      let stream: ClientHttp2Stream;
      try {
        stream = session.value.request(outboundConnectHeaders({ ...request, clientIp: request.source.ip }), { endStream: false });
      } catch (err) {
        this.#retire(connection, `cannot open a stream: ${messageOf(err)}`);
        this.#release(connection);
        if (attempt === 0) continue;
        return this.#streamFailed(key, new HboneError('stream-failed', `opening a stream to ${connection.target} failed: ${messageOf(err)}`));
      }
      connection.open.add(stream);
      stream.once('close', () => {
        connection.open.delete(stream);
        this.#release(connection);
      });
      const answered = await this.#response(stream, connection.target, request.authority);
      if (!answered.ok) return this.#streamFailed(key, answered.error);
      this.#emit({ type: 'stream-opened', key, reused, setupMs: performance.now() - started });
      return answered;
    }
  }

  /** Every connection, for `ambit zc connections` and tests. */
  status(): PooledConnectionStatus[] {
    return [...this.#connections.values()].flat().map((c) => ({ key: c.key, target: c.target, streams: c.streams, maxStreams: c.maxStreams, ready: c.session !== undefined }));
  }

  /** Refuses new tunnels, sends GOAWAY on every connection, destroys what is still open after `graceMs`. */
  async close(graceMs = 5000): Promise<void> {
    this.#closed = true;
    const all = [...this.#connections.values()].flat();
    await Promise.all(
      all.map(async (connection) => {
        const session = await connection.ready;
        if (!session.ok || session.value.closed) return;
        const timer = setTimeout(() => session.value.destroy(), graceMs);
        await new Promise<void>((resolve) => session.value.close(resolve));
        clearTimeout(timer);
      }),
    );
    this.#contexts.close();
  }

  #pick(key: string): PooledConnection | undefined {
    return this.#connections.get(key)?.find((c) => !c.retired && c.streams < c.maxStreams);
  }

  #dial(key: string, request: HboneOpenRequest): PooledConnection {
    const target: SocketAddress = { ip: request.destination.ip, port: request.destination.port ?? HBONE_PORT };
    const connection: PooledConnection = {
      key,
      target: formatAuthority(target),
      streams: 0,
      open: new Set(),
      // Until the server's SETTINGS say otherwise, assume it allows our own limit.
      maxStreams: this.#tuning.poolMaxStreamsPerConnection,
      retired: false,
      ready: this.#connect(key, target, request),
    };
    const list = this.#connections.get(key) ?? [];
    list.push(connection);
    this.#connections.set(key, list);
    void connection.ready.then((result) => (result.ok ? this.#adopt(connection, result.value) : this.#retire(connection, result.error.message)));
    return connection;
  }

  async #connect(key: string, target: SocketAddress, request: HboneOpenRequest): Promise<HboneResult<ClientHttp2Session>> {
    const started = performance.now();
    const tls = await this.#contexts.get(request.source.identity);
    const dialed = tls.ok
      ? await dialHbone({
          target,
          context: tls.value.value,
          trustBundlePem: tls.value.certificate.rootsPem,
          expectedIdentities: new Set(request.expectedIdentities),
          ...(request.bindSource ? { localAddress: request.source.ip } : {}),
          tuning: this.#tuning,
          ...(this.#options.dialTcp ? { dialTcp: this.#options.dialTcp } : {}),
        })
      : tls;
    const where = formatAuthority(target);
    if (dialed.ok) this.#emit({ type: 'connection-opened', key, target: where, setupMs: performance.now() - started });
    else {
      this.#options.log?.warn({ target: where, source: request.source.identity, reason: dialed.error.reason }, `HBONE connection to ${where} failed: ${dialed.error.message}`);
      this.#emit({ type: 'connection-failed', key, target: where, error: dialed.error });
    }
    return dialed;
  }

  #adopt(connection: PooledConnection, session: ClientHttp2Session): void {
    connection.session = session;
    const peerLimit = session.remoteSettings.maxConcurrentStreams;
    const limit = (value: number | undefined): void => {
      connection.maxStreams = Math.min(this.#tuning.poolMaxStreamsPerConnection, value ?? Infinity);
    };
    limit(peerLimit);
    session.on('remoteSettings', (settings) => limit(settings.maxConcurrentStreams));
    const kill = (reason: string): void => {
      this.#retire(connection, reason);
      session.destroy();
    };
    keepSessionAlive(session, { intervalMs: this.#tuning.pingIntervalMs, timeoutMs: this.#tuning.pingTimeoutMs }, kill);
    const pending = (): boolean => [...connection.open].some((stream) => stream.writableLength > 0);
    watchSessionProgress(session, { stallTimeoutMs: this.#tuning.stallTimeoutMs, pending }, kill);
    session.on('goaway', (code) => this.#retire(connection, `the server sent GOAWAY (code ${code})`));
    session.on('error', (err) => this.#retire(connection, `session error: ${err.message}`));
    session.once('close', () => this.#retire(connection, 'closed'));
    if (connection.streams === 0) this.#startIdle(connection);
  }

  /** Takes the connection out of the pool, once; its streams run on until they end. */
  #retire(connection: PooledConnection, reason: string): void {
    clearTimeout(connection.idleTimer);
    if (connection.retired) return;
    connection.retired = true;
    const list = this.#connections.get(connection.key)?.filter((c) => c !== connection) ?? [];
    if (list.length > 0) this.#connections.set(connection.key, list);
    else this.#connections.delete(connection.key);
    if (connection.session === undefined) return; // a failed dial was reported as connection-failed
    if (reason !== 'closed' && reason !== 'idle') {
      this.#options.log?.info({ target: connection.target, streams: connection.streams }, `HBONE connection to ${connection.target} retired: ${reason}`);
    }
    this.#emit({ type: 'connection-closed', key: connection.key, target: connection.target, reason });
  }

  #release(connection: PooledConnection): void {
    connection.streams--;
    if (connection.streams === 0 && connection.session && !connection.retired) this.#startIdle(connection);
  }

  #startIdle(connection: PooledConnection): void {
    clearTimeout(connection.idleTimer);
    connection.idleTimer = setTimeout(() => {
      this.#retire(connection, 'idle');
      connection.session?.close();
    }, this.#idleTimeoutMs);
    connection.idleTimer.unref();
  }

  #response(stream: ClientHttp2Stream, target: string, authority: HboneAuthority): Promise<HboneResult<Duplex>> {
    const what = `CONNECT ${formatAuthority(authority)} via ${target}`;
    // The pool keeps this listener for the stream's life: a reset must never become an uncaught
    // 'error'. Callers see the same error through their own listener, or the stream's 'close'.
    let lastError: Error | undefined;
    stream.on('error', (err) => (lastError = err));
    return new Promise((resolve) => {
      const timeoutMs = this.#tuning.connectTimeoutMs;
      const timer = setTimeout(() => {
        finish(fail('stream-failed', `${what}: no response within ${timeoutMs} ms`));
        stream.close();
      }, timeoutMs);
      const finish = (result: HboneResult<Duplex>): void => {
        clearTimeout(timer);
        stream.off('response', answered).off('close', closed);
        resolve(result);
      };
      const answered = (headers: IncomingHttpHeaders): void => {
        const status = Number(headers[':status']);
        if (status === 200) return finish(ok(stream));
        stream.close();
        const hint = STATUS_HINTS[status];
        finish(fail('http-status', `${what} was answered ${status}${hint ? `: ${hint}` : ''}`, status));
      };
      const closed = (): void => {
        const why = lastError ? messageOf(lastError) : `reset with code ${stream.rstCode ?? 'unknown'}`;
        finish(fail('stream-failed', `${what} failed before a response: ${why}`));
      };
      stream.once('response', answered).once('close', closed);
    });
  }

  #streamFailed(key: string, error: HboneError): HboneResult<Duplex> {
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

/** ztunnel's WorkloadKey: the source IP is part of it because tunnels may carry it as their source. */
export function poolKey(request: HboneOpenRequest): string {
  const destinations = [...new Set(request.expectedIdentities)].sort().join(',');
  const target = formatAuthority({ ip: request.destination.ip, port: request.destination.port ?? HBONE_PORT });
  return `${request.source.identity}|${destinations}|${target}|${request.source.ip}`;
}

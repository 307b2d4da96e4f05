// One native HBONE engine per agent, shared by the inbound server and the outbound pool: it routes each
// engine event to whoever owns the connection, and turns a workload certificate into the engine's TLS
// context once per certificate (a renewed certificate gets a new context; connections keep theirs).

import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import { socketFd, socketPair } from '../../redirect/bpf-binding.js';
import type { WorkloadCertificate } from '../../identity/workload-certificate.js';
import { HboneEngine, type TlsContext, createTlsContext } from '../engine/engine.js';
import type { ConnEndCause, ConnId, EngineEvent } from '../engine/events.js';
import type { EngineOptions } from '../engine/native.js';
import { relayIdleTimeout } from '../relay-idle.js';
import { type HboneTuning, resolveTuning } from './settings.js';

/** What an owner of engine connections hears about them; called on the JavaScript thread, in order. */
export type ConnectionListener = (event: Exclude<EngineEvent, { type: 'drained' }>) => void;

export class EngineHost {
  readonly engine: HboneEngine;
  readonly tuning: HboneTuning;
  readonly #owners = new Map<ConnId, ConnectionListener>();
  readonly #ends = new Map<ConnEndCause, number>();

  private constructor(create: (onEvent: (event: EngineEvent) => void) => HboneEngine, tuning: HboneTuning) {
    this.tuning = tuning;
    this.engine = create((event) => this.#route(event));
  }

  /** Starts the engine's data threads with HBONE's tuning; throws with the addon's reason when it cannot. */
  static start(tuning: Partial<HboneTuning> = {}, options: EngineOptions = {}): EngineHost {
    const resolved = resolveTuning(tuning);
    return new EngineHost((onEvent) => {
      const created = HboneEngine.create(
        {
          streamWindow: resolved.streamWindowBytes,
          connectionWindow: resolved.connectionWindowBytes,
          maxFrameSize: resolved.maxFrameSize,
          serverMaxStreams: resolved.serverMaxConcurrentStreams,
          clientMaxStreams: resolved.poolMaxStreamsPerConnection,
          serverMaxHeaderList: resolved.serverMaxHeaderListSize,
          clientMaxHeaderList: resolved.clientMaxHeaderListSize,
          pingIntervalMs: resolved.pingIntervalMs,
          pingTimeoutMs: resolved.pingTimeoutMs,
          handshakeTimeoutMs: resolved.connectTimeoutMs,
          responseTimeoutMs: resolved.connectTimeoutMs,
          // The streams the engine carries idle out as the relays do (ambit run --tcp-idle-timeout).
          streamIdleTimeoutMs: relayIdleTimeout(),
          ...options,
        },
        onEvent,
      );
      if (!created.ok) throw new Error(`the HBONE engine cannot start: ${created.error.message}`);
      return created.value;
    }, resolved);
  }

  /** Events of `conn` go to `listener` until its connEnd. Register right after serve() or dial(). */
  own(conn: ConnId, listener: ConnectionListener): void {
    this.#owners.set(conn, listener);
  }

  /** HBONE connections ended so far, inbound and outbound, by the cause the engine gave (ambit_hbone_connections_closed_total). */
  connectionEnds(): Readonly<Partial<Record<ConnEndCause, number>>> {
    return Object.fromEntries(this.#ends);
  }

  /** Every connection ends (each reports connEnd), then the threads stop. */
  close(): void {
    this.engine.destroy();
  }

  #route(event: EngineEvent): void {
    if (event.type === 'drained') return;
    const owner = this.#owners.get(event.conn);
    if (event.type === 'connEnd') {
      this.#owners.delete(event.conn);
      this.#ends.set(event.cause, (this.#ends.get(event.cause) ?? 0) + 1);
    }
    owner?.(event);
  }
}

/** The engine's TLS context for a workload certificate: its chain, key and the roots peers must chain to. */
export function engineContext(certificate: WorkloadCertificate): TlsContext {
  const { key, cert, ca } = certificate.tls;
  const made = createTlsContext({ chainPem: cert, keyPem: key, rootsPem: ca });
  if (!made.ok) throw new Error(made.error.message);
  return made.value;
}

/**
 * Hands a connected TCP socket to the engine: the engine works on a dup of its fd (taken inside
 * `handover`), and Node's socket is then closed without a FIN (closing one fd of two sends none).
 * Returns what `handover` returned, or undefined when the socket has no fd (already closed).
 */
export function handOverSocket<T>(socket: Socket, handover: (fd: number) => T): T | undefined {
  const fd = socketFd(socket);
  if (fd === undefined) return undefined;
  const result = handover(fd);
  socket.destroy();
  return result;
}

/**
 * A socket pair whose one end the engine takes (`handover` receives its fd; the engine dups it, and this
 * process's copy is closed here) and whose other end is returned as a half-open net.Socket: how a
 * JavaScript Duplex (an L7 proxy, a probe) rides an engine stream.
 */
export function pairedSocket<T>(handover: (fd: number) => T): { readonly socket: Socket; readonly result: T } {
  const pair = socketPair();
  if (!pair.ok) throw new Error(pair.error.message);
  const [engineSide, ourSide] = pair.value;
  let result: T;
  try {
    result = handover(engineSide);
  } catch (err) {
    closeSync(ourSide);
    throw err;
  } finally {
    closeSync(engineSide);
  }
  return { socket: new Socket({ fd: ourSide, allowHalfOpen: true, readable: true, writable: true }), result };
}

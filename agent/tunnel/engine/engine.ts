// The HBONE engine as the agent uses it: TLS and HTTP/2 run in native data threads, and every decision
// (which peer to trust, which CONNECT to admit, where it goes) stays here, answered per event.

import type { ConnStats, ConnId, EngineCounters, EngineEvent, EngineLimit, StreamId } from './events.js';
import { limitHint } from './events.js';
import { type ContextHandle, type EffectiveOptions, type EngineHandle, type EngineOptions, type EngineResult, type HboneNative, type RawEvent, attempt, hboneNative } from './native.js';

/** A certificate and its trust, loaded once; connections keep the one they started with (rotation). */
export interface TlsContext {
  readonly handle: ContextHandle;
}

export interface TlsMaterial {
  /** Leaf first, then intermediates. */
  readonly chainPem: string;
  readonly keyPem: string;
  /** The roots a peer's chain must lead to. */
  readonly rootsPem: string;
}

/** How a server answers a CONNECT: 200 with the destination's fd, or a refusal as Istio's statuses. */
export type ConnectAnswer = { readonly status: 200; readonly fd: number } | { readonly status: 400 | 401 | 403 | 503 };

export function createTlsContext(material: TlsMaterial): EngineResult<TlsContext> {
  const native = hboneNative();
  if (!native.ok) return native;
  const made = attempt(() => native.value.createContext(material.chainPem, material.keyPem, material.rootsPem));
  return made.ok ? { ok: true, value: { handle: made.value } } : made;
}

function toEvent(raw: RawEvent): EngineEvent {
  if (raw.type === 'connect') {
    const flat = raw['headers'] as string[];
    const headers: Record<string, string> = {};
    // Repeated names join with a comma, as HTTP allows for these headers.
    for (let i = 0; i + 1 < flat.length; i += 2) headers[flat[i]!] = headers[flat[i]!] === undefined ? flat[i + 1]! : `${headers[flat[i]!]},${flat[i + 1]!}`;
    return { ...raw, headers } as unknown as EngineEvent;
  }
  if (raw.type === 'limit') return { ...raw, hint: limitHint(raw['limit'] as EngineLimit) } as unknown as EngineEvent;
  return raw as unknown as EngineEvent;
}

export class HboneEngine {
  readonly #native: HboneNative;
  readonly #handle: EngineHandle;
  readonly #onEvent: (event: EngineEvent) => void;
  readonly #stats = new Map<number, (stats: ConnStats | undefined) => void>();
  readonly #drained: (() => void)[] = [];
  #nextRequest = 1;
  #destroyed = false;

  private constructor(native: HboneNative, options: EngineOptions, onEvent: (event: EngineEvent) => void) {
    this.#native = native;
    this.#onEvent = onEvent;
    this.#handle = native.createEngine(options, (batch) => this.#dispatch(batch));
  }

  /** Starts the engine's data threads; `onEvent` gets every event, in order, on the JavaScript thread. */
  static create(options: EngineOptions, onEvent: (event: EngineEvent) => void): EngineResult<HboneEngine> {
    const native = hboneNative();
    if (!native.ok) return native;
    return attempt(() => new HboneEngine(native.value, options, onEvent));
  }

  /** Serves an accepted TCP connection (the engine takes a dup of `fd`); `tag` comes back in its events. */
  serve(fd: number, context: TlsContext, tag = 0): EngineResult<ConnId> {
    return attempt(() => this.#native.serve(this.#handle, fd, context.handle, tag) as ConnId);
  }

  /** Runs the client side on a connected TCP socket; the server must present one of `expectedSans`. */
  dial(fd: number, context: TlsContext, expectedSans: readonly string[]): EngineResult<ConnId> {
    if (expectedSans.length === 0) return { ok: false, error: { code: 'EHBONE_IDENTITY', message: 'dial: no expected server identity; refusing to trust any server' } };
    return attempt(() => this.#native.dial(this.#handle, fd, context.handle, expectedSans) as ConnId);
  }

  /** The answer to a `peer` event: false closes the connection before any request is read. */
  acceptPeer(conn: ConnId, ok: boolean): void {
    this.#native.acceptPeer(this.#handle, conn, ok);
  }

  /** The answer to a `connect` event; an answer after the stream's `streamEnd` only closes the fd. */
  answer(conn: ConnId, stream: StreamId, answer: ConnectAnswer): EngineResult<void> {
    return attempt(() => this.#native.answer(this.#handle, conn, stream, answer.status, answer.status === 200 ? answer.fd : -1));
  }

  /** Opens a CONNECT to `authority` whose bytes go to and from `fd` (dup'ed) once the 200 arrives. */
  openStream(conn: ConnId, authority: string, headers: Readonly<Record<string, string>>, fd: number): EngineResult<StreamId> {
    const flat = Object.entries(headers).flatMap(([name, value]) => [name.toLowerCase(), value]);
    return attempt(() => this.#native.openStream(this.#handle, conn, authority, flat, fd) as StreamId);
  }

  resetStream(conn: ConnId, stream: StreamId): void {
    this.#native.resetStream(this.#handle, conn, stream);
  }

  closeConn(conn: ConnId): void {
    this.#native.closeConn(this.#handle, conn);
  }

  /** GOAWAY on every connection, new ones refused; what is open at the deadline is reset. */
  drain(deadlineMs: number): Promise<void> {
    const done = new Promise<void>((resolve) => this.#drained.push(resolve));
    this.#native.drain(this.#handle, deadlineMs);
    return done;
  }

  counters(): EngineCounters {
    return this.#native.counters(this.#handle) as unknown as EngineCounters;
  }

  /** One connection's state from its data thread; undefined once it has ended. */
  connStats(conn: ConnId): Promise<ConnStats | undefined> {
    const request = this.#nextRequest++;
    const answered = new Promise<ConnStats | undefined>((resolve) => this.#stats.set(request, resolve));
    this.#native.connStats(this.#handle, conn, request);
    return answered;
  }

  options(): EffectiveOptions {
    return this.#native.options(this.#handle);
  }

  /** Closes every connection (each reports connEnd 'engine-closed') and stops the threads. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#dispatch(this.#native.destroy(this.#handle));
  }

  #dispatch(batch: RawEvent[]): void {
    for (const raw of batch) {
      if (raw.type === 'connStats') {
        const resolve = this.#stats.get(raw['request'] as number);
        this.#stats.delete(raw['request'] as number);
        resolve?.(raw['found'] ? (raw as unknown as ConnStats) : undefined);
        continue;
      }
      if (raw.type === 'drained') this.#drained.splice(0).forEach((resolve) => resolve());
      // A throwing handler is the agent's bug: it surfaces as an uncaught exception (the agent exits).
      this.#onEvent(toEvent(raw));
    }
  }
}

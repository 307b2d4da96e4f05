// A downstream request body that one upstream attempt at a time consumes, streamed as it arrives (with
// backpressure) while a copy is kept up to a limit, so that a retry or a mirror can replay it. Past the
// limit the copy is dropped and the body can no longer be replayed, as Envoy stops retrying a request
// whose body overflowed its buffer. Before any attempt, the first bytes can be read and held for a check
// that needs them (ext_authz's includeRequestBodyInCheck); they then reach the pod like the rest.

import type { Readable, Writable } from 'node:stream';

/** Envoy's default per-connection buffer limit, which bounds retry buffering. */
export const REPLAY_LIMIT_BYTES = 1024 * 1024;

/** The body's first bytes, read before the request goes on. */
export interface BodyPrefix {
  /** At most the bytes asked for. */
  readonly bytes: Buffer;
  /** More arrived than was asked for: `bytes` is the start of a longer body. */
  readonly truncated: boolean;
}

export class RequestBody {
  #chunks: Buffer[] = [];
  #buffered = 0;
  #overflowed = false;
  #ended = false;
  #target: Writable | undefined;
  #listening = false;
  #received = 0;
  readonly #waiters: (() => void)[] = [];
  /** A prefix being read: every chunk is held until more than `maxBytes` arrived, past the replay limit if need be. */
  /** The request was answered without the pod: what is left is read and dropped. */
  #discarding = false;
  #prefix: { readonly maxBytes: number; readonly resolve: (p: BodyPrefix | undefined) => void } | undefined;

  constructor(
    private readonly source: Readable,
    /** True when the request says it has no body (HTTP/2 END_STREAM on headers, HTTP/1 no length). */
    empty: boolean,
    private readonly limit = REPLAY_LIMIT_BYTES,
  ) {
    if (empty) this.#ended = true;
  }

  /** Bytes received from the client so far. */
  get size(): number {
    return this.#received;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Whether another attempt can be sent the whole body (everything so far is still held). */
  get replayable(): boolean {
    return !this.#overflowed;
  }

  /**
   * Sends the body to `target` (an upstream request): what is held, then the rest as it arrives, then
   * end(). The previous target, if any, stops receiving. Returns false when the body cannot be replayed.
   */
  attach(target: Writable): boolean {
    if (this.#overflowed) return false;
    this.#target = target;
    for (const chunk of this.#chunks) target.write(chunk);
    if (this.#ended) {
      target.end();
      return true;
    }
    if (!this.#listening) this.#listen();
    this.source.resume();
    return true;
  }

  /** Stops feeding the current target (its attempt was abandoned); the copy keeps filling. */
  detach(): void {
    this.#target = undefined;
  }

  /** Resolves when the whole body has arrived and is held (for mirrors); false if it was too large. */
  complete(): Promise<boolean> {
    if (this.#ended || this.#overflowed) return Promise.resolve(!this.#overflowed);
    if (!this.#listening) this.#listen();
    this.source.resume();
    return new Promise((resolve) => this.#waiters.push(() => resolve(!this.#overflowed)));
  }

  /**
   * Reads until more than `maxBytes` arrived or the body ended, then stops reading (backpressure to the
   * client) until an attempt attaches; what was read is held and sent first. Memory: `maxBytes` plus one
   * chunk. Undefined when the body can no longer be held (an earlier read overflowed) or the client failed.
   */
  prefix(maxBytes: number): Promise<BodyPrefix | undefined> {
    if (this.#overflowed) return Promise.resolve(undefined);
    if (this.#ended || this.#buffered > maxBytes) return Promise.resolve(this.#prefixOf(maxBytes));
    return new Promise((resolve) => {
      this.#prefix = { maxBytes, resolve };
      if (!this.#listening) this.#listen();
      this.source.resume();
    });
  }

  #prefixOf(maxBytes: number): BodyPrefix {
    const all = Buffer.concat(this.#chunks);
    return { bytes: all.subarray(0, maxBytes), truncated: all.length > maxBytes };
  }

  #settlePrefix(): void {
    const prefix = this.#prefix;
    if (!prefix || (!this.#ended && this.#buffered <= prefix.maxBytes)) return;
    this.#prefix = undefined;
    if (!this.#target && !this.#ended) this.source.pause();
    prefix.resolve(this.#prefixOf(prefix.maxBytes));
  }

  /**
   * The request was answered by the proxy: the rest of a body already read from (a prefix) is read and
   * dropped, so that an HTTP/1.1 connection can carry the next request; Node does the same itself for a
   * body nobody read. Without this the connection stays paused and its next request never gets an answer.
   */
  discard(): void {
    if (!this.#listening || this.#ended) return;
    this.#discarding = true;
    this.#target = undefined;
    this.#prefix = undefined;
    this.#chunks = [];
    this.#overflowed = true;
    this.source.resume();
  }

  /** The held body (only meaningful once complete() resolved true). */
  held(): readonly Buffer[] {
    return this.#chunks;
  }

  #listen(): void {
    this.#listening = true;
    this.source.on('data', (chunk: Buffer) => {
      this.#received += chunk.length;
      if (!this.#overflowed) {
        if (this.#buffered + chunk.length > this.limit && this.#prefix === undefined) {
          this.#overflowed = true;
          this.#chunks = [];
        } else {
          this.#chunks.push(chunk);
          this.#buffered += chunk.length;
        }
      }
      const target = this.#target;
      if (target && !target.destroyed && !target.write(chunk)) {
        this.source.pause();
        target.once('drain', () => this.source.resume());
      } else if (!target && this.#overflowed && !this.#discarding) {
        // Nobody to send to and nothing worth holding: stop reading until an attempt attaches.
        this.source.pause();
      }
      this.#settlePrefix();
    });
    this.source.once('end', () => {
      this.#ended = true;
      this.#settlePrefix();
      const target = this.#target;
      if (target && !target.destroyed) target.end();
      this.#waiters.splice(0).forEach((w) => w());
    });
    this.source.once('error', () => {
      this.#prefix?.resolve(undefined);
      this.#prefix = undefined;
      this.#waiters.splice(0).forEach((w) => w());
    });
  }
}

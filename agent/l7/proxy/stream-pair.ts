// Two connected in-memory duplex streams: what one writes, the other reads, with backpressure (a write
// is acknowledged only once the other side's reader has room) and half-close (end() on one is the
// other's end of input). The inbound HTTP proxy sits behind one end, so that the tunnel code relays
// to it exactly as it relays to a pod's socket. Node 20 has no stream.duplexPair (added in 22.6).

import { Duplex } from 'node:stream';

type Callback = (error?: Error | null) => void;

/**
 * One end. It also answers the socket methods Node's HTTP servers call on what they serve
 * (setTimeout with a real idle timer, so keep-alive timeouts work; setNoDelay and friends as no-ops).
 */
export class PairEnd extends Duplex {
  peer!: PairEnd;
  /** A write waiting for the peer's reader to want more. */
  #pending: Callback | undefined;
  #idleMs = 0;
  #idleTimer: NodeJS.Timeout | undefined;
  /** Whether this end's end-of-stream has reached the peer's reader (a FIN sent). */
  #finSent = false;
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;

  constructor(remote?: { readonly address: string; readonly port: number }) {
    super({ allowHalfOpen: true });
    this.remoteAddress = remote?.address;
    this.remotePort = remote?.port;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: Callback): void {
    this.#touch();
    this.peer.#touch();
    if (this.peer.destroyed) return callback(new Error('the other end of the stream pair is closed'));
    if (this.peer.push(chunk)) callback();
    else this.#pending = callback;
  }

  override _final(callback: Callback): void {
    this.#finSent = true;
    this.peer.push(null);
    callback();
  }

  override _read(): void {
    // Our reader has room: release the peer's write that was waiting for it.
    const pending = this.peer.#pending;
    this.peer.#pending = undefined;
    pending?.();
  }

  override _destroy(error: Error | null, callback: Callback): void {
    clearTimeout(this.#idleTimer);
    const pending = this.peer.#pending;
    this.peer.#pending = undefined;
    pending?.(new Error('the other end of the stream pair is closed'));
    // Closed as a TCP socket closes: with an error, or with bytes the peer sent left unread, the peer is
    // reset (destroyed with an error); otherwise it reads end-of-stream, as after a FIN, and its writes
    // fail from now on. Either way the relay behind it closes the client's side too, instead of
    // holding it open after the server here gave up on it (a timeout, a parse error).
    if (!this.peer.destroyed) {
      if (error || this.readableLength > 0) this.peer.destroy(error ?? new Error('the other end of the stream pair was reset'));
      else if (!this.#finSent) {
        this.#finSent = true;
        this.peer.push(null);
      }
    }
    callback(error);
  }

  setTimeout(ms: number, callback?: () => void): this {
    this.#idleMs = ms;
    if (callback) this.once('timeout', callback);
    this.#touch();
    return this;
  }

  setNoDelay(): this {
    return this;
  }

  setKeepAlive(): this {
    return this;
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }

  #touch(): void {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    if (this.#idleMs > 0 && !this.destroyed) {
      this.#idleTimer = setTimeout(() => this.emit('timeout'), this.#idleMs);
      this.#idleTimer.unref();
    }
  }
}

/** `outer` goes to the code that relays bytes; `inner` to the server that parses them. */
export function streamPair(remote?: { readonly address: string; readonly port: number }): { readonly outer: PairEnd; readonly inner: PairEnd } {
  const outer = new PairEnd(remote);
  const inner = new PairEnd(remote);
  outer.peer = inner;
  inner.peer = outer;
  return { outer, inner };
}

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/**
 * Which HTTP version a client speaks, from its first bytes (the HTTP/2 prior-knowledge preface, else
 * HTTP/1.x), read from any readable and put back in front; undefined if it ended first. Unlike
 * protocol-sniff.ts (for net.Socket, whose handle HTTP/2 reads directly), a JS stream's unshift is seen
 * by both of Node's servers.
 */
export function sniffStream(stream: Duplex): Promise<'HTTP/1.1' | 'HTTP/2' | undefined> {
  return new Promise((resolve) => {
    let seen = Buffer.alloc(0);
    const done = (version: 'HTTP/1.1' | 'HTTP/2' | undefined): void => {
      stream.removeListener('readable', onReadable);
      stream.removeListener('end', onEnd);
      stream.removeListener('close', onEnd);
      if (seen.length > 0) stream.unshift(seen);
      resolve(version);
    };
    const onEnd = (): void => done(seen.length > 0 ? 'HTTP/1.1' : undefined);
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while ((chunk = stream.read() as Buffer | null) !== null) seen = Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, H2_PREFACE.length);
      if (n === 0) return;
      if (!seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) return done('HTTP/1.1');
      // A prefix of the preface: wait for the rest before deciding ("PRI " could start neither).
      if (n === H2_PREFACE.length) return done('HTTP/2');
    };
    stream.on('readable', onReadable);
    stream.once('end', onEnd);
    stream.once('close', onEnd);
  });
}

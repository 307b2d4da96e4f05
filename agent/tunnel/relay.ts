// Copies bytes both ways between two connected streams until both directions are done: with
// backpressure (a slow reader pauses the fast writer once a bounded amount is queued), half-close
// carried across (a FIN on one side becomes end() on the other), and an error on either side tears
// down both, as does the idle timeout (relay-idle.ts). Counts bytes for telemetry.

import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { kernelRelay } from './kernel-relay.js';
import { idleTimeoutError, relayIdleTimeout, watchIdle } from './relay-idle.js';
import { tuneRelaySocket } from './socket-options.js';

/** Why a relay ended badly: the first error on either side, or (`reason`) its idle timeout. */
export interface RelayError {
  readonly side: 'downstream' | 'upstream';
  readonly message: string;
  readonly reason?: 'idle-timeout';
}

export interface RelayResult {
  /** Bytes read from `downstream` (the client) and written upstream. */
  readonly bytesSent: number;
  /** Bytes read from `upstream` and written to the client. */
  readonly bytesReceived: number;
  /** The first error on either side, if the relay ended in one (a reset, a write after destroy, idle). */
  readonly error?: RelayError;
}

export interface RelayOptions {
  /** Both sides are closed after this long without a byte moving either way; 0: never. Default: the process's (relay-idle.ts). */
  readonly idleTimeoutMs?: number;
}

export function relay(downstream: Duplex, upstream: Duplex, options: RelayOptions = {}): Promise<RelayResult> {
  const idleTimeoutMs = options.idleTimeoutMs ?? relayIdleTimeout();
  // Two plain TCP sockets: the kernel moves their bytes (kernel-relay.ts); JavaScript relays the rest.
  const spliced = kernelRelay(downstream, upstream, idleTimeoutMs);
  if (spliced) return spliced;
  return new Promise((resolve) => {
    let error: RelayResult['error'];
    let open = 2;

    const fail = (side: 'downstream' | 'upstream') => (err: Error) => {
      error ??= { side, message: err.message };
      downstream.destroy();
      upstream.destroy();
    };
    downstream.on('error', fail('downstream'));
    upstream.on('error', fail('upstream'));
    const idle =
      idleTimeoutMs > 0
        ? watchIdle(idleTimeoutMs, () => {
            error ??= idleTimeoutError(idleTimeoutMs);
            downstream.destroy();
            upstream.destroy();
          })
        : undefined;

    for (const side of [downstream, upstream]) if (side instanceof Socket) tuneRelaySocket(side);
    const sent = forward(downstream, upstream, idle);
    const received = forward(upstream, downstream, idle);

    const closed = (): void => {
      if (--open > 0) return;
      idle?.stop();
      resolve({ bytesSent: sent(), bytesReceived: received(), ...(error ? { error } : {}) });
    };
    downstream.once('close', closed);
    upstream.once('close', closed);
  });
}

/**
 * How much may wait in a destination before its source is paused. pipe() pauses at the destination's
 * highWaterMark (16 KiB), which an HTTP/2 stream exceeds with every 64 KiB read from a socket, as its
 * writes complete only once the session has flushed them: the socket then stopped and restarted
 * reading (two epoll_ctl calls and an event-loop turn) for every chunk of a bulk transfer.
 */
const MAX_QUEUED_BYTES = 256 * 1024;

/**
 * Chunks this big come from a bulk transfer (TLS hands HTTP/2 its data one 16 KiB record at a time);
 * those that arrive in one event-loop turn go to a socket in one write, which halves the write calls
 * and loopback segments of a bulk transfer. Smaller chunks are written at once: a request/response
 * exchange gains nothing from waiting for the end of the turn.
 */
const COALESCE_FROM_BYTES = 16 * 1024;

/** Moves `from`'s bytes into `to` until `from` ends, telling `idle` of each; returns the count of bytes moved so far. */
function forward(from: Duplex, to: Duplex, idle: { touch(): void } | undefined): () => number {
  let bytes = 0;
  let paused = false;
  let corked = false;
  // An HTTP/2 stream needs no help: its session sends what all streams wrote in one turn together.
  const coalesce = to instanceof Socket;
  const uncork = (): void => {
    corked = false;
    to.uncork();
  };
  const resume = (): void => {
    paused = false;
    from.resume();
  };
  const onData = (chunk: Buffer): void => {
    bytes += chunk.length;
    idle?.touch();
    if (coalesce && !corked && chunk.length >= COALESCE_FROM_BYTES) {
      corked = true;
      to.cork();
      setImmediate(uncork);
    }
    to.write(chunk);
    // write() returned false long before (at highWaterMark), so 'drain' comes once the queue is empty.
    if (!paused && to.writableLength > MAX_QUEUED_BYTES) {
      paused = true;
      from.pause();
      to.once('drain', resume);
    }
  };
  const onEnd = (): void => void to.end();
  from.on('data', onData);
  from.once('end', onEnd);
  // A socket accepted with pauseOnConnect is not flowing, and a 'data' listener alone would not start it.
  from.resume();
  // As pipe() does when its destination closes: stop taking bytes nobody can deliver, and leave the
  // source to its own end (a reset without an error, such as an HTTP/2 CANCEL, closes without 'error').
  to.once('close', () => {
    from.off('data', onData);
    from.off('end', onEnd);
    from.pause();
  });
  return () => bytes;
}

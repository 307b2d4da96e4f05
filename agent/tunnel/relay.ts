// Copies bytes both ways between two connected streams until both directions are done: backpressure
// through pipe() (a slow reader pauses the fast writer, so no buffer grows without bound), half-close
// carried across (a FIN on one side becomes end() on the other), and an error on either side tears
// down both. Counts bytes for telemetry.

import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';

export interface RelayResult {
  /** Bytes read from `downstream` (the client) and written upstream. */
  readonly bytesSent: number;
  /** Bytes read from `upstream` and written to the client. */
  readonly bytesReceived: number;
  /** The first error on either side, if the relay ended in one (a reset, a write after destroy). */
  readonly error?: { readonly side: 'downstream' | 'upstream'; readonly message: string };
}

export function relay(downstream: Duplex, upstream: Duplex): Promise<RelayResult> {
  return new Promise((resolve) => {
    const bytes = countBytes(downstream, upstream);
    let error: RelayResult['error'];
    let open = 2;

    const fail = (side: 'downstream' | 'upstream') => (err: Error) => {
      error ??= { side, message: err.message };
      downstream.destroy();
      upstream.destroy();
    };
    downstream.on('error', fail('downstream'));
    upstream.on('error', fail('upstream'));

    const closed = (): void => {
      if (--open === 0) resolve({ bytesSent: bytes.sent(), bytesReceived: bytes.received(), ...(error ? { error } : {}) });
    };
    downstream.once('close', closed);
    upstream.once('close', closed);

    // A relay must not add Nagle's delay to small writes the endpoints already decided to send.
    for (const side of [downstream, upstream]) if (side instanceof Socket) side.setNoDelay(true);
    downstream.pipe(upstream);
    upstream.pipe(downstream);
  });
}

/** A plain TCP socket, whose kernel-side counters are the relay's byte counts (a TLS socket's count ciphertext). */
const plainSocket = (side: Duplex): side is Socket => side instanceof Socket && !(side instanceof TLSSocket);

/**
 * Bytes read from each side since now. Every byte read from one side is written to the other, so one
 * plain socket's bytesRead and bytesWritten give both counts without a listener on every chunk (a
 * second 'data' listener beside pipe's costs an emit per chunk); only two non-sockets are counted by chunk.
 */
function countBytes(downstream: Duplex, upstream: Duplex): { sent(): number; received(): number } {
  // A socket may have read before the relay started (a server that speaks first): what sits in its
  // readable buffer is still to be relayed, so it counts.
  const sinceRead = (side: Socket): (() => number) => {
    const start = side.bytesRead - side.readableLength;
    return () => side.bytesRead - start;
  };
  const sinceWritten = (side: Socket): (() => number) => {
    const start = side.bytesWritten;
    return () => side.bytesWritten - start;
  };
  const counted = (side: Duplex): (() => number) => {
    let n = 0;
    side.on('data', (chunk: Buffer) => (n += chunk.length));
    return () => n;
  };
  // bytesWritten includes what is still queued in the socket: what the relay handed over, as counted before.
  const sent = plainSocket(downstream) ? sinceRead(downstream) : plainSocket(upstream) ? sinceWritten(upstream) : counted(downstream);
  const received = plainSocket(upstream) ? sinceRead(upstream) : plainSocket(downstream) ? sinceWritten(downstream) : counted(upstream);
  return { sent, received };
}

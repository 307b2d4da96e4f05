// Copies bytes both ways between two connected streams until both directions are done: backpressure
// through pipe() (a slow reader pauses the fast writer, so no buffer grows without bound), half-close
// carried across (a FIN on one side becomes end() on the other), and an error on either side tears
// down both. Counts bytes for telemetry.

import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

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
    let bytesSent = 0;
    let bytesReceived = 0;
    let error: RelayResult['error'];
    let open = 2;

    downstream.on('data', (chunk: Buffer) => (bytesSent += chunk.length));
    upstream.on('data', (chunk: Buffer) => (bytesReceived += chunk.length));

    const fail = (side: 'downstream' | 'upstream') => (err: Error) => {
      error ??= { side, message: err.message };
      downstream.destroy();
      upstream.destroy();
    };
    downstream.on('error', fail('downstream'));
    upstream.on('error', fail('upstream'));

    const closed = (): void => {
      if (--open === 0) resolve({ bytesSent, bytesReceived, ...(error ? { error } : {}) });
    };
    downstream.once('close', closed);
    upstream.once('close', closed);

    // A relay must not add Nagle's delay to small writes the endpoints already decided to send.
    for (const side of [downstream, upstream]) if (side instanceof Socket) side.setNoDelay(true);
    downstream.pipe(upstream);
    upstream.pipe(downstream);
  });
}

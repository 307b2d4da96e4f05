// Detects a stuck HTTP/2 session: data waiting to be sent, nothing moving in either direction, and the
// peer silent when asked. Two Node peers whose windows exceed the kernel's socket buffers can block each
// other this way for good (see settings.ts); the watchdog turns that silent hang into a logged close.

import type { Http2Session, SessionState } from 'node:http2';

export interface StallWatchOptions {
  readonly stallTimeoutMs: number;
  /** How often the session's counters are read. Default: a quarter of the timeout, at most 1 s. */
  readonly sampleMs?: number;
  /** True while some stream of the session has bytes it could not hand to the session yet. */
  readonly pending: () => boolean;
}

/**
 * Any change in the flow-control counters is progress: receiving DATA moves effectiveRecvDataLength,
 * sending DATA or receiving WINDOW_UPDATE moves remoteWindowSize, new streams move the stream ids.
 * nghttp2's outboundQueueSize is neither: it stays 0 in the Node↔Node deadlock (the frames already sit
 * in the write that never completes) and grows with every PING queued, the watchdog's own included.
 */
function signature(state: SessionState): string {
  return [state.effectiveRecvDataLength, state.remoteWindowSize, state.localWindowSize, state.nextStreamID, state.lastProcStreamID].join('/');
}

/**
 * Calls `onStall` once when `session` has had bytes pending and no progress for `stallTimeoutMs`, and did
 * not answer a PING sent halfway through. The PING is what tells a stuck session (its own reads have
 * stopped, so no answer can arrive) from a stream merely waiting for a slow reader's window, which is
 * backpressure and must not take its session's other streams down.
 */
export function watchSessionProgress(session: Http2Session, options: StallWatchOptions, onStall: (reason: string) => void): () => void {
  const sampleMs = options.sampleMs ?? Math.min(1000, Math.max(10, Math.floor(options.stallTimeoutMs / 4)));
  let last = '';
  let quietSince = Date.now();
  let probing = false;
  const progress = (now: number): void => {
    quietSince = now;
    probing = false;
  };
  const timer = setInterval(() => {
    if (session.destroyed || session.closed) return stop();
    const now = Date.now();
    const current = signature(session.state);
    if (current !== last || !options.pending()) {
      last = current;
      return progress(now);
    }
    const quietMs = now - quietSince;
    if (!probing && quietMs >= options.stallTimeoutMs / 2) {
      probing = true;
      const probeStart = quietSince;
      // An answer proves the session still reads; only a probe of the current quiet spell counts.
      session.ping((err) => !err && quietSince === probeStart && progress(Date.now()));
    } else if (quietMs >= options.stallTimeoutMs) {
      stop();
      onStall(`HTTP/2 session stalled: bytes waiting to be sent, no flow-control progress and no PING answer for ${quietMs} ms`);
    }
  }, sampleMs);
  timer.unref();
  const stop = (): void => clearInterval(timer);
  session.once('close', stop);
  return stop;
}

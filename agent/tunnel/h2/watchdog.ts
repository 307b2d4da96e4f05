// Detects a stuck HTTP/2 session: frames queued for the socket, yet nothing moving in either direction
// for a while. Two Node peers with windows above the kernel's socket buffers can block each other
// this way for good (see settings.ts); the watchdog turns that silent hang into a logged close.

import type { Http2Session, SessionState } from 'node:http2';

export interface StallWatchOptions {
  readonly stallTimeoutMs: number;
  /** How often the session's counters are read. Default: a quarter of the timeout, at most 1 s. */
  readonly sampleMs?: number;
}

/**
 * Any change in the flow-control counters is progress: receiving DATA moves effectiveRecvDataLength,
 * sending DATA or receiving WINDOW_UPDATE moves remoteWindowSize, new streams move the stream ids.
 * "Pending" is nghttp2's outbound queue, not a stream's own buffer: a stream waiting for a slow reader's
 * window is backpressure, not a stall, and must not take its session's other streams down.
 */
function signature(state: SessionState): string {
  return [state.effectiveRecvDataLength, state.remoteWindowSize, state.localWindowSize, state.nextStreamID, state.lastProcStreamID, state.outboundQueueSize].join('/');
}

/** Calls `onStall` once when `session` has been stuck for `stallTimeoutMs`; returns the function that stops watching. */
export function watchSessionProgress(session: Http2Session, options: StallWatchOptions, onStall: (reason: string) => void): () => void {
  const sampleMs = options.sampleMs ?? Math.min(1000, Math.max(10, Math.floor(options.stallTimeoutMs / 4)));
  let last = '';
  let unchangedSince = Date.now();
  const timer = setInterval(() => {
    if (session.destroyed || session.closed) return stop();
    const state = session.state;
    const now = Date.now();
    const current = signature(state);
    if (current !== last || (state.outboundQueueSize ?? 0) === 0) {
      last = current;
      unchangedSince = now;
      return;
    }
    if (now - unchangedSince >= options.stallTimeoutMs) {
      stop();
      onStall(`HTTP/2 session stalled: ${state.outboundQueueSize} frames queued and no flow-control progress for ${now - unchangedSince} ms`);
    }
  }, sampleMs);
  timer.unref();
  const stop = (): void => clearInterval(timer);
  session.once('close', stop);
  return stop;
}

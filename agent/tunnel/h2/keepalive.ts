// HTTP/2 PING keepalive as ztunnel's (proxy/h2.rs): a PING after each quiet interval, and a session whose
// peer does not answer within the timeout is dead (a vanished node, a black-holed path, a stuck peer).

import type { Http2Session } from 'node:http2';

export interface KeepaliveOptions {
  readonly intervalMs: number;
  readonly timeoutMs: number;
}

/** Starts pinging `session`; calls `onDead` once if an answer is late. Returns the function that stops it. */
export function keepSessionAlive(session: Http2Session, options: KeepaliveOptions, onDead: (reason: string) => void): () => void {
  let next: NodeJS.Timeout | undefined;
  let deadline: NodeJS.Timeout | undefined;
  let stopped = false;

  const stop = (): void => {
    stopped = true;
    clearTimeout(next);
    clearTimeout(deadline);
  };
  const schedule = (): void => {
    if (stopped) return;
    next = setTimeout(ping, options.intervalMs);
    next.unref();
  };
  const ping = (): void => {
    if (stopped || session.destroyed || session.closed) return;
    const sentAt = Date.now();
    deadline = setTimeout(() => {
      stop();
      onDead(`no answer to an HTTP/2 PING within ${options.timeoutMs} ms`);
    }, options.timeoutMs);
    deadline.unref();
    const sent = session.ping((err) => {
      clearTimeout(deadline);
      // An error here means the session is going away; its own close handling reports why.
      if (err) stop();
      else if (Date.now() - sentAt <= options.timeoutMs) schedule();
    });
    if (!sent) {
      clearTimeout(deadline);
      schedule();
    }
  };

  session.once('close', stop);
  schedule();
  return stop;
}

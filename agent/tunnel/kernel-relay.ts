// Plain TCP relays (same node, passthrough to a destination outside the mesh, plaintext inbound) done
// by the kernel: the addon splices bytes between the two sockets in its own thread
// (native/src/splice_engine.c), so they never become Buffers, chunks and events in this process. The
// sockets stay Node's: they are only stopped from reading, and destroyed once the relay reports its
// end, or its idle timeout. Anything else (TLS, HTTP/2 streams, a socket that already holds unread
// bytes, no addon) is relayed by relay.ts in JavaScript.

import { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { type SpliceOutcome, shutdownSocket, socketFd, spliceRelay } from '../redirect/bpf-binding.js';
import type { RelayResult } from './relay.js';
import { idleTimeoutError } from './relay-idle.js';
import { tuneRelaySocket } from './socket-options.js';

interface StreamHandle {
  reading?: boolean;
  readStop?: () => number;
}

/** The fd of a plain, connected TCP socket that JavaScript has not read ahead of the relay; else undefined. */
function spliceableFd(side: unknown): number | undefined {
  if (!(side instanceof Socket) || side instanceof TLSSocket || side.destroyed || side.connecting) return undefined;
  // Bytes Node already read would have to go first, and in order: leave such a relay to JavaScript.
  if (side.readableLength > 0) return undefined;
  return socketFd(side);
}

/** Stops libuv reading a socket whose bytes a native thread takes from now on (Node's own pause() would not). */
export function stopReading(socket: Socket): void {
  const handle = (socket as unknown as { _handle: StreamHandle | null })._handle;
  if (handle?.reading) {
    handle.readStop?.();
    handle.reading = false;
  }
}

/**
 * A socket a native thread may take over as it is: plain TCP (or a pair's end), connected, and with no
 * byte JavaScript has read ahead of it or still has to write; else undefined.
 */
export function handOverFd(side: unknown): number | undefined {
  const fd = spliceableFd(side);
  return fd !== undefined && (side as Socket).writableLength === 0 ? fd : undefined;
}

/**
 * Relays `downstream` ⇄ `upstream` in the kernel, or returns undefined when this relay is not for the
 * kernel (or the addon could not take it): relay.ts then relays it in JavaScript. The result has
 * relay()'s shape and meaning; the splice thread enforces `idleTimeoutMs` (0: none).
 */
export function kernelRelay(downstream: unknown, upstream: unknown, idleTimeoutMs = 0): Promise<RelayResult> | undefined {
  const down = spliceableFd(downstream);
  const up = spliceableFd(upstream);
  if (down === undefined || up === undefined) return undefined;
  const sockets = [downstream as Socket, upstream as Socket];
  for (const socket of sockets) tuneRelaySocket(socket);
  // The report arrives through the event loop, never before this function has returned.
  let report: (outcome: SpliceOutcome) => void = () => undefined;
  const started = spliceRelay(down, up, (outcome) => report(outcome), idleTimeoutMs);
  // Refused (no fds or memory for its dups and pipes): the sockets are untouched, still reading if they
  // were, and the JavaScript relay takes them. (Stopped first, a socket Node counts as reading would stay
  // stopped: resume() never restarts it.) The call never waits for the splice thread; a socket its epoll
  // then refuses ends the relay through the report, with that error.
  if (!started.ok) return undefined;
  // libuv must not read these any more: from here the addon's thread takes every byte. libuv reads only
  // once this turn of the event loop is over, so no byte can reach JavaScript in between.
  for (const socket of sockets) stopReading(socket);

  return new Promise((resolve) => {
    // While true, both fds are Node's and open; after it, a number may already belong to a new socket.
    let spliced = true;
    // A destroy with a reason (a policy close) emits it here; it is the relay's error, as in relay.ts.
    let error: RelayResult['error'];
    sockets.forEach((socket, i) => socket.on('error', (err: Error) => (error ??= { side: i === 0 ? 'downstream' : 'upstream', message: err.message })));
    report = (outcome) => {
      spliced = false;
      for (const socket of sockets) socket.destroy();
      error ??= outcome.error?.reason === 'idle-timeout' ? idleTimeoutError(idleTimeoutMs) : outcome.error;
      resolve({ bytesSent: outcome.bytesSent, bytesReceived: outcome.bytesReceived, ...(error ? { error } : {}) });
    };
    // The addon holds its own references to both sockets: destroying Node's (a policy change, a drain)
    // must also shut the connections down, or the relay would carry on without them. Its report then
    // follows as usual.
    for (const socket of sockets) {
      const destroy = socket.destroy.bind(socket);
      socket.destroy = (err?: Error): Socket => {
        if (spliced) for (const fd of [down, up]) shutdownSocket(fd);
        spliced = false;
        return destroy(err);
      };
    }
  });
}

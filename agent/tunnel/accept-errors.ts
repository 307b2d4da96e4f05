// What a data-path listener does when Node reports that accepting failed: the failure is counted by
// listener and error and the log says what happened and what to do, once per listener every
// LOG_EVERY_MS. Never a crash: an unhandled 'error' on a net.Server would end the agent and every
// connection it carries. (At the open-files limit libuv usually refuses the connection itself without
// telling Node, and fd-limit-watch.ts reports it; Node hears of EMFILE only when that fails too.)

import { readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import type { Logger } from 'pino';
import type { Counter } from 'prom-client';

const LOG_EVERY_MS = 10_000;

/** Keeps `server` serving through accept failures; `refused` counts them as {listener, error}. */
export function survivesAcceptErrors(server: Server, listener: string, log: Logger, refused: Counter<'listener' | 'error'>): void {
  // Read now as well: at the limit, reading /proc takes an fd the agent no longer has.
  const limitAtStart = openFilesLimit();
  let loggedAt = 0;
  let sinceLog = 0;
  server.on('error', (err: NodeJS.ErrnoException) => {
    const error = err.code ?? 'unknown';
    refused.inc({ listener, error });
    sinceLog++;
    const now = Date.now();
    if (now - loggedAt < LOG_EVERY_MS) return;
    const hint =
      error === 'EMFILE' || error === 'ENFILE'
        ? `the agent is at its open-files limit (${openFilesLimit() ?? `${limitAtStart ?? 'unknown'} when it started`}); each carried connection holds one: raise it (ulimit -n, LimitNOFILE, the container runtime's nofile) and check for a flood of connections`
        : 'the kernel refused to hand over a connection';
    log.error(
      { listener, error, refused: sinceLog },
      `the ${listener} listener cannot accept connections (${error}): ${hint}; ${sinceLog} connection(s) refused since the last report, counted in ambit_accept_errors_total; the agent keeps serving the connections it has`,
    );
    loggedAt = now;
    sinceLog = 0;
  });
}

/** This process's soft open-files limit, as /proc says it. */
function openFilesLimit(): string | undefined {
  try {
    return /^Max open files\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

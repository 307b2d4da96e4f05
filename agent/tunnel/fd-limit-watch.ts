// Says when the agent is at (or close to) its open-files limit. There, whatever needs a new fd fails
// with EMFILE: libuv refuses a connection it cannot accept itself (it accepts it on a reserved fd and
// closes it at once, so the listeners neither spin nor stall, and Node never hears of it), and the
// HBONE engine resets a captured connection it cannot carry (each one fails in the access log and
// istio_tcp_connections_failed_total). Connections already open carry on. Failures free fds at once,
// so a look finds the agent a few fds short of the limit rather than at it: this watch looks once a
// second, counts each time the agent comes within MARGIN of the limit, and logs it with what to do.

import { readFileSync, readdirSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Counter, Gauge } from 'prom-client';

const CHECK_EVERY_MS = 1_000;
const REPEAT_EVERY_MS = 10_000;
/** This close to the limit counts as at it: fds come and go faster than a look once a second sees. */
const margin = (limit: number): number => Math.max(16, Math.ceil(limit * 0.02));

export interface FdLimitMetrics {
  /** 1 while at the limit. */
  readonly atLimit: Gauge;
  /** Times the agent reached the limit. */
  readonly reached: Counter;
}

export class FdLimitWatch {
  readonly #timer: NodeJS.Timeout;
  #limit: number | undefined;
  #since: number | undefined;
  #saidAt = 0;

  constructor(
    private readonly log: Logger,
    private readonly metrics: FdLimitMetrics,
  ) {
    this.#limit = softLimit();
    this.#timer = setInterval(() => this.check(), CHECK_EVERY_MS);
    this.#timer.unref();
  }

  /** One look: open fds against the limit (a failed look, for want of an fd, is itself at the limit). */
  check(): void {
    let open: number | undefined;
    try {
      open = readdirSync('/proc/self/fd').length - 1; // the directory's own fd
      this.#limit = softLimit() ?? this.#limit;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EMFILE' && (err as NodeJS.ErrnoException).code !== 'ENFILE') return;
    }
    const atLimit = open === undefined || (this.#limit !== undefined && open >= this.#limit - margin(this.#limit));
    const now = Date.now();
    if (atLimit) {
      if (this.#since === undefined) {
        this.#since = now;
        this.metrics.reached.inc();
        this.metrics.atLimit.set(1);
      }
      if (now - this.#saidAt < REPEAT_EVERY_MS) return;
      this.#saidAt = now;
      this.log.error(
        { openFiles: open, limit: this.#limit, forMs: now - this.#since },
        `the agent is at its open-files limit (${open === undefined ? `no fd free; the limit read last: ${this.#limit ?? 'unknown'}` : `${open} of ${this.#limit ?? 'unknown'} open`}, for ${Math.round((now - this.#since) / 1000)} s): new connections are refused (closed or reset at once), open ones carry on. Each carried connection holds one or two fds: raise the limit (ulimit -n, LimitNOFILE, the container runtime's nofile) or look for a flood of connections`,
      );
    } else if (this.#since !== undefined) {
      this.log.info({ openFiles: open, limit: this.#limit, forMs: now - this.#since }, `the agent is below its open-files limit again (${open} of ${this.#limit} open) after ${Math.round((now - this.#since) / 1000)} s at it`);
      this.#since = undefined;
      this.#saidAt = 0;
      this.metrics.atLimit.set(0);
    }
  }

  close(): void {
    clearInterval(this.#timer);
  }
}

/** This process's soft open-files limit (it can change at run time: prlimit). */
function softLimit(): number | undefined {
  let value: string | undefined;
  try {
    value = /^Max open files\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1];
  } catch {
    // At the limit this read has no fd either; the last value read stands.
  }
  return value === undefined || value === 'unlimited' ? undefined : Number(value);
}

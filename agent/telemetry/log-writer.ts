// Where the agent's log lines go (stdout): written without ever blocking or stopping the agent. A full
// disk under the log file, a full pipe to the container runtime or a closed stdout costs log lines
// (dropped, counted, and said once the log can be written again), never serving: pino's own stdout
// writer retries a failed write in a loop, which on ENOSPC hangs the whole event loop.
// Lines logged close together share one write: each asynchronous write is a hop through libuv's thread
// pool (a worker woken, then the main thread), which at 1000 requests/s cost every access-log line two
// futex wake-ups and a context switch of its own. A line reaches the log within COALESCE_MS of being
// logged (or once the write before it finished), at the latest at exit.

import { write, writeSync } from 'node:fs';

/** Lines held while a write is in flight or the destination is slow; past this they are dropped. */
const MAX_QUEUED_BYTES = 4 * 1024 * 1024;
/** After a failed write, the next try waits this long (the lines meanwhile queue, up to the bound). */
const RETRY_AFTER_ERROR_MS = 1_000;
/** A full pipe (EAGAIN) is a reader that is behind, not a failure: try again soon. */
const RETRY_AFTER_AGAIN_MS = 50;
/** How long a line logged on an idle log waits for others to share its write: short enough for a reader tailing the log not to notice. */
export const COALESCE_MS = 5;
/** Once this much waits, the write starts without waiting for the rest of the window. */
export const COALESCE_BYTES = 64 * 1024;

export interface LogWriterStats {
  /** Lines lost: queued past the bound, or in a write that failed. */
  readonly droppedLines: number;
  /** The error of the last failed write while writes are failing, e.g. ENOSPC; undefined once a write succeeded. */
  readonly failing?: string;
}

export class LogWriter {
  readonly #fd: number;
  #queue: string[] = [];
  #queuedBytes = 0;
  #writing = false;
  #retryTimer: NodeJS.Timeout | undefined;
  /** The window during which lines gather for the next write, while the log is idle. */
  #coalesceTimer: NodeJS.Timeout | undefined;
  #dropped = 0;
  /** A write stopped partway through a line (a disk filling up takes what fits): the next line must start a new one. */
  #midLine = false;
  /** Since when writes fail, why, and how many lines were dropped before then (to tell how many this episode cost). */
  #failure: { since: Date; error: string; droppedBefore: number } | undefined;

  constructor(fd: number) {
    this.#fd = fd;
    // Lines still queued when the process exits (process.exit after a fatal error) are written then, once.
    process.once('exit', () => this.#flushAtExit());
  }

  /** pino's destination interface: one serialized line, newline included. */
  write(line: string): boolean {
    if (this.#queuedBytes + line.length > MAX_QUEUED_BYTES) {
      this.#dropped++;
      return true;
    }
    this.#queue.push(line);
    this.#queuedBytes += line.length;
    // A write in flight or a pending retry takes these lines along when it is done.
    if (this.#writing || this.#retryTimer !== undefined) return true;
    if (this.#queuedBytes >= COALESCE_BYTES) this.#writeQueued();
    else this.#coalesceTimer ??= this.#coalesceWindow();
    return true;
  }

  stats(): LogWriterStats {
    return { droppedLines: this.#dropped, ...(this.#failure ? { failing: this.#failure.error } : {}) };
  }

  #coalesceWindow(): NodeJS.Timeout {
    // Set only on an idle log with a line queued, and cleared by any write that starts sooner.
    const timer = setTimeout(() => this.#writeQueued(), COALESCE_MS);
    // Lines still waiting when the process exits are written by #flushAtExit.
    timer.unref();
    return timer;
  }

  #writeQueued(): void {
    clearTimeout(this.#coalesceTimer);
    this.#coalesceTimer = undefined;
    const lines = this.#queue;
    const count = lines.length;
    this.#queue = [];
    this.#queuedBytes = 0;
    if (this.#failure) lines.unshift(this.#recoveryNotice(this.#failure, count));
    this.#writing = true;
    this.#writeBuffer(Buffer.from(lines.join('')), count);
  }

  #writeBuffer(buffer: Buffer, lines: number): void {
    write(this.#fd, buffer, 0, buffer.length, null, (err, written) => {
      if (!err && written < buffer.length) {
        this.#midLine = buffer[written - 1] !== 0x0a;
        return this.#writeBuffer(buffer.subarray(written), lines);
      }
      this.#writing = false;
      if (err?.code === 'EAGAIN') {
        // Keep the lines: put them back in front of what came meanwhile.
        this.#queue.unshift(buffer.toString());
        this.#queuedBytes += buffer.length;
        return this.#retryIn(RETRY_AFTER_AGAIN_MS);
      }
      if (err) {
        this.#dropped += lines;
        this.#failure ??= { since: new Date(), error: err.code ?? err.message, droppedBefore: this.#dropped - lines };
        this.#failure.error = err.code ?? err.message;
        return this.#retryIn(RETRY_AFTER_ERROR_MS);
      }
      this.#failure = undefined;
      this.#midLine = false;
      if (this.#queue.length > 0) this.#writeQueued();
    });
  }

  #retryIn(ms: number): void {
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (this.#queue.length > 0) this.#writeQueued();
    }, ms);
    // A pending retry of log lines alone never keeps the process alive.
    this.#retryTimer.unref();
  }

  /** One line in the log's own shape saying what was lost, written first when the log works again. */
  #recoveryNotice(failure: { since: Date; error: string; droppedBefore: number }, queued: number): string {
    const lost = this.#dropped - failure.droppedBefore;
    const msg = `${lost} log lines were dropped since ${failure.since.toISOString()}: writing the log failed (${failure.error}); the agent kept serving. ${queued} lines follow that were held meanwhile`;
    return `${this.#midLine ? '\n' : ''}${JSON.stringify({ level: 40, time: new Date().toISOString(), msg, droppedLines: lost, error: failure.error })}\n`;
  }

  #flushAtExit(): void {
    if (this.#queue.length === 0) return;
    try {
      writeSync(this.#fd, this.#queue.join(''));
    } catch {
      // The process is exiting and the log cannot be written: nothing else can be done with the lines.
    }
  }
}

// Retry delays for sources that talk to a control plane: exponential, capped, and jittered so that the
// agents of a whole cluster, cut off together, do not all come back at the same instant.

export interface BackoffOptions {
  /** The first delay. */
  readonly initialMs: number;
  /** No delay is longer than this. */
  readonly maxMs: number;
}

export class Backoff {
  readonly #options: BackoffOptions;
  #attempt = 0;

  constructor(options: BackoffOptions) {
    this.#options = options;
  }

  /** The next delay: doubling from initialMs up to maxMs, each drawn from [d/2, d] ("equal jitter"). */
  next(): number {
    const ceiling = Math.min(this.#options.maxMs, this.#options.initialMs * 2 ** Math.min(this.#attempt, 30));
    this.#attempt++;
    return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
  }

  /** After a success: the next failure starts from initialMs again. */
  reset(): void {
    this.#attempt = 0;
  }
}

/** Resolves after `ms`, or at once when `signal` aborts; never rejects. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

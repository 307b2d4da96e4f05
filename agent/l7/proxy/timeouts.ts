// The two clocks of a forwarded request, as Envoy's router keeps them: the per-try timeout, armed with
// each attempt, and the route timeout, armed once the downstream request is complete and running until
// the response is (the caller cancels it then); and the waits that end early when the client goes away.

import type { DownstreamRequest } from './downstream.js';

export interface Deadline {
  /** Resolves once the time is up; undefined without a limit (nothing to wait on, nothing to race). */
  readonly expired: Promise<'per-try' | 'overall'> | undefined;
  cancel(): void;
}

/** No limit: no promise that never settles is made per request. */
const NO_DEADLINE: Deadline = { expired: undefined, cancel: () => undefined };

/** One timer: `expired` resolves with its kind after `ms` unless cancelled first. */
class TimerDeadline implements Deadline {
  readonly expired: Promise<'per-try' | 'overall'>;
  #timer: NodeJS.Timeout | undefined = undefined;

  constructor(ms: number, kind: 'per-try' | 'overall') {
    this.expired = new Promise((resolve) => {
      this.#timer = setTimeout(resolve, ms, kind);
    });
  }

  cancel(): void {
    clearTimeout(this.#timer);
  }
}

/** A timer that resolves `expired` with `kind` after `ms`; none without a duration. */
export function deadline(ms: number | undefined, kind: 'per-try' | 'overall'): Deadline {
  return ms === undefined || ms <= 0 ? NO_DEADLINE : new TimerDeadline(ms, kind);
}

/**
 * The route timeout. Envoy's router arms it once the downstream request is complete (end of stream),
 * so a slow upload does not eat into the time the upstream has to answer.
 */
export function routeDeadline(ms: number | undefined, d: DownstreamRequest): Deadline {
  if (ms === undefined || ms <= 0) return NO_DEADLINE;
  let timer: NodeJS.Timeout | undefined;
  let arm = (): void => undefined;
  const expired = new Promise<'overall'>((resolve) => {
    arm = () => void (timer = setTimeout(() => resolve('overall'), ms));
  });
  if (d.bodyEmpty || d.body.readableEnded) arm();
  else d.body.once('end', arm);
  return {
    expired,
    cancel: () => {
      d.body.off('end', arm);
      clearTimeout(timer);
    },
  };
}

/** Resolves 'gone' once the client has gone away. */
export function aborted(signal: AbortSignal): Promise<'gone'> {
  if (signal.aborted) return Promise.resolve('gone');
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve('gone'), { once: true }));
}

/** Resolves true after `ms`, or false as soon as the client goes away. */
export function sleep(ms: number, gone: AbortSignal): Promise<boolean> {
  if (gone.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      gone.removeEventListener('abort', onGone);
      resolve(true);
    }, ms);
    const onGone = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    gone.addEventListener('abort', onGone, { once: true });
  });
}

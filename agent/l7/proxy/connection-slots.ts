// tcp.maxConnections and http.http1MaxPendingRequests across every upstream pool of the agent: each
// upstream connection holds a slot of its cluster's circuit breaker until it closes; a request that
// needs a new connection when none is left waits as pending (while the pending limit allows), and idle
// keep-alive connections of that cluster are closed so that their slots go to the waiters, since
// another client's idle connection must not starve this one. Beyond both limits: 503 UO.

import type { CircuitBreaker, PoolLease } from '../connection-pool.js';

export type SlotGrant = { readonly ok: true; readonly lease: PoolLease } | { readonly ok: false; readonly message: string };

interface BreakerSlots {
  /** Closers of idle keep-alive connections, oldest first. */
  readonly idle: Set<() => void>;
  readonly waiters: ((lease: PoolLease) => void)[];
}

export class ConnectionSlots {
  readonly #byBreaker = new WeakMap<CircuitBreaker, BreakerSlots>();

  /** A slot for a new connection: at once, after waiting as a pending request, or an overflow. */
  acquire(breaker: CircuitBreaker, signal?: AbortSignal): Promise<SlotGrant> {
    const decision = breaker.admitWithoutIdleConnection();
    if (decision.kind === 'connect') return Promise.resolve({ ok: true, lease: this.#tracked(breaker, decision.lease) });
    if (decision.kind === 'overflow') return Promise.resolve({ ok: false, message: decision.message });
    const pending = decision.lease;
    const slots = this.#slots(breaker);
    return new Promise((resolve) => {
      const waiter = (lease: PoolLease): void => {
        pending.release();
        signal?.removeEventListener('abort', onAbort);
        resolve({ ok: true, lease });
      };
      const onAbort = (): void => {
        const i = slots.waiters.indexOf(waiter);
        if (i >= 0) slots.waiters.splice(i, 1);
        pending.release();
        resolve({ ok: false, message: 'request abandoned while pending for an upstream connection' });
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      slots.waiters.push(waiter);
      // An idle connection (of any client) gives its slot up for the waiter.
      const closeIdle = slots.idle.values().next();
      if (!closeIdle.done) {
        slots.idle.delete(closeIdle.value);
        closeIdle.value();
      }
    });
  }

  /** Whether requests are waiting for this cluster's connections: idle ones should not be kept. */
  hasWaiters(breaker: CircuitBreaker): boolean {
    return (this.#byBreaker.get(breaker)?.waiters.length ?? 0) > 0;
  }

  /** Marks a connection idle (kept alive) or busy again; `close` ends it when a waiter needs its slot. */
  setIdle(breaker: CircuitBreaker, close: () => void, idle: boolean): void {
    const slots = this.#slots(breaker);
    if (idle) slots.idle.add(close);
    else slots.idle.delete(close);
  }

  #tracked(breaker: CircuitBreaker, lease: PoolLease): PoolLease {
    let released = false;
    return {
      admitted: true,
      release: () => {
        if (released) return;
        released = true;
        const slots = this.#byBreaker.get(breaker);
        const next = slots?.waiters.shift();
        // The slot passes straight to the first waiter, so a new request cannot overtake it.
        if (next) next(this.#tracked(breaker, lease));
        else lease.release();
      },
    };
  }

  #slots(breaker: CircuitBreaker): BreakerSlots {
    let slots = this.#byBreaker.get(breaker);
    if (!slots) this.#byBreaker.set(breaker, (slots = { idle: new Set(), waiters: [] }));
    return slots;
  }
}

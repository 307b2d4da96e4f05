// The idle timeout of relayed connections (`ambit run --tcp-idle-timeout`): a relay in which no byte
// has moved either way for that long is closed on both sides and reported as an idle timeout, whether
// the splice thread (kernel-relay.ts) or JavaScript (relay.ts) carries it.

import { MAX_SPLICE_IDLE_MS } from '../redirect/bpf-binding.js';
import type { RelayError } from './relay.js';

/**
 * Envoy's tcp_proxy default, which Istio's sidecars and gateways have always applied to TCP: idle
 * connections do not hold two sockets, their fds and the splice thread's pipes for the agent's
 * whole life. ztunnel has none and relies on TCP keepalive, which only finds peers that vanished:
 * 0 restores that.
 */
export const DEFAULT_RELAY_IDLE_TIMEOUT_MS = 3_600_000;

/** The splice thread counts milliseconds in 32 bits: about 49 days. */
export const MAX_RELAY_IDLE_TIMEOUT_MS = MAX_SPLICE_IDLE_MS;

/** Node's timers hold at most this delay (about 24.8 days); longer waits are taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

// Process-wide, because relays are started deep in the data path (outbound, inbound, HBONE) and one
// process runs one agent; `ambit run` sets it once from its flag before the agent starts.
let processIdleTimeoutMs = DEFAULT_RELAY_IDLE_TIMEOUT_MS;

/** Sets the idle timeout of every relay started from now on in this process; 0: none. */
export function setRelayIdleTimeout(ms: number): void {
  if (!Number.isInteger(ms) || ms < 0 || ms > MAX_RELAY_IDLE_TIMEOUT_MS) {
    throw new RangeError(`relay idle timeout ${ms} ms: expected a whole number of milliseconds from 0 to ${MAX_RELAY_IDLE_TIMEOUT_MS}`);
  }
  processIdleTimeoutMs = ms;
}

/** The idle timeout relays get unless told otherwise; 0: none. */
export function relayIdleTimeout(): number {
  return processIdleTimeoutMs;
}

/** The error of a relay its idle timeout ended; telemetry tells it apart by `reason`. */
export function idleTimeoutError(idleTimeoutMs: number): RelayError {
  return {
    side: 'downstream',
    message: `idle timeout: no byte moved either way for ${idleTimeoutMs} ms, so both sides were closed (ambit run --tcp-idle-timeout)`,
    reason: 'idle-timeout',
  };
}

export interface IdleWatch {
  /** Bytes moved: the idle time starts again. */
  touch(): void;
  stop(): void;
}

/**
 * Calls `onIdle` once `touch` has not been called for `idleTimeoutMs`. One timer per relay, re-armed
 * only when it fires early, so that touching costs a clock read and not a timer per chunk.
 */
export function watchIdle(idleTimeoutMs: number, onIdle: () => void): IdleWatch {
  let last = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const arm = (ms: number): void => {
    timer = setTimeout(check, Math.min(Math.max(ms, 1), MAX_TIMER_MS));
    // The relay's sockets keep the process alive while they are open; the watch must not on its own.
    timer.unref();
  };
  const check = (): void => {
    const quiet = performance.now() - last;
    if (quiet >= idleTimeoutMs) {
      timer = undefined;
      onIdle();
    } else arm(Math.ceil(idleTimeoutMs - quiet));
  };
  arm(idleTimeoutMs);
  return {
    touch: () => void (last = performance.now()),
    stop: () => {
      clearTimeout(timer);
      timer = undefined;
    },
  };
}

// The capture watchdog: someone (an operator's cleanup script, another tool) may delete the pins under
// /sys/fs/bpf or detach a link while the agent runs. A link lives only through its pin (the agent keeps
// no fd), so a deleted link pin detaches it and the pod's traffic would leave uncaptured; each period
// the watchdog attaches every link again, a no-op for an intact link that recreates a missing or
// defunct one. Map pins cannot be recreated from here: the programs still hold the maps, but a
// restarted agent would start empty ones, so their loss fails readiness until the agent is restarted.
// It knows the capture only through WatchedCapture (capture.ts depends on it, never the reverse).

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../telemetry/log.js';
import type { AttachOutcome, Result } from './bpf-binding.js';

/** How often the watchdog re-attaches what may have been removed under the agent. */
export const WATCHDOG_PERIOD_MS = 1_000;

/** One link the agent keeps attached: `attach` re-runs the idempotent attachment behind it. */
export interface KeptLink {
  /** What an operator reads: e.g. `ambit_connect4 of pod shop/web` or `ambit_tc_uplink on eth0`. */
  readonly what: string;
  readonly pin: string;
  readonly attach: () => Result<{ outcome: AttachOutcome; linkId: number }>;
}

type LinkCheck =
  | { readonly kind: 'intact' }
  | { readonly kind: 'restored'; readonly what: string; readonly pin: string; readonly outcome: AttachOutcome; readonly linkId: number }
  | { readonly kind: 'failed'; readonly what: string; readonly pin: string; readonly message: string };

/** Re-attaches every kept link; what was not intact is reported, restored or not. */
function restoreLinks(links: readonly KeptLink[]): LinkCheck[] {
  return links.map((link) => {
    const attached = link.attach();
    if (!attached.ok) return { kind: 'failed', what: link.what, pin: link.pin, message: attached.error.message };
    if (attached.value.outcome === 'unchanged') return { kind: 'intact' };
    return { kind: 'restored', what: link.what, pin: link.pin, outcome: attached.value.outcome, linkId: attached.value.linkId };
  });
}

/** The maps capture pins in its directory (agent/redirect/bpf-maps.ts opens them by these names). */
const MAP_PINS = ['ambit_config', 'ambit_cookie', 'ambit_enrolled', 'ambit_origdst', 'ambit_pod_pairs', 'ambit_stats'] as const;

function missingMapPins(pinDir: string): string[] {
  return MAP_PINS.filter((name) => !existsSync(join(pinDir, name)));
}

/** What the watchdog needs of the capture it watches. */
export interface WatchedCapture {
  readonly pinDir: string;
  /** Every link the capture holds now, planned from its current state at each tick. */
  readonly links: () => readonly KeptLink[];
  /** Settles once no reconcile is under way: a tick runs between reconciles, never inside one. */
  readonly settled: () => Promise<void>;
  readonly log: Logger;
}

/** Runs the checks above every period and remembers what it said, so each loss is logged once. */
export class CaptureWatchdog {
  #timer: NodeJS.Timeout | undefined;
  /** Map pins found missing by the last tick: readiness fails while there are any. */
  #missingMaps: readonly string[] = [];
  /** Links that could not be attached again, each said once (a pod on its way out fails until released). */
  readonly #unrestorable = new Set<string>();
  /** The last tick's failure, said once until a tick succeeds again. */
  #failure: string | undefined;

  constructor(private readonly capture: WatchedCapture) {}

  get missingMaps(): readonly string[] {
    return this.#missingMaps;
  }

  start(): void {
    this.#timer = setInterval(() => void this.capture.settled().then(() => this.#tickSafely()), WATCHDOG_PERIOD_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** A tick that fails (EMFILE at the open-files limit, say) is logged and tried again next period: the watchdog never stops the agent. */
  #tickSafely(): void {
    try {
      this.#tick();
      this.#failure = undefined;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (message !== this.#failure) this.capture.log.error({ err }, `capture watchdog: could not check the links this period (${message}); trying again in ${WATCHDOG_PERIOD_MS} ms`);
      this.#failure = message;
    }
  }

  /**
   * One tick: every link capture relies on is attached again (a no-op when intact), so a deleted pin
   * or a detached link is restored within a period and logged as an error; deleted map pins fail
   * readiness (missingMaps, read by the capture's problems()).
   */
  #tick(): void {
    const { log, pinDir } = this.capture;
    const failing = new Set<string>();
    for (const check of restoreLinks(this.capture.links())) {
      if (check.kind === 'failed') failing.add(check.pin);
      if (check.kind === 'restored') log.error({ pin: check.pin, linkId: check.linkId, outcome: check.outcome }, `capture watchdog: ${check.what} had been removed under the agent (its pin ${check.pin} deleted or the link detached); attached again as link ${check.linkId}`);
      else if (check.kind === 'failed' && !this.#unrestorable.has(check.pin)) log.error({ pin: check.pin }, `capture watchdog: ${check.what} is missing and cannot be attached again: ${check.message}`);
    }
    this.#unrestorable.clear();
    for (const pin of failing) this.#unrestorable.add(pin);
    const missing = missingMapPins(pinDir);
    if (missing.length > 0 && missing.join() !== this.#missingMaps.join()) log.error({ pinDir, missing }, `capture watchdog: the eBPF map pins ${missing.join(', ')} were deleted from ${pinDir}; readiness fails until the agent is restarted`);
    this.#missingMaps = missing;
  }
}

// What the capture watchdog checks each tick: someone (an operator's cleanup script, another tool) may
// delete the pins under /sys/fs/bpf or detach a link while the agent runs. A link lives only through its
// pin (the agent keeps no fd), so a deleted link pin detaches it and the pod's traffic would leave
// uncaptured; attaching again is a no-op for an intact link and recreates a missing or defunct one.
// Map pins cannot be recreated from here: the programs still hold the maps, but a restarted agent
// would start empty ones, so their loss fails readiness until the agent is restarted.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { AttachOutcome, Result } from './bpf-binding.js';

/** One link the agent keeps attached: `attach` re-runs the idempotent attachment behind it. */
export interface KeptLink {
  /** What an operator reads: e.g. `ambit_connect4 of pod shop/web` or `ambit_tc_uplink on eth0`. */
  readonly what: string;
  readonly pin: string;
  readonly attach: () => Result<{ outcome: AttachOutcome; linkId: number }>;
}

export type LinkCheck =
  | { readonly kind: 'intact' }
  | { readonly kind: 'restored'; readonly what: string; readonly pin: string; readonly outcome: AttachOutcome; readonly linkId: number }
  | { readonly kind: 'failed'; readonly what: string; readonly pin: string; readonly message: string };

/** Re-attaches every kept link; what was not intact is reported, restored or not. */
export function restoreLinks(links: readonly KeptLink[]): LinkCheck[] {
  return links.map((link) => {
    const attached = link.attach();
    if (!attached.ok) return { kind: 'failed', what: link.what, pin: link.pin, message: attached.error.message };
    if (attached.value.outcome === 'unchanged') return { kind: 'intact' };
    return { kind: 'restored', what: link.what, pin: link.pin, outcome: attached.value.outcome, linkId: attached.value.linkId };
  });
}

/** The maps capture pins in its directory (agent/redirect/bpf-maps.ts opens them by these names). */
export const MAP_PINS = ['ambit_config', 'ambit_cookie', 'ambit_enrolled', 'ambit_origdst', 'ambit_pod_pairs', 'ambit_stats'] as const;

export function missingMapPins(pinDir: string): string[] {
  return MAP_PINS.filter((name) => !existsSync(join(pinDir, name)));
}

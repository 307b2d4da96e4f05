// The eBPF links capture holds, each named by its program and what it is attached to, with the kernel's
// link id from the last attachment: one list from which the watchdog re-attaches what was removed and
// the node console shows what is attached (GET /console/api/node, capture.links).

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { AttachOutcome, Result } from './bpf-binding.js';
import type { KeptLink } from './capture-watchdog.js';

/** What a program is attached to. */
export type AttachPoint =
  /** A cgroup v2 directory: an enrolled pod's (`pod` set) or the agent's own (ambit_getsockopt). */
  | { readonly kind: 'cgroup'; readonly cgroup: string; readonly pod?: string }
  /** tcx ingress of a device in the agent's network namespace: an uplink or a pod's host-side veth. */
  | { readonly kind: 'tcx'; readonly direction: 'ingress'; readonly device: string; readonly ifindex?: number; readonly role: 'uplink' | 'pod-veth' };

/** One link capture keeps attached, with the attachment the watchdog re-runs. */
export interface PlannedLink extends KeptLink {
  readonly program: string;
  readonly attachPoint: AttachPoint;
}

/** One link as an operator reads it: as the last attachment (at most a watchdog period ago) found it. */
export interface CaptureLink {
  readonly program: string;
  readonly attachPoint: AttachPoint;
  readonly pin: string;
  /** The kernel's id of the link (`bpftool link show id <linkId>`). */
  readonly linkId?: number;
  /** Why the last attachment failed: the link is missing until the watchdog can attach it again. */
  readonly error?: string;
}

/** Attaches the program with its link pinned at `pin`: idempotent (bpf-binding.ts). */
type Attach = (pin: string) => Result<{ outcome: AttachOutcome; linkId: number }>;
type LinkState = { readonly linkId: number } | { readonly error: string };

/** What an operator reads in the watchdog's log: e.g. `ambit_connect4 of pod shop/web` or `ambit_tc_uplink on eth0`. */
function linkDescription(program: string, at: AttachPoint): string {
  if (at.kind === 'tcx') return `${program} on ${at.device}`;
  return at.pod !== undefined ? `${program} of pod ${at.pod}` : `the agent's ${program}`;
}

/** The outcome of every attachment, by link pin; the capture's links are planned from its own state. */
export class CaptureLinks {
  readonly #byPin = new Map<string, LinkState>();
  readonly #ifindex = new Map<string, number>();

  /** A link whose attachment records its outcome; its pin directory is created first (bpffs needs it). */
  plan(program: string, attachPoint: AttachPoint, pin: string, attach: Attach): PlannedLink {
    return { program, attachPoint, pin, what: linkDescription(program, attachPoint), attach: () => this.#attach(pin, attach) };
  }

  /** A device's index, learnt when its program was attached (the console shows it beside the name). */
  learnIfindex(device: string, ifindex: number | undefined): void {
    if (ifindex !== undefined) this.#ifindex.set(device, ifindex);
  }

  /** Drops what was recorded for the pins under `dir` (a released pod's). */
  forget(dir: string): void {
    for (const pin of this.#byPin.keys()) if (pin.startsWith(`${dir}/`)) this.#byPin.delete(pin);
  }

  /** The planned links with their last outcome, by pin (a pod's links together). */
  list(planned: readonly PlannedLink[]): CaptureLink[] {
    return planned
      .map(({ program, attachPoint, pin }) => {
        const ifindex = attachPoint.kind === 'tcx' ? this.#ifindex.get(attachPoint.device) : undefined;
        return { program, attachPoint: ifindex !== undefined ? { ...attachPoint, ifindex } : attachPoint, pin, ...this.#byPin.get(pin) };
      })
      .sort((a, b) => (a.pin < b.pin ? -1 : a.pin > b.pin ? 1 : 0));
  }

  #attach(pin: string, attach: Attach): ReturnType<Attach> {
    let attached: ReturnType<Attach>;
    try {
      mkdirSync(dirname(pin), { recursive: true });
      attached = attach(pin);
    } catch (err) {
      attached = { ok: false, error: { code: 'EPIN', message: `cannot create the pin directory ${dirname(pin)}: ${(err as Error).message}` } };
    }
    this.#byPin.set(pin, attached.ok ? { linkId: attached.value.linkId } : { error: attached.error.message });
    return attached;
  }
}

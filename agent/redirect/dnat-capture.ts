// Inbound connections that tc cannot see: a pod of this node that is outside the mesh reaches an
// enrolled pod of this node through a Service VIP. tc on the client's veth sees the VIP (not an
// enrolled address), kube-proxy's DNAT turns it into the pod IP only afterwards, in PREROUTING, and
// the pod's own veth has no ingress on that path: without this, the connection would reach the pod
// in plaintext around the agent, and around PeerAuthentication STRICT and AuthorizationPolicy.
//
// So one nftables table in the node's namespace, hooked in PREROUTING just after DNAT, does what tc
// does for everything else (findings §3), by TPROXY: a new connection to an enrolled pod of this node
// goes to the agent's inbound listener (15006) with its DNAT'd destination, so the agent answers as
// the pod, and conntrack rewrites the replies back to the VIP the client dialled; later packets of a
// connection the agent holds are delivered to it; anything else (a connection that predates
// enrollment) is left alone. A new connection with no listener to take it (the agent is down) is
// dropped: fail closed, as tc does. Packets tc already steered carry its mark and are skipped.
// Node-local clients (kubelet probes, hostNetwork pods) are DNAT'd in OUTPUT, not here, and go direct.
// A table that cannot be written leaves that path open, so the failure is kept (readiness reports it
// until a write succeeds) and the write is retried with backoff, not only at the next snapshot.

import type { Logger } from '../telemetry/log.js';
import { requireTool, runCommand, which } from '../system/commands.js';
import { type Result, STEER_ROUTING, formatMark } from './bpf-binding.js';

export const DNAT_CAPTURE_TABLE = 'ambit_dnat_capture';

/**
 * Each rule's decision, named as the tc programs name theirs in ambit_redirect_decisions_total and
 * written as the rule's comment, by which its counter is read back. Counted in packets, as tc counts.
 */
export const DNAT_REASONS = ['vip-assigned-listener', 'vip-drop-no-listener', 'vip-assigned-established'] as const;
export type DnatReason = (typeof DNAT_REASONS)[number];

/** The whole table for these enrolled pod IPs of this node, as one nft transaction that replaces it. */
export function renderDnatCaptureRules(enrolledIps: readonly string[], inboundPort: number): string {
  const { mark, mask } = STEER_ROUTING;
  const elements = enrolledIps.length > 0 ? ` elements = { ${[...enrolledIps].sort().join(', ')} };` : '';
  // Marked as tc marks what it steers, so the steering rule routes the packet to this host.
  const steer = `meta mark set meta mark & ${formatMark(~mask >>> 0)} | ${formatMark(mark)}`;
  const toEnrolled = `meta l4proto tcp ip daddr @enrolled_local meta mark & ${formatMark(mask)} != ${formatMark(mark)}`;
  return `table ip ${DNAT_CAPTURE_TABLE} {}
delete table ip ${DNAT_CAPTURE_TABLE}
table ip ${DNAT_CAPTURE_TABLE} {
  set enrolled_local { type ipv4_addr;${elements} }
  chain prerouting {
    type filter hook prerouting priority dstnat + 10; policy accept;
    ${toEnrolled} tcp flags & (fin | syn | rst | ack) == syn tproxy to :${inboundPort} ${steer} counter accept comment "vip-assigned-listener"
    ${toEnrolled} tcp flags & (fin | syn | rst | ack) == syn counter drop comment "vip-drop-no-listener"
    ${toEnrolled} socket transparent 1 ${steer} counter accept comment "vip-assigned-established"
  }
}
`;
}

/** A failed write is tried again after 1 s, then 2, 4… up to 30 s, until one succeeds. */
const RETRY_FIRST_MS = 1_000;
const RETRY_MAX_MS = 30_000;

/** Keeps the table in step with the enrolled pods of this node. */
export class DnatCapture {
  readonly #nft = requireTool('nft', 'nftables');
  #applied: string | undefined;
  /** The enrolled pod IPs the table should hold: what a retry writes. */
  #wanted: readonly string[] = [];
  /** Writes run one at a time, in call order, so an older set never lands after a newer one. */
  #writing: Promise<Result<void>> = Promise.resolve({ ok: true, value: undefined });
  /** Why the last write failed, until one succeeds. */
  #failure: string | undefined;
  #retry: NodeJS.Timeout | undefined;
  #retryMs = RETRY_FIRST_MS;

  constructor(
    private readonly inboundPort: number,
    private readonly log: Logger,
  ) {}

  /** Why the table is not what the agent wants (its last write failed); undefined when it is. */
  get failure(): string | undefined {
    return this.#failure;
  }

  /** Writes the table when the set of enrolled pod IPs changed; the first call always writes it. */
  sync(enrolledIps: readonly string[]): Promise<Result<void>> {
    this.#wanted = enrolledIps;
    this.#writing = this.#writing.then(() => this.#write());
    return this.#writing;
  }

  /** Stops retrying (capture released). */
  stop(): void {
    clearTimeout(this.#retry);
    this.#retry = undefined;
  }

  async #write(): Promise<Result<void>> {
    const enrolledIps = this.#wanted;
    const rules = renderDnatCaptureRules(enrolledIps, this.inboundPort);
    if (rules !== this.#applied) {
      try {
        await runCommand(this.#nft, ['-f', '-'], rules);
      } catch (err) {
        const message = `cannot write nft table ${DNAT_CAPTURE_TABLE} (Service VIP traffic from this node's pods outside the mesh would bypass the agent; is nf_tables with tproxy and socket support loaded?): ${(err as Error).message}`;
        if (this.#failure !== undefined) this.log.debug({ retryInMs: this.#retryMs }, `still ${message}`);
        this.#failure = message;
        this.#scheduleRetry();
        return { ok: false, error: { code: 'ENFT', message } };
      }
      this.#applied = rules;
      this.log.debug({ pods: enrolledIps.length }, `nft table ${DNAT_CAPTURE_TABLE} updated`);
    }
    if (this.#failure !== undefined) this.log.info({ pods: enrolledIps.length }, `nft table ${DNAT_CAPTURE_TABLE} written after an earlier failure; Service VIP traffic is captured again`);
    this.#failure = undefined;
    this.#retryMs = RETRY_FIRST_MS;
    this.stop();
    return { ok: true, value: undefined };
  }

  #scheduleRetry(): void {
    if (this.#retry) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      void this.sync(this.#wanted);
    }, this.#retryMs);
    // The agent's servers keep the process alive; a pending retry must not on its own.
    this.#retry.unref();
    this.#retryMs = Math.min(this.#retryMs * 2, RETRY_MAX_MS);
  }
}

/** The packets each rule has decided on, from `nft -j`; undefined if the table cannot be read. */
export async function readDnatCounters(): Promise<Record<DnatReason, number> | undefined> {
  const nft = which('nft');
  if (!nft) return undefined;
  const out = await runCommand(nft, ['-j', 'list', 'chain', 'ip', DNAT_CAPTURE_TABLE, 'prerouting']).catch(() => undefined);
  if (out === undefined) return undefined;
  const counts = Object.fromEntries(DNAT_REASONS.map((r) => [r, 0])) as Record<DnatReason, number>;
  const listing = JSON.parse(out) as { nftables?: { rule?: { comment?: string; expr?: { counter?: { packets?: number } }[] } }[] };
  for (const { rule } of listing.nftables ?? []) {
    const reason = DNAT_REASONS.find((r) => r === rule?.comment);
    const packets = rule?.expr?.find((e) => e.counter)?.counter?.packets;
    if (reason && packets !== undefined) counts[reason] = packets;
  }
  return counts;
}

/** `ambit uninstall`: removes the table from this network namespace; true if there was one. */
export async function removeDnatCapture(): Promise<boolean> {
  const nft = which('nft');
  if (!nft) return false; // without nft, no agent could have written it
  return runCommand(nft, ['delete', 'table', 'ip', DNAT_CAPTURE_TABLE]).then(
    () => true,
    () => false,
  );
}

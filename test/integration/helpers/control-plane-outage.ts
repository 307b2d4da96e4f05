// The lab's control plane (`ambit ca` on 15012 and the kube-apiserver on 6443, in the fabric namespace)
// made unreachable from the nodes, as when istiod's pods are gone: every connection from a node is
// refused (reset). Each node's dials to the CA are counted on the CA's side, so a test sees the
// agents' retries as the CA's host would, without trusting the agents' own logs.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { LAB_API_SERVER } from '../../../agent/lab/layout.js';
import { LAB_CA } from '../../../agent/lab/lab-ca.js';

const execFileAsync = promisify(execFile);
const TABLE = 'ambit_test_outage';

/** Dials of one node to the CA, grouped into attempts: SYNs closer together than this are one attempt (grpc-js may dial twice within a few ms). */
const SAME_ATTEMPT_MS = 400;

export interface NodeAddress {
  readonly name: string;
  readonly ip: string;
}

export class ControlPlaneOutage {
  readonly #netns: string;
  readonly #nodes: readonly NodeAddress[];
  readonly #dials = new Map<string, { count: number; attempts: number[] }>();
  #polling: Promise<void> | undefined;
  #on = false;

  constructor(lab: string, nodes: readonly NodeAddress[]) {
    this.#netns = `ambit-${lab}-fabric`;
    this.#nodes = nodes;
  }

  /** Refuses every connection from the nodes to the CA and the API server, and starts counting dials to the CA. */
  async start(): Promise<void> {
    const counters = this.#nodes.map((n) => `counter ca_dials_${n.name} {}`).join('\n');
    const counting = this.#nodes.map((n) => `ip saddr ${n.ip} ip daddr ${LAB_CA.ip} tcp dport ${LAB_CA.port} tcp flags & (syn | ack) == syn counter name ca_dials_${n.name}`).join('\n');
    // Loopback stays open: the CA still reaches the API server (it is the nodes that are cut off).
    const ruleset = `table inet ${TABLE} {
${counters}
chain input {
type filter hook input priority -5; policy accept;
${counting}
iifname != "lo" ip daddr ${LAB_API_SERVER.ip} tcp dport { ${LAB_CA.port}, ${LAB_API_SERVER.port} } reject with tcp reset
}
}`;
    await this.#run(['nft', '-f', '-'], ruleset);
    // As when istiod's and the API server's pods go: their connections to the nodes end too (a watch
    // held open on a quiet connection would otherwise see nothing of the outage until it is over).
    for (const n of this.#nodes) await this.#run(['ss', '-K', 'dst', n.ip]);
    for (const n of this.#nodes) this.#dials.set(n.name, { count: 0, attempts: [] });
    this.#on = true;
    this.#polling = this.#poll();
  }

  /** Lets the nodes reach the control plane again; returns when the rules are gone. Safe to call twice. */
  async stop(): Promise<void> {
    if (!this.#on) return;
    this.#on = false;
    await this.#polling;
    await this.#run(['nft', 'delete', 'table', 'inet', TABLE]).catch(() => undefined);
  }

  /** When each of `node`'s attempts to reach the CA began, as the CA's host saw them (ms since the epoch). */
  attempts(node: string): readonly number[] {
    return this.#dials.get(node)?.attempts ?? [];
  }

  async #poll(): Promise<void> {
    while (this.#on) {
      const at = Date.now();
      const { stdout } = await execFileAsync('ip', ['netns', 'exec', this.#netns, 'nft', '-j', 'list', 'counters', 'table', 'inet', TABLE]).catch(() => ({ stdout: '' }));
      for (const item of (JSON.parse(stdout || '{"nftables":[]}') as { nftables: { counter?: { name: string; packets: number } }[] }).nftables) {
        const node = item.counter?.name.replace(/^ca_dials_/, '');
        const seen = node === undefined ? undefined : this.#dials.get(node);
        if (!seen || item.counter!.packets === seen.count) continue;
        seen.count = item.counter!.packets;
        const last = seen.attempts.at(-1);
        if (last === undefined || at - last > SAME_ATTEMPT_MS) seen.attempts.push(at);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async #run(argv: readonly string[], input?: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const child = execFile('ip', ['netns', 'exec', this.#netns, ...argv], (err) => (err ? reject(err) : resolve()));
      if (input !== undefined) child.stdin!.end(input);
    });
  }
}

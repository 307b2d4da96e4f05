// What capture asks of the agent's network namespace through iproute2: the rule and route that make the
// kernel deliver tc-steered packets locally, the device a pod's IP is routed through (its host-side
// veth), and a device's index.

import { requireTool, runCommand } from '../system/commands.js';
import { type Result, STEER_ROUTING, formatMark } from './bpf-binding.js';

export class NodeRouting {
  readonly #ip = requireTool('ip', 'iproute2');

  /** tc marks steered packets; this rule and route make the kernel deliver them locally (findings §3). */
  async installSteeringRoute(): Promise<Result<void>> {
    const { mark, mask, table } = STEER_ROUTING;
    try {
      const rules = JSON.parse(await runCommand(this.#ip, ['-j', 'rule', 'show'])) as { fwmark?: string; table?: string }[];
      if (!rules.some((r) => r.fwmark === formatMark(mark) && r.table === String(table))) {
        await runCommand(this.#ip, ['rule', 'add', 'fwmark', `${formatMark(mark)}/${formatMark(mask)}`, 'lookup', String(table)]);
      }
      await runCommand(this.#ip, ['route', 'replace', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', String(table)]);
      return { ok: true, value: undefined };
    } catch (err) {
      return { ok: false, error: { code: 'EROUTE', message: `cannot install the steering route (ip rule fwmark ${formatMark(mark)} lookup ${table}): ${(err as Error).message}` } };
    }
  }

  /** The device the node routes a pod IP to: the pod's host-side veth. */
  async deviceTo(ip: string): Promise<string | undefined> {
    const out = await runCommand(this.#ip, ['-j', 'route', 'get', ip]).catch(() => '[]');
    const route = (JSON.parse(out) as { dev?: string; type?: string }[])[0];
    return route?.dev && route.dev !== 'lo' ? route.dev : undefined;
  }

  /** A device's index, or undefined if `ip` cannot say (the device is gone). */
  async ifindexOf(device: string): Promise<number | undefined> {
    const out = await runCommand(this.#ip, ['-j', 'link', 'show', 'dev', device]).catch(() => '[]');
    const index = (JSON.parse(out) as { ifindex?: unknown }[])[0]?.ifindex;
    return typeof index === 'number' ? index : undefined;
  }
}

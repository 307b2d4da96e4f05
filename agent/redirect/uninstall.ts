// `ambit uninstall`: removes what eBPF capture left on a node — pinned links (removing a pin detaches
// its program from the cgroup or device), pinned maps, the steering rule and route, and the nft tables
// of dnat-capture.ts and reply-steering.ts — so that the node is as it was before Ambit. Pods are
// released at once: their connections no longer redirect.

import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { requireTool, runCommand } from '../system/commands.js';
import { PIN_PARENT, STEER_ROUTING, formatMark } from './bpf-binding.js';
import { DNAT_CAPTURE_TABLE, removeDnatCapture } from './dnat-capture.js';
import { REPLY_STEERING_TABLE, removeReplySteering } from './reply-steering.js';

/** Removes one agent's capture (`scope`) or every agent's; returns what it removed, for the operator. */
export async function uninstallCapture(scope: string | undefined): Promise<string[]> {
  const removed: string[] = [];
  const scopes = scope ? [scope] : await readdir(PIN_PARENT).catch(() => [] as string[]);
  for (const s of scopes) {
    const dir = join(PIN_PARENT, s);
    const present = await readdir(dir).then(() => true, () => false);
    if (!present) continue;
    await rm(dir, { recursive: true, force: true });
    removed.push(`pins, links and maps under ${dir}`);
  }
  if (!scope) await rm(PIN_PARENT, { recursive: true, force: true });

  // The steering rule and its table live in the agent's network namespace (this one).
  const ip = requireTool('ip', 'iproute2');
  const { mark, mask, table } = STEER_ROUTING;
  const rule = ['rule', 'del', 'fwmark', `${formatMark(mark)}/${formatMark(mask)}`, 'lookup', String(table)];
  // One rule per agent start at most, but an interrupted start could have added it twice.
  for (let i = 0; i < 8 && (await runCommand(ip, rule).then(() => true, () => false)); i++) {
    if (i === 0) removed.push(`ip rule fwmark ${formatMark(mark)} lookup ${table}`);
  }
  if (await removeDnatCapture()) removed.push(`nft table ip ${DNAT_CAPTURE_TABLE}`);
  if (await removeReplySteering()) removed.push(`nft table ip ${REPLY_STEERING_TABLE}`);
  const routes = await runCommand(ip, ['route', 'show', 'table', String(table)]).catch(() => '');
  if (routes.trim() !== '') {
    await runCommand(ip, ['route', 'flush', 'table', String(table)]);
    removed.push(`routes of table ${table}`);
  }
  return removed;
}

// `ambit uninstall`: the CLI face of agent/redirect/uninstall.ts.

import { parseArgs } from 'node:util';
import { uninstallCapture } from '../redirect/uninstall.js';

export const UNINSTALL_USAGE = `Usage: ambit uninstall [--bpf-scope <name>]

Removes every eBPF program, link, pin and map Ambit's agents left on this node (or only the agent
whose --bpf-scope is given), and the steering rule and route in this network namespace. Stop the
agent first: a running agent would capture pods again on its next configuration change.
`;

export async function uninstallCommand(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({ args: [...argv], options: { 'bpf-scope': { type: 'string' } } });
  const removed = await uninstallCapture(values['bpf-scope']);
  process.stdout.write(removed.length > 0 ? `removed:\n  ${removed.join('\n  ')}\n` : 'nothing of Ambit\'s capture was left on this node\n');
  return 0;
}

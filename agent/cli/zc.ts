// `ambit zc …`: the tables `istioctl ztunnel-config` prints, read from an agent's /config_dump.

import { parseArgs } from 'node:util';
import type { ConfigDump } from '../admin/config-dump.js';
import { UsageError, parseListenAddress } from './usage.js';

export const ZC_USAGE = `Usage: ambit zc <workloads|services|policies|all> [--admin-address 127.0.0.1:15000] [-o json]

Prints what a running agent knows, as \`istioctl ztunnel-config\` does. In the lab, run it in a node:
  ambit lab exec node/node-a -- npx ambit zc workloads
`;

type Table = readonly (readonly string[])[];

function workloads(dump: ConfigDump): Table {
  return [
    ['NAMESPACE', 'POD NAME', 'ADDRESS', 'NODE', 'WAYPOINT', 'PROTOCOL'],
    ...dump.workloads.map((w) => [w.namespace, w.name, w.workloadIps.join(','), w.node, 'None', w.protocol]),
  ];
}

function services(dump: ConfigDump): Table {
  return [
    ['NAMESPACE', 'SERVICE NAME', 'SERVICE VIP', 'WAYPOINT', 'ENDPOINTS'],
    ...dump.services.map((s) => {
      const endpoints = Object.values(s.endpoints).length;
      const healthy = Object.values(s.endpoints).filter((e) => dump.workloads.some((w) => w.uid === e.workloadUid && w.status === 'Healthy')).length;
      return [s.namespace, s.name, s.vips.map((v) => v.replace(/^[^/]*\//, '')).join(','), 'None', `${healthy}/${endpoints}`];
    }),
  ];
}

function policies(dump: ConfigDump): Table {
  const scope = { Global: 'Global', Namespace: 'Namespace', WorkloadSelector: 'Namespace/WorkloadSelector' } as const;
  const action = (a: string): string => a.charAt(0) + a.slice(1).toLowerCase();
  return [['NAMESPACE', 'POLICY NAME', 'ACTION', 'SCOPE'], ...dump.policies.map((p) => [p.namespace, p.name, action(p.action), scope[p.scope]])];
}

const TABLES = { workloads, services, policies } as const;
const ALIASES: Readonly<Record<string, keyof typeof TABLES | 'all'>> = {
  workload: 'workloads', workloads: 'workloads', w: 'workloads',
  service: 'services', services: 'services', svc: 'services', s: 'services',
  policy: 'policies', policies: 'policies', pol: 'policies', p: 'policies',
  all: 'all',
};

function render(table: Table): string {
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  return table.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

export async function zcCommand(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: { 'admin-address': { type: 'string', default: '127.0.0.1:15000' }, output: { type: 'string', short: 'o', default: 'short' } },
  });
  const what = ALIASES[positionals[0] ?? ''];
  if (!what) throw new UsageError(`ambit zc: what to show? one of workloads, services, policies, all\n${ZC_USAGE}`);
  const admin = parseListenAddress('--admin-address', values['admin-address']);
  const url = `http://${admin.host.includes(':') ? `[${admin.host}]` : admin.host}:${admin.port}/config_dump`;
  const response = await fetch(url, { signal: AbortSignal.timeout(5_000) }).catch((err: Error) => {
    throw new Error(`cannot reach the agent's admin server at ${url}: ${err.cause instanceof Error ? err.cause.message : err.message}; is \`ambit run\` running here (in the lab: ambit lab exec node/<name> -- …)?`);
  });
  if (!response.ok) throw new Error(`the agent's admin server answered ${response.status}: ${(await response.text()).trim()}`);
  const dump = (await response.json()) as ConfigDump;
  if (values.output === 'json') {
    const picked = what === 'all' ? dump : { [what]: dump[what] };
    process.stdout.write(`${JSON.stringify(picked, null, 2)}\n`);
    return 0;
  }
  const names = what === 'all' ? (Object.keys(TABLES) as (keyof typeof TABLES)[]) : [what];
  process.stdout.write(names.map((n) => render(TABLES[n](dump))).join('\n'));
  return 0;
}

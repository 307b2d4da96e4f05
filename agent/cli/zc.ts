// `ambit zc …`: the tables `istioctl ztunnel-config` prints, read from an agent's /config_dump.

import { parseArgs } from 'node:util';
import type { CertDump, ConfigDump, ConnectionDump } from '../admin/config-dump.js';
import { LabError, labExec, labLayout } from '../lab/lab.js';
import { DEFAULT_LAB, checkLabName } from '../lab/layout.js';
import { ambitCommand } from '../lab/supervisor.js';
import { UsageError, parseListenAddress } from './usage.js';

export const ZC_USAGE = `Usage: ambit zc <workloads|services|policies|certificates|connections|all>
         [--admin-address 127.0.0.1:15000] [-o short|wide|json] [--node <name> [--lab <name>]]
         connections: [--direction inbound|outbound] [--raw]

Prints what a running agent knows, as \`istioctl ztunnel-config\` does. --node asks the agent of that
lab node (in its network namespace); without it, the agent listening on --admin-address here:
  ambit zc certificates --node node-a
  ambit lab exec node/node-a -- npx ambit zc workloads
-o wide adds the peer identity and age of each connection.
`;

type Table = readonly (readonly string[])[];

export interface TableOptions {
  /** `wide`: extra columns Ambit knows beyond istioctl's. */
  readonly wide?: boolean;
  /** connections: only this direction. */
  readonly direction?: 'inbound' | 'outbound';
  /** connections: addresses as they are, not named after the workload or service that holds them. */
  readonly raw?: boolean;
  /** The clock, for VALID CERT and AGE. */
  readonly now?: Date;
}

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

/**
 * As istioctl's PrintSecretSummary: one row per certificate (Leaf, Intermediate…, Root), serial in hex,
 * VALID CERT true while now is inside its validity; an identity without certificates gets one NA row.
 */
export function certificates(dump: ConfigDump, options: TableOptions = {}): Table {
  const now = options.now ?? new Date();
  const rows: string[][] = [['CERTIFICATE NAME', 'TYPE', 'STATUS', 'VALID CERT', 'SERIAL NUMBER', 'NOT AFTER', 'NOT BEFORE']];
  for (const c of dump.certificates ?? []) {
    const status = c.state.startsWith('Unavailable') ? 'Unavailable' : c.state;
    if (c.certChain.length === 0) {
      rows.push([c.identity, 'NA', status, 'false', 'NA', 'NA', 'NA']);
      continue;
    }
    const row = (type: string, cert: CertDump): string[] => [c.identity, type, status, String(validAt(cert, now)), serialHex(cert.serialNumber), cert.expirationTime || 'NA', cert.validFrom || 'NA'];
    c.certChain.forEach((cert, i) => rows.push(row(i === 0 ? 'Leaf' : 'Intermediate', cert)));
    for (const cert of c.rootCerts ?? []) rows.push(row('Root', cert));
  }
  return rows;
}

function validAt(cert: CertDump, now: Date): boolean {
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.expirationTime);
  return Number.isFinite(from) && Number.isFinite(to) && now.getTime() > from && now.getTime() < to;
}

function serialHex(decimal: string): string {
  try {
    return BigInt(decimal).toString(16);
  } catch {
    return decimal;
  }
}

/**
 * As istioctl's PrintConnectionsSummary: per local workload, inbound rows (LOCAL = the pod's address,
 * REMOTE = the client) and outbound rows (LOCAL = the client, REMOTE = where bytes go, REMOTE TARGET =
 * where the pod connected), addresses named after the service or workload that holds them.
 * -o wide adds the peer's proven identity and how long the connection has been open.
 */
export function connections(dump: ConfigDump, options: TableOptions = {}): Table {
  const now = options.now ?? new Date();
  const names = new Map<string, string>();
  for (const s of dump.services) {
    const vip = s.vips[0]?.replace(/^[^/]*\//, '');
    if (vip) names.set(vip, s.hostname);
  }
  for (const w of dump.workloads) {
    const ip = w.workloadIps[0];
    if (ip && !names.has(ip)) names.set(ip, `${w.name}.${w.namespace}`);
  }
  const name = (addr: string | null): string => {
    if (!addr) return '';
    if (options.raw) return addr;
    const split = splitHostPort(addr);
    const known = split && names.get(split.host);
    return known && split ? joinHostPort(known, split.port) : addr;
  };
  const header = ['WORKLOAD', 'DIRECTION', 'LOCAL', 'REMOTE', 'REMOTE TARGET', 'PROTOCOL'];
  const rows: string[][] = [options.wide ? [...header, 'REMOTE IDENTITY', 'AGE'] : header];
  const extra = (c: ConnectionDump, peer: string | undefined): string[] => (options.wide ? [peer ?? '-', age(now.getTime() - Date.parse(c.startedAt))] : []);
  const states = Object.values(dump.workloadState ?? {}).sort((a, b) => a.info.namespace.localeCompare(b.info.namespace) || a.info.name.localeCompare(b.info.name));
  for (const wl of states) {
    const workload = `${wl.info.name}.${wl.info.namespace}`;
    if (options.direction !== 'outbound') {
      for (const c of wl.connections.inbound) rows.push([workload, 'Inbound', name(c.actualDst), name(c.src), c.originalDst ?? '', c.protocol, ...extra(c, c.srcIdentity)]);
    }
    if (options.direction !== 'inbound') {
      for (const c of wl.connections.outbound) rows.push([workload, 'Outbound', name(c.src), name(c.actualDst), name(c.originalDst), c.protocol, ...extra(c, c.dstIdentity)]);
    }
  }
  return rows;
}

/** kubectl's short ages: 45s, 3m12s, 2h5m, 3d4h. */
function age(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '-';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}

function splitHostPort(addr: string): { host: string; port: string } | undefined {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(addr);
  const host = match?.[1] ?? match?.[2];
  return host && match?.[3] ? { host, port: match[3] } : undefined;
}

function joinHostPort(host: string, port: string): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

type TableName = 'workloads' | 'services' | 'policies' | 'certificates' | 'connections';
export const TABLES: Readonly<Record<TableName, (dump: ConfigDump, options: TableOptions) => Table>> = { workloads, services, policies, certificates, connections };
/** What `-o json` shows of each table: the part of the dump it is printed from. */
const DUMP_KEY: Readonly<Record<TableName, keyof ConfigDump>> = { workloads: 'workloads', services: 'services', policies: 'policies', certificates: 'certificates', connections: 'workloadState' };
const ALIASES: Readonly<Record<string, TableName | 'all'>> = {
  workload: 'workloads', workloads: 'workloads', w: 'workloads',
  service: 'services', services: 'services', svc: 'services', s: 'services',
  policy: 'policies', policies: 'policies', pol: 'policies', p: 'policies',
  certificate: 'certificates', certificates: 'certificates', certs: 'certificates', cert: 'certificates',
  connections: 'connections', connection: 'connections', cons: 'connections',
  all: 'all',
};

export function renderTable(table: Table): string {
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  return table.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

export async function zcCommand(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      'admin-address': { type: 'string', default: '127.0.0.1:15000' },
      output: { type: 'string', short: 'o', default: 'short' },
      node: { type: 'string' },
      lab: { type: 'string', default: process.env['AMBIT_LAB'] ?? DEFAULT_LAB },
      direction: { type: 'string' },
      raw: { type: 'boolean', default: false },
    },
  });
  const what = ALIASES[positionals[0] ?? ''];
  if (!what) throw new UsageError(`ambit zc: what to show? one of workloads, services, policies, certificates, connections, all\n${ZC_USAGE}`);
  if (!['short', 'wide', 'json'].includes(values.output)) throw new UsageError(`-o ${values.output}: expected short, wide or json`);
  const direction = values.direction;
  if (direction !== undefined && direction !== 'inbound' && direction !== 'outbound') throw new UsageError(`--direction ${direction}: expected inbound or outbound`);
  const admin = parseListenAddress('--admin-address', values['admin-address']);
  if (values.node !== undefined) return zcOnLabNode(values.lab, values.node, argv);

  const url = `http://${admin.host.includes(':') ? `[${admin.host}]` : admin.host}:${admin.port}/config_dump`;
  const response = await fetch(url, { signal: AbortSignal.timeout(5_000) }).catch((err: Error) => {
    throw new Error(`cannot reach the agent's admin server at ${url}: ${err.cause instanceof Error ? err.cause.message : err.message}; is \`ambit run\` running here (in the lab: ambit zc … --node <name>)?`);
  });
  if (!response.ok) throw new Error(`the agent's admin server answered ${response.status}: ${(await response.text()).trim()}`);
  const dump = (await response.json()) as ConfigDump;
  const names = what === 'all' ? (Object.keys(TABLES) as TableName[]) : [what];
  if (values.output === 'json') {
    const picked = what === 'all' ? dump : { [DUMP_KEY[what]]: dump[DUMP_KEY[what]] };
    process.stdout.write(`${JSON.stringify(picked, null, 2)}\n`);
    return 0;
  }
  const options: TableOptions = { wide: values.output === 'wide', raw: values.raw, ...(direction ? { direction } : {}) };
  process.stdout.write(names.map((n) => renderTable(TABLES[n](dump, options))).join('\n'));
  return 0;
}

/**
 * istioctl's --node picks the ztunnel of a node; a lab node's agent listens on loopback inside the
 * node's network namespace, so this command runs itself again there, without --node.
 */
async function zcOnLabNode(lab: string, node: string, argv: readonly string[]): Promise<number> {
  const nameProblem = checkLabName(lab);
  if (nameProblem) throw new UsageError(nameProblem);
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--node' || arg === '--lab') i++;
    else if (!arg.startsWith('--node=') && !arg.startsWith('--lab=')) rest.push(arg);
  }
  try {
    return await labExec(labLayout(lab), `node/${node}`, [...ambitCommand(), 'zc', ...rest]);
  } catch (err) {
    if (err instanceof LabError) throw new Error(`--node ${node}: ${err.message}`);
    throw err;
  }
}

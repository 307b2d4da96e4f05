// `ambit zc …`: the tables `istioctl ztunnel-config` prints, read from an agent's /config_dump.

import { parseArgs } from 'node:util';
import type { ConfigDump } from '../admin/config-dump.js';
import { LabError, labExec, labLayout } from '../lab/lab-state.js';
import { DEFAULT_LAB, checkLabName } from '../lab/layout.js';
import { ambitCommand } from '../lab/supervisor.js';
import { goJson, goYaml, tabwriter } from './go-format.js';
import { UsageError, parseListenAddress } from './usage.js';
import { type DocumentName, istioctlDocument } from './zc-documents.js';
import { type Table, type TableOptions, certificates, connections, policies, services, workloads } from './zc-tables.js';

export const ZC_USAGE = `Usage: ambit zc <workloads|services|policies|certificates|connections|all>
         [--admin-address 127.0.0.1:15000] [-o short|wide|json|yaml] [--node <name> [--lab <name>]]
         connections: [--direction inbound|outbound] [--raw]

Prints what a running agent knows, as \`istioctl ztunnel-config\` does. --node asks the agent of that
lab node (in its network namespace); without it, the agent listening on --admin-address here:
  ambit zc certificates --node node-a
  ambit lab exec node/node-a -- npx ambit zc workloads
-o json and -o yaml print what istioctl prints for the same dump (\`all\`: the whole dump as the
agent served it); -o wide adds the peer identity and age of each connection.
`;

type TableName = DocumentName;
export const TABLES: Readonly<Record<TableName, (dump: ConfigDump, options: TableOptions) => Table>> = { workloads, services, policies, certificates, connections };
const ALIASES: Readonly<Record<string, TableName | 'all'>> = {
  workload: 'workloads', workloads: 'workloads', w: 'workloads',
  service: 'services', services: 'services', svc: 'services', s: 'services',
  policy: 'policies', policies: 'policies', pol: 'policies', p: 'policies',
  certificate: 'certificates', certificates: 'certificates', certs: 'certificates', cert: 'certificates',
  connections: 'connections', connection: 'connections', cons: 'connections',
  all: 'all',
};

/** istioctl's tabwriters pad cells with one space, the certificates table with five. */
export function renderTable(name: TableName, table: Table): string {
  return tabwriter(table, name === 'certificates' ? 5 : 1);
}

/**
 * Exactly what istioctl writes for `what` with `-o <output>`: a table (`all`: each preceded by an empty
 * line, as PrintFullSummary), or the document istioctl marshals (`all`: the dump's own JSON) followed by
 * the newline of its Fprintln.
 */
export function zcOutput(what: TableName | 'all', output: 'short' | 'wide' | 'json' | 'yaml', dumpJson: string, options: TableOptions = {}): string {
  const dump = JSON.parse(dumpJson) as ConfigDump;
  if (output === 'json' || output === 'yaml') {
    const json = what === 'all' ? dumpJson : goJson(istioctlDocument(what, dump));
    return `${output === 'yaml' ? goYaml(json) : json}\n`;
  }
  const tableOptions: TableOptions = { ...options, wide: output === 'wide' };
  if (what !== 'all') return renderTable(what, TABLES[what](dump, tableOptions));
  return (Object.keys(TABLES) as TableName[]).map((n) => `\n${renderTable(n, TABLES[n](dump, tableOptions))}`).join('');
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
  const output = values.output;
  if (output !== 'short' && output !== 'wide' && output !== 'json' && output !== 'yaml') throw new UsageError(`-o ${output}: expected short, wide, json or yaml`);
  const direction = values.direction;
  if (direction !== undefined && direction !== 'inbound' && direction !== 'outbound') throw new UsageError(`--direction ${direction}: expected inbound or outbound`);
  const admin = parseListenAddress('--admin-address', values['admin-address']);
  if (values.node !== undefined) return zcOnLabNode(values.lab, values.node, argv);

  const url = `http://${admin.host.includes(':') ? `[${admin.host}]` : admin.host}:${admin.port}/config_dump`;
  const response = await fetch(url, { signal: AbortSignal.timeout(5_000) }).catch((err: Error) => {
    throw new Error(`cannot reach the agent's admin server at ${url}: ${err.cause instanceof Error ? err.cause.message : err.message}; is \`ambit run\` running here (in the lab: ambit zc … --node <name>)?`);
  });
  if (!response.ok) throw new Error(`the agent's admin server answered ${response.status}: ${(await response.text()).trim()}`);
  const body = await response.text();
  process.stdout.write(zcOutput(what, output, body, { raw: values.raw, ...(direction ? { direction } : {}) }));
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

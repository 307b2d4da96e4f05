// `ambit run`: one node agent. Loads the mesh from its source, keeps it current, and serves readiness.
// The data path (redirect, tunnel, policy) plugs in here as it lands.

import { parseArgs } from 'node:util';
import { AdminServer } from '../admin/admin-server.js';
import { ReadinessServer } from '../admin/readiness.js';
import { LocalFileSource } from '../sources/local-files.js';
import { WorkloadStore } from '../state/store.js';
import { type LogLevel, createLogger, isLogLevel } from '../telemetry/log.js';
import { UsageError, parseListenAddress } from './usage.js';

export const RUN_USAGE = `Usage: ambit run --config <file|dir>... --node <name> [options]

Runs the node agent for one node. In local mode it reads the Kubernetes and Istio YAML in the given
files and directories (searched recursively for *.yaml and *.yml) and applies every change live.

Options:
  --config <path>              YAML file or directory (repeatable; also positional arguments)
  --node <name>                this node's name (default: $NODE_NAME)
  --trust-domain <domain>      SPIFFE trust domain (default: cluster.local)
  --cluster-domain <domain>    Kubernetes cluster domain (default: cluster.local)
  --readiness-address <ip:port> readiness server (default: 0.0.0.0:15021)
  --admin-address <ip:port>    admin server, keep it on loopback (default: 127.0.0.1:15000)
  --log-level <level>          trace|debug|info|warn|error (default: $AMBIT_LOG_LEVEL or info)
`;

export async function runCommand(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      config: { type: 'string', multiple: true },
      node: { type: 'string' },
      'trust-domain': { type: 'string', default: 'cluster.local' },
      'cluster-domain': { type: 'string', default: 'cluster.local' },
      'readiness-address': { type: 'string', default: '0.0.0.0:15021' },
      'admin-address': { type: 'string', default: '127.0.0.1:15000' },
      'log-level': { type: 'string', default: process.env['AMBIT_LOG_LEVEL'] ?? 'info' },
    },
  });
  const paths = [...(values.config ?? []), ...positionals];
  if (paths.length === 0) throw new UsageError('ambit run: no configuration given; pass --config <file|dir> (local mode)');
  const node = values.node ?? process.env['NODE_NAME'];
  if (!node) throw new UsageError('ambit run: which node is this? pass --node <name> or set NODE_NAME');
  const level = values['log-level'];
  if (!isLogLevel(level)) throw new UsageError(`ambit run: --log-level ${JSON.stringify(level)}: expected one of trace, debug, info, warn, error`);
  const readinessAddress = parseListenAddress('--readiness-address', values['readiness-address']);
  const adminAddress = parseListenAddress('--admin-address', values['admin-address']);

  const log = createLogger(level as LogLevel, { node });
  const store = new WorkloadStore();
  const source = new LocalFileSource(
    { paths, trustDomain: values['trust-domain'], clusterDomain: values['cluster-domain'] },
    store,
    log,
  );

  const readiness = new ReadinessServer(() => (store.current ? undefined : 'configuration not loaded yet'));
  let quit!: (reason: string) => void;
  const stopped = new Promise<string>((resolve) => (quit = resolve));
  process.once('SIGTERM', () => quit('SIGTERM'));
  process.once('SIGINT', () => quit('SIGINT'));
  const admin = new AdminServer({ store, node, log, quit: () => quit('POST /quitquitquit') });
  for (const [server, name, flag, address] of [
    [readiness, 'readiness', '--readiness-address', readinessAddress],
    [admin, 'admin', '--admin-address', adminAddress],
  ] as const) {
    const bound = await server.listen(address.host, address.port).catch((err: Error) => {
      throw new Error(`cannot listen on ${address.host}:${address.port} (${flag}): ${err.message}; is another agent running here? Choose another with ${flag}`);
    });
    log.info({ address: bound, server: name }, `${name} server listening on ${bound.address}:${bound.port}`);
  }

  const first = await source.load();
  if (!first.snapshot.nodes.has(node)) {
    log.warn({ node }, `node "${node}" is not among the configured Node objects; this agent will enroll no pods until it is`);
  }
  await source.watch();
  log.info({ paths }, 'agent ready; watching the configuration for changes');

  const reason = await stopped;
  log.info({ reason }, `${reason}: shutting down`);
  source.close();
  await Promise.all([readiness.close(), admin.close()]);
  return 0;
}

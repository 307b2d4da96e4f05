// `ambit run`: one node agent, configured from flags; see agent/node-agent.ts for what it runs.

import { parseArgs } from 'node:util';
import { type CaptureConfig, NodeAgent, type NodeAgentConfig } from '../node-agent.js';
import type { SourceChoice } from '../sources/source.js';
import { type LogLevel, createLogger, isLogLevel } from '../telemetry/log.js';
import { UsageError, parseChoice, parseDuration, parseListenAddress } from './usage.js';

export const RUN_USAGE = `Usage: ambit run --config <file|dir>... --node <name> [options]
       ambit run --source kubernetes [--kubeconfig <file>] --node <name> [options]

Runs the node agent for one node. In local mode it reads the Kubernetes and Istio YAML in the given
files and directories (searched recursively for *.yaml and *.yml) and applies every change live.
In kubernetes mode it lists and watches the same kinds of objects from the API server (in a pod: its
service-account token; elsewhere: --kubeconfig or $KUBECONFIG), enrolls the pods of its own node and
routes to every endpoint; while the API server is unreachable the last good state stays in force.

Options:
  --source local|kubernetes    where the mesh comes from (default: local)
  --config <path>              YAML file or directory (repeatable; also positional arguments;
                               local mode only)
  --kubeconfig <file>          kubeconfig for --source kubernetes (default: in-cluster
                               configuration when KUBERNETES_SERVICE_HOST is set, else $KUBECONFIG)
  --node <name>                this node's name (default: $NODE_NAME)
  --trust-domain <domain>      SPIFFE trust domain (default: cluster.local)
  --cluster-domain <domain>    Kubernetes cluster domain (default: cluster.local)
  --capture ebpf|none          capture enrolled pods' traffic with eBPF (default: ebpf; needs root)
  --pod-cgroup <template>      a pod's cgroup v2 directory, with {namespace}, {name}, {uid}
                               (needed for --capture ebpf; the lab passes its own)
  --bpf-scope <name>           pins go under /sys/fs/bpf/ambit/<name> (default: the node name)
  --uplink <device>            device other nodes' traffic arrives on (repeatable; default: the
                               one holding the node's InternalIP)
  --state-dir <dir>            the agent's state; its own CA root is kept in <dir>/ca unless
                               --ca-dir is given (default: /var/lib/ambit)
  --ca-dir <dir>               a plugged-in CA in Istio's cacerts layout: ca-cert.pem, ca-key.pem,
                               root-cert.pem, cert-chain.pem (every node must share one CA)
  --cert-ttl <duration>        workload certificate lifetime, renewed at half life (default: 24h)
  --drain-timeout <duration>   on SIGTERM, how long open connections may finish (default: 5s)
  --readiness-address <ip:port> readiness server (default: 0.0.0.0:15021)
  --admin-address <ip:port>    admin server, keep it on loopback (default: 127.0.0.1:15000)
  --metrics-address <ip:port>  Prometheus metrics (default: 0.0.0.0:15020)
  --log-level <level>          trace|debug|info|warn|error (default: $AMBIT_LOG_LEVEL or info)
`;

/** The agent's configuration and log level from `ambit run`'s arguments; throws UsageError on a mistake. */
export function parseRunArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): { readonly config: NodeAgentConfig; readonly logLevel: LogLevel } {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      source: { type: 'string', default: 'local' },
      config: { type: 'string', multiple: true },
      kubeconfig: { type: 'string' },
      node: { type: 'string' },
      'trust-domain': { type: 'string', default: 'cluster.local' },
      'cluster-domain': { type: 'string', default: 'cluster.local' },
      capture: { type: 'string', default: 'ebpf' },
      'pod-cgroup': { type: 'string' },
      'bpf-scope': { type: 'string' },
      uplink: { type: 'string', multiple: true },
      'state-dir': { type: 'string', default: '/var/lib/ambit' },
      'ca-dir': { type: 'string' },
      'cert-ttl': { type: 'string', default: '24h' },
      'drain-timeout': { type: 'string', default: '5s' },
      'readiness-address': { type: 'string', default: '0.0.0.0:15021' },
      'admin-address': { type: 'string', default: '127.0.0.1:15000' },
      'metrics-address': { type: 'string', default: '0.0.0.0:15020' },
      'log-level': { type: 'string', default: env['AMBIT_LOG_LEVEL'] ?? 'info' },
    },
  });
  const paths = [...(values.config ?? []), ...positionals];
  let source: SourceChoice;
  if (parseChoice('--source', values.source, ['local', 'kubernetes']) === 'local') {
    if (paths.length === 0) throw new UsageError('ambit run: no configuration given; pass --config <file|dir> (local mode) or --source kubernetes');
    if (values.kubeconfig !== undefined) throw new UsageError('ambit run: --kubeconfig is for --source kubernetes');
    source = { kind: 'local', paths };
  } else {
    if (paths.length > 0) throw new UsageError(`ambit run: --source kubernetes reads the API server, not files; drop ${paths.join(' ')}`);
    source = { kind: 'kubernetes', ...(values.kubeconfig !== undefined ? { kubeconfig: values.kubeconfig } : {}) };
  }
  const node = values.node ?? env['NODE_NAME'];
  if (!node) throw new UsageError('ambit run: which node is this? pass --node <name> or set NODE_NAME');
  const level = values['log-level'];
  if (!isLogLevel(level)) throw new UsageError(`ambit run: --log-level ${JSON.stringify(level)}: expected one of trace, debug, info, warn, error`);
  let capture: CaptureConfig;
  if (values.capture === 'none') capture = { mode: 'none' };
  else if (values.capture === 'ebpf') {
    const template = values['pod-cgroup'];
    if (!template) throw new UsageError('ambit run: --capture ebpf needs --pod-cgroup <template> to find pods\' cgroups (or pass --capture none)');
    capture = { mode: 'ebpf', podCgroupTemplate: template, scope: values['bpf-scope'] ?? node, uplinks: values.uplink ?? [] };
  } else throw new UsageError(`ambit run: --capture ${JSON.stringify(values.capture)}: expected ebpf or none`);

  return {
    logLevel: level,
    config: {
      node,
      paths,
      source,
      trustDomain: values['trust-domain'],
      clusterDomain: values['cluster-domain'],
      readiness: parseListenAddress('--readiness-address', values['readiness-address']),
      admin: parseListenAddress('--admin-address', values['admin-address']),
      metrics: parseListenAddress('--metrics-address', values['metrics-address']),
      capture,
      identity: {
        stateDir: values['state-dir'],
        ...(values['ca-dir'] !== undefined ? { caDir: values['ca-dir'] } : {}),
        certTtlSeconds: Math.ceil(parseDuration('--cert-ttl', values['cert-ttl']) / 1000),
      },
      drainMs: parseDuration('--drain-timeout', values['drain-timeout']),
    },
  };
}

export async function runCommand(argv: readonly string[]): Promise<number> {
  const { config, logLevel } = parseRunArgs(argv);
  const log = createLogger(logLevel, { node: config.node });
  let quit!: (reason: string) => void;
  const stopped = new Promise<string>((resolve) => (quit = resolve));
  process.once('SIGTERM', () => quit('SIGTERM'));
  process.once('SIGINT', () => quit('SIGINT'));
  const agent = new NodeAgent(config, log, quit);
  try {
    await agent.start();
  } catch (err) {
    log.fatal({ err }, (err as Error).message);
    await agent.stop();
    throw err;
  }
  const reason = await stopped;
  log.info({ reason }, `${reason}: shutting down`);
  await agent.stop();
  return 0;
}

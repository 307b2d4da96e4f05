// `ambit run`: one node agent, configured from flags; see agent/node-agent.ts for what it runs.

import { flushCompileCache } from 'node:module';
import { parseDnsUpstream } from '../dns/node-upstream.js';
import { parseArgs } from 'node:util';
import { HANDOVER_SIGNAL } from '../lifecycle/handover.js';
import { type CaptureConfig, NodeAgent, type NodeAgentConfig } from '../node-agent.js';
import { DEFAULT_ISTIOD_ADDRESS, DEFAULT_ROOT_CERT_FILE, DEFAULT_TOKEN_FILE, type IstiodConnectionOptions } from '../identity/istiod-channel.js';
import { KUBEPODS } from '../redirect/pod-cgroups.js';
import type { RemoteClusterPaths } from '../sources/local-files.js';
import type { SourceChoice } from '../sources/source.js';
import { cgroup2Root } from '../system/cgroups.js';
import { DEFAULT_CLUSTER_ID } from '../telemetry/connections.js';
import { xdsNodeInfoFromEnv } from '../sources/xds/node.js';
import { type LogLevel, createLogger, isLogLevel } from '../telemetry/log.js';
import { TRACING_FLAGS, TRACING_USAGE, parseTracingFlags } from '../telemetry/tracing.js';
import { OTLP_METRICS_FLAGS, OTLP_METRICS_USAGE, parseOtlpMetricsFlags } from '../telemetry/otlp-metrics.js';
import { FLOW_LOG_FLAGS, FLOW_LOG_USAGE, parseFlowLogFlags } from '../telemetry/flow-log-flags.js';
import { UsageError, parseChoice, parseDuration, parseListenAddress } from './usage.js';
import { DEFAULT_RELAY_IDLE_TIMEOUT_MS, MAX_RELAY_IDLE_TIMEOUT_MS, setRelayIdleTimeout } from '../tunnel/relay-idle.js';
import { HBONE_FLAGS, HBONE_USAGE, parseHboneFlags } from './hbone-flags.js';
import { L7_FLAGS, L7_USAGE, parseL7Flags } from './l7-flags.js';

export const RUN_USAGE = `Usage: ambit run --config <file|dir>... --node <name> [options]
       ambit run --source kubernetes [--kubeconfig <file>] --node <name> [options]
       ambit run --source xds [--istiod-address <host:port>] --node <name> [options]

Runs the node agent for one node. In local mode it reads the Kubernetes and Istio YAML in the given
files and directories (searched recursively for *.yaml and *.yml) and applies every change live.
In kubernetes mode it lists and watches the same kinds of objects from the API server (in a pod: its
service-account token; elsewhere: --kubeconfig or $KUBECONFIG), enrolls the pods of its own node and
routes to every endpoint; while the API server is unreachable the last good state stays in force.
In xds mode it takes workloads, services and policies from istiod's workload xDS (delta ADS), as
ztunnel does, and certificates from istiod's CA; it needs INSTANCE_IP, POD_NAME and POD_NAMESPACE.

Options:
  --source local|kubernetes|xds  where the mesh comes from (default: local)
  --config <path>              YAML file or directory (repeatable; also positional arguments;
                               local mode only)
  --kubeconfig <file>          kubeconfig for --source kubernetes (default: in-cluster
                               configuration when KUBERNETES_SERVICE_HOST is set, else $KUBECONFIG)
  --istiod-address <host:port> istiod for --source xds and --ca istiod (default: $XDS_ADDRESS or
                               ${DEFAULT_ISTIOD_ADDRESS})
  --istiod-root-cert <file>    the root istiod's serving certificate chains to
                               (default: ${DEFAULT_ROOT_CERT_FILE})
  --istiod-token <file>        projected service-account token sent to istiod
                               (default: ${DEFAULT_TOKEN_FILE})
  --cluster-id <id>            this cluster's id: metrics' *_cluster labels, istiod's clusterid
                               (default: $ISTIO_META_CLUSTER_ID or Kubernetes)
  --network <name>             this cluster's network: workloads on others are reached through their
                               east-west gateway (default: the topology.istio.io/network label of the
                               istio-system Namespace, else none; local and kubernetes modes)
  --remote-config <id>=<path>  another cluster's YAML, file or directory (repeatable; local mode): its
                               pods and global Services (istio.io/global: "true") join the mesh
                               (docs/multicluster.md; in kubernetes mode Istio's remote secrets do)
  --ca embedded|istiod         who signs workload certificates (default: istiod with --source xds,
                               else embedded: the agent's own CA, see --ca-dir); istiod is Istio's
                               CA API, served by istiod or by \`ambit ca\` (what the DaemonSet uses)
  --ca-address <host:port>     the CA for --ca istiod, e.g. ambit-ca.ambit-system.svc:15012
                               (default: $CA_ADDRESS or --istiod-address); it is reached with
                               --istiod-root-cert and --istiod-token
  --node <name>                this node's name (default: $NODE_NAME)
  --trust-domain <domain>      SPIFFE trust domain (default: cluster.local)
  --cluster-domain <domain>    Kubernetes cluster domain (default: cluster.local)
  --capture ebpf|none          capture enrolled pods' traffic with eBPF (default: ebpf; needs root)
  --pod-cgroup kubepods|<template>
                               how to find a pod's cgroup v2 directory (needed for --capture ebpf):
                               kubepods finds the kubelet's, by pod UID, for the systemd and
                               cgroupfs drivers and every QoS class; a template names it with
                               {namespace}, {name}, {uid} (the lab passes its own)
  --cgroup-root <dir>          the host's cgroup2 mount, for kubepods (default: where this process
                               sees cgroup2 mounted)
  --bpf-scope <name>           pins go under /sys/fs/bpf/ambit/<name> (default: the node name)
  --socks5                     SOCKS5 (no authentication, CONNECT) on 127.0.0.1:15080 inside every
                               enrolled pod of this node, as ztunnel's opt-in listener: the pod's
                               processes reach the mesh without capture (needs --capture ebpf: the
                               pod's network namespace is found through its cgroup)
  --no-dns-capture             leave pods' DNS alone. By default (with --capture ebpf), as Istio's
                               ambient mode since 1.25, each enrolled pod's DNS (UDP and TCP port 53)
                               goes to the agent's proxy on <node IP>:15053: Services and ServiceEntry
                               hosts (automatic VIPs too) answered from the mesh, the rest forwarded;
                               a pod opts out with the annotation ambient.istio.io/dns-capture: "false"
  --dns-upstream <ip[:port]>   where the DNS proxy forwards what the mesh does not know (default: the
                               first IPv4 nameserver of the agent's /etc/resolv.conf)
  --uplink <device>            device other nodes' traffic arrives on (repeatable; default: the
                               one holding the node's InternalIP)
  --state-dir <dir>            the agent's state; its own CA root is kept in <dir>/ca unless
                               --ca-dir is given (default: /var/lib/ambit)
  --ca-dir <dir>               a plugged-in CA in Istio's cacerts layout: ca-cert.pem, ca-key.pem,
                               root-cert.pem, cert-chain.pem (every node must share one CA)
  --cert-ttl <duration>        workload certificate lifetime, renewed at half life (default: 24h)
  --drain-timeout <duration>   on SIGTERM, how long open connections may finish (default: 5s)
  --handover retire|wait       when another agent of this node and scope runs (an upgrade): both
                               listen (SO_REUSEPORT) and this one adopts the pinned maps and links;
                               once ready it asks the old one to stop accepting and drain (retire,
                               the default), or leaves that to the orchestrator (wait: a DaemonSet
                               with maxSurge, which stops the old pod once the new one is ready)
  --tcp-idle-timeout <duration>
                               a relayed TCP connection (L4, or a tunnel's stream) in which no byte
                               moved either way for this long is closed on both sides; 0: never, as
                               ztunnel (default: ${DEFAULT_RELAY_IDLE_TIMEOUT_MS / 3_600_000}h, Envoy's tcp_proxy; docs/security.md)
${L7_USAGE}${HBONE_USAGE}  --readiness-address <ip:port> readiness server (default: 0.0.0.0:15021)
  --admin-address <ip:port>    admin server, keep it on loopback (default: 127.0.0.1:15000)
  --metrics-address <ip:port>  Prometheus metrics (default: 0.0.0.0:15020)
${TRACING_USAGE}  --log-level <level>          trace|debug|info|warn|error (default: $AMBIT_LOG_LEVEL or info)
${OTLP_METRICS_USAGE}${FLOW_LOG_USAGE}`;

/** The agent's configuration and log level from `ambit run`'s arguments; throws UsageError on a mistake. */
export function parseRunArgs(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): { readonly config: NodeAgentConfig; readonly logLevel: LogLevel; readonly relayIdleTimeoutMs: number } {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    // --no-dns-capture turns off a capture that is on by default.
    allowNegative: true,
    options: {
      source: { type: 'string', default: 'local' },
      config: { type: 'string', multiple: true },
      kubeconfig: { type: 'string' },
      'istiod-address': { type: 'string' },
      'istiod-root-cert': { type: 'string', default: DEFAULT_ROOT_CERT_FILE },
      'istiod-token': { type: 'string', default: DEFAULT_TOKEN_FILE },
      'cluster-id': { type: 'string' },
      network: { type: 'string' },
      'remote-config': { type: 'string', multiple: true },
      ca: { type: 'string' },
      'ca-address': { type: 'string' },
      node: { type: 'string' },
      'trust-domain': { type: 'string', default: 'cluster.local' },
      'cluster-domain': { type: 'string', default: 'cluster.local' },
      capture: { type: 'string', default: 'ebpf' },
      'pod-cgroup': { type: 'string' },
      'cgroup-root': { type: 'string' },
      'bpf-scope': { type: 'string' },
      uplink: { type: 'string', multiple: true },
      socks5: { type: 'boolean', default: false },
      'dns-capture': { type: 'boolean' },
      'dns-upstream': { type: 'string' },
      'state-dir': { type: 'string', default: '/var/lib/ambit' },
      'ca-dir': { type: 'string' },
      'cert-ttl': { type: 'string', default: '24h' },
      'drain-timeout': { type: 'string', default: '5s' },
      handover: { type: 'string', default: 'retire' },
      'tcp-idle-timeout': { type: 'string' },
      'readiness-address': { type: 'string', default: '0.0.0.0:15021' },
      'admin-address': { type: 'string', default: '127.0.0.1:15000' },
      'metrics-address': { type: 'string', default: '0.0.0.0:15020' },
      'log-level': { type: 'string', default: env['AMBIT_LOG_LEVEL'] ?? 'info' },
      ...TRACING_FLAGS,
      ...OTLP_METRICS_FLAGS,
      ...FLOW_LOG_FLAGS,
      ...L7_FLAGS,
      ...HBONE_FLAGS,
    },
  });
  const paths = [...(values.config ?? []), ...positionals];
  const node = values.node ?? env['NODE_NAME'];
  if (!node) throw new UsageError('ambit run: which node is this? pass --node <name> or set NODE_NAME');
  const sourceKind = parseChoice('--source', values.source, ['local', 'kubernetes', 'xds']);
  if (sourceKind !== 'local' && paths.length > 0) throw new UsageError(`ambit run: --source ${sourceKind} does not read files; drop ${paths.join(' ')}`);
  if (sourceKind !== 'kubernetes' && values.kubeconfig !== undefined) throw new UsageError('ambit run: --kubeconfig is for --source kubernetes');
  const clusterId = values['cluster-id'] ?? env['ISTIO_META_CLUSTER_ID'] ?? DEFAULT_CLUSTER_ID;
  const istiod: IstiodConnectionOptions = {
    address: values['istiod-address'] ?? env['XDS_ADDRESS'] ?? DEFAULT_ISTIOD_ADDRESS,
    rootCertFile: values['istiod-root-cert'],
    tokenFile: values['istiod-token'],
    clusterId,
  };
  if (sourceKind === 'xds' && values.network !== undefined) throw new UsageError('ambit run: --network is for local and kubernetes modes; with --source xds istiod states every workload\'s network');
  if (values.network === '') throw new UsageError('ambit run: --network needs a name (omit it for the istio-system label or none)');
  const cluster = { id: clusterId, ...(values.network !== undefined ? { network: values.network } : {}) };
  let source: SourceChoice;
  if (sourceKind === 'local') {
    if (paths.length === 0) throw new UsageError('ambit run: no configuration given; pass --config <file|dir> (local mode), --source kubernetes or --source xds');
    const remotes = parseRemoteConfigs(values['remote-config'] ?? [], clusterId);
    source = { kind: 'local', paths, cluster, ...(remotes.length > 0 ? { remotes } : {}) };
  } else if (values['remote-config'] !== undefined) {
    throw new UsageError('ambit run: --remote-config is for local mode; in kubernetes mode remote clusters come from Istio\'s remote secrets (label istio/multiCluster=true in istio-system)');
  } else if (sourceKind === 'kubernetes') {
    source = { kind: 'kubernetes', cluster, ...(values.kubeconfig !== undefined ? { kubeconfig: values.kubeconfig } : {}) };
  } else {
    if (!env['INSTANCE_IP']) throw new UsageError('ambit run: --source xds needs INSTANCE_IP, the agent pod\'s IP (the DaemonSet sets it from status.podIP)');
    const { info } = xdsNodeInfoFromEnv(env);
    source = { kind: 'xds', istiod, node: { ...info, nodeName: node, metadata: { ...info.metadata, CLUSTER_ID: clusterId } } };
  }
  const ca = parseChoice('--ca', values.ca ?? (sourceKind === 'xds' ? 'istiod' : 'embedded'), ['embedded', 'istiod']);
  if (ca === 'istiod' && values['ca-dir'] !== undefined) throw new UsageError('ambit run: --ca-dir is the embedded CA\'s; with --ca istiod, istiod signs');
  const caAddress = values['ca-address'] ?? env['CA_ADDRESS'];
  if (ca === 'embedded' && values['ca-address'] !== undefined) throw new UsageError('ambit run: --ca-address is for --ca istiod; the embedded CA runs inside the agent');
  const level = values['log-level'];
  if (!isLogLevel(level)) throw new UsageError(`ambit run: --log-level ${JSON.stringify(level)}: expected one of trace, debug, info, warn, error`);
  let capture: CaptureConfig;
  if (values.capture === 'none') {
    if (values['dns-capture'] === true) throw new UsageError('ambit run: --dns-capture attaches eBPF programs to pods\' cgroups, so it needs --capture ebpf (with --pod-cgroup)');
    if (values['dns-upstream'] !== undefined) throw new UsageError('ambit run: --dns-upstream is where captured DNS is forwarded, and --capture none captures nothing; drop it');
    if (values.socks5) throw new UsageError('ambit run: --socks5 finds each pod\'s network namespace through its cgroup, so it needs --capture ebpf (with --pod-cgroup)');
    capture = { mode: 'none' };
  }
  else if (values.capture === 'ebpf') {
    const how = values['pod-cgroup'];
    if (!how) throw new UsageError('ambit run: --capture ebpf needs --pod-cgroup kubepods|<template> to find pods\' cgroups (or pass --capture none)');
    if (how !== KUBEPODS && values['cgroup-root'] !== undefined) throw new UsageError('ambit run: --cgroup-root is for --pod-cgroup kubepods');
    const podCgroup = how === KUBEPODS ? ({ kind: 'kubepods', root: values['cgroup-root'] ?? cgroup2Root() } as const) : ({ kind: 'template', template: how } as const);
    const engine = parseHboneFlags(values);
    if (!engine.ok) throw new UsageError(`ambit run: ${engine.message}`);
    const upstreamText = values['dns-upstream'];
    const upstream = upstreamText === undefined ? undefined : parseDnsUpstream(upstreamText);
    if (upstreamText !== undefined && !upstream) throw new UsageError(`ambit run: --dns-upstream ${JSON.stringify(upstreamText)}: expected an IPv4 address, optionally with :port`);
    // On unless turned off, as Istio's ambient mode proxies DNS by default since 1.25.
    const dnsCapture = values['dns-capture'] ?? true;
    if (upstream && !dnsCapture) throw new UsageError('ambit run: --dns-upstream is where captured DNS is forwarded; drop it, or drop --no-dns-capture');
    capture = {
      mode: 'ebpf',
      podCgroup,
      scope: values['bpf-scope'] ?? node,
      uplinks: values.uplink ?? [],
      ...(values.socks5 ? { socks5: true } : {}),
      ...(dnsCapture ? { dns: upstream ? { upstream } : {} } : {}),
      hboneEngine: engine.options,
    };
  } else throw new UsageError(`ambit run: --capture ${JSON.stringify(values.capture)}: expected ebpf or none`);

  const otlp = parseOtlpMetricsFlags(values, parseDuration, env);
  if (!otlp.ok) throw new UsageError(`ambit run: ${otlp.message}`);

  const flows = parseFlowLogFlags(values);
  if (!flows.ok) throw new UsageError(`ambit run: ${flows.message}`);

  const tracing = parseTracingFlags(values, env);
  if (!tracing.ok) throw new UsageError(`ambit run: ${tracing.message}`);

  const l7 = parseL7Flags(values);
  if (!l7.ok) throw new UsageError(`ambit run: ${l7.message}`);

  const idle = values['tcp-idle-timeout'];
  const relayIdleTimeoutMs = idle === undefined ? DEFAULT_RELAY_IDLE_TIMEOUT_MS : idle.trim() === '0' ? 0 : parseDuration('--tcp-idle-timeout', idle);
  if (relayIdleTimeoutMs > MAX_RELAY_IDLE_TIMEOUT_MS) throw new UsageError(`ambit run: --tcp-idle-timeout ${idle}: at most ${MAX_RELAY_IDLE_TIMEOUT_MS} ms (about 49 days); 0 turns it off`);

  return {
    logLevel: level,
    relayIdleTimeoutMs,
    config: {
      node,
      source,
      trustDomain: values['trust-domain'],
      clusterDomain: values['cluster-domain'],
      clusterId,
      readiness: parseListenAddress('--readiness-address', values['readiness-address']),
      admin: parseListenAddress('--admin-address', values['admin-address']),
      metrics: parseListenAddress('--metrics-address', values['metrics-address']),
      capture,
      identity: {
        stateDir: values['state-dir'],
        ...(values['ca-dir'] !== undefined ? { caDir: values['ca-dir'] } : {}),
        certTtlSeconds: Math.ceil(parseDuration('--cert-ttl', values['cert-ttl']) / 1000),
        ...(ca === 'istiod' ? { istiodCa: { ...istiod, ...(caAddress !== undefined ? { address: caAddress } : {}) } } : {}),
      },
      drainMs: parseDuration('--drain-timeout', values['drain-timeout']),
      handover: parseChoice('--handover', values.handover, ['retire', 'wait']),
      ...(tracing.tracing ? { tracing: tracing.tracing } : {}),
      ...(otlp.otlpMetrics ? { otlpMetrics: otlp.otlpMetrics } : {}),
      ...(flows.flowLog ? { flowLog: flows.flowLog } : {}),
      http: { limits: l7.limits, pathNormalization: l7.pathNormalization },
    },
  };
}

/** `--remote-config <id>=<path>` values, several paths of one cluster grouped under its ID. */
function parseRemoteConfigs(values: readonly string[], ownCluster: string): RemoteClusterPaths[] {
  const byCluster = new Map<string, string[]>();
  for (const value of values) {
    const at = value.indexOf('=');
    const id = at > 0 ? value.slice(0, at) : '';
    const path = at > 0 ? value.slice(at + 1) : '';
    if (id === '' || path === '') throw new UsageError(`ambit run: --remote-config ${JSON.stringify(value)}: expected <cluster id>=<file|dir>, e.g. cluster2=./cluster2/`);
    if (id === ownCluster) throw new UsageError(`ambit run: --remote-config ${JSON.stringify(value)}: ${id} is this agent's own cluster (--cluster-id); its files go in --config`);
    byCluster.set(id, [...(byCluster.get(id) ?? []), path]);
  }
  return [...byCluster].map(([cluster, paths]) => ({ cluster, paths }));
}

export async function runCommand(argv: readonly string[]): Promise<number> {
  const { config, logLevel, relayIdleTimeoutMs } = parseRunArgs(argv);
  // Process-wide: relays start deep in the data path, and a process runs one agent (relay-idle.ts).
  setRelayIdleTimeout(relayIdleTimeoutMs);
  const log = createLogger(logLevel, { node: config.node });
  let quit!: (reason: string) => void;
  const stopped = new Promise<string>((resolve) => (quit = resolve));
  process.once('SIGTERM', () => quit('SIGTERM'));
  process.once('SIGINT', () => quit('SIGINT'));
  // A newer agent of this node serves beside us now (agent/lifecycle/handover.ts): stop accepting and drain.
  process.once(HANDOVER_SIGNAL, () => quit('a newer agent took over'));
  const agent = new NodeAgent(config, log, quit);
  try {
    await agent.start();
  } catch (err) {
    log.fatal({ err }, (err as Error).message);
    await agent.stop();
    throw err;
  }
  // Node writes the compile cache (cli/main.ts) at a clean exit, which a crashed agent never has: now,
  // with the start's modules loaded, so that a restart after a crash finds them compiled.
  flushCompileCache();
  const reason = await stopped;
  log.info({ reason }, `${reason}: shutting down`);
  await agent.stop();
  // Everything is closed; a handle something left open must not keep a retired agent beside its successor.
  setTimeout(() => process.exit(0), 2_000).unref();
  return 0;
}

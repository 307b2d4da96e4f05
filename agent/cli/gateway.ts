// `ambit gateway`: an east-west gateway for one network (agent/gateway/), configured from flags.

import { parseArgs } from 'node:util';
import { type GatewayProcessConfig, GatewayProcess } from '../gateway/gateway-process.js';
import { DEFAULT_ISTIOD_ADDRESS } from '../identity/istiod-channel.js';
import type { SourceChoice } from '../sources/source.js';
import { DEFAULT_CLUSTER_ID } from '../telemetry/connections.js';
import { type LogLevel, createLogger, isLogLevel } from '../telemetry/log.js';
import { HBONE_FLAGS, HBONE_USAGE, parseHboneFlags } from './hbone-flags.js';
import { UsageError, parseChoice, parseDuration, parseListenAddress } from './usage.js';

export const GATEWAY_USAGE = `Usage: ambit gateway --config <file|dir>... --pod <namespace/name> [options]
       ambit gateway --source kubernetes [--kubeconfig <file>] [options]

Runs an east-west gateway: clients on other networks reach this network's Services through it with
double HBONE (Istio's istio-east-west gateway). It terminates the outer tunnel on 15008 with its own
pod's identity, authorizes the client with the AuthorizationPolicies selecting its pod, and relays the
inner tunnel, still encrypted end to end, to an endpoint's node on its HBONE port 15008.

Options:
  --source local|kubernetes    where the mesh comes from (default: local)
  --config <file|dir>          Kubernetes/Istio YAML to read (repeatable; local mode only)
  --kubeconfig <file>          kubeconfig for --source kubernetes (default: in-cluster)
  --pod <namespace/name>       the gateway's own pod (default: $POD_NAMESPACE/$POD_NAME)
  --hbone-address <host:port>  the outer tunnels' listener (default: 0.0.0.0:15008)
  --readiness-address <host:port>  GET /healthz/ready (default: 0.0.0.0:15021, Istio's status port):
                               503 with the reason while the gateway has no mesh configuration, its
                               own pod is not in it, it has no valid certificate, or it drains
  --metrics-address <host:port>  Prometheus /metrics (default: 0.0.0.0:15020): Istio's TCP metrics of
                               every tunnel (reporter "source"), refusals with their response_flags
  --drain-timeout <duration>   on SIGTERM, how long open tunnels may finish after GOAWAY (default: 5s)
  --ca embedded|istiod         who signs the gateway's certificate (default: embedded, see --ca-dir;
                               istiod is Istio's CA API, served by istiod or \`ambit ca\`)
  --ca-address <host:port>     the CA for --ca istiod (default: $CA_ADDRESS, $XDS_ADDRESS or ${DEFAULT_ISTIOD_ADDRESS})
  --istiod-root-cert <file>    the root the CA's serving certificate chains to
  --istiod-token <file>        the gateway's service account token for the CA
  --cluster-id <id>            this cluster's ID, sent to the CA and the metrics' *_cluster label
                               (default: $ISTIO_META_CLUSTER_ID or ${DEFAULT_CLUSTER_ID})
  --state-dir <dir>            the embedded CA's state (default: /var/lib/ambit-gateway)
  --ca-dir <dir>               the mesh's plugged-in CA (Istio's cacerts layout), shared with the agents
  --cert-ttl <duration>        certificate lifetime, renewed at half life (default: 24h)
  --trust-domain <domain>      SPIFFE trust domain (default: cluster.local)
  --cluster-domain <domain>    Kubernetes cluster domain (default: cluster.local)
  --log-level <level>          trace|debug|info|warn|error (default: $AMBIT_LOG_LEVEL or info)
${HBONE_USAGE}`;

export function parseGatewayArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): { config: GatewayProcessConfig; logLevel: LogLevel } {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      source: { type: 'string', default: 'local' },
      config: { type: 'string', multiple: true },
      kubeconfig: { type: 'string' },
      pod: { type: 'string' },
      'hbone-address': { type: 'string', default: '0.0.0.0:15008' },
      'readiness-address': { type: 'string', default: '0.0.0.0:15021' },
      'metrics-address': { type: 'string', default: '0.0.0.0:15020' },
      'drain-timeout': { type: 'string', default: '5s' },
      ca: { type: 'string', default: 'embedded' },
      'ca-address': { type: 'string' },
      'istiod-root-cert': { type: 'string' },
      'istiod-token': { type: 'string' },
      'cluster-id': { type: 'string' },
      'state-dir': { type: 'string', default: '/var/lib/ambit-gateway' },
      'ca-dir': { type: 'string' },
      'cert-ttl': { type: 'string', default: '24h' },
      'trust-domain': { type: 'string', default: 'cluster.local' },
      'cluster-domain': { type: 'string', default: 'cluster.local' },
      'log-level': { type: 'string', default: env['AMBIT_LOG_LEVEL'] ?? 'info' },
      ...HBONE_FLAGS,
    },
  });
  const paths = [...(values.config ?? []), ...positionals];
  const kind = parseChoice('--source', values.source, ['local', 'kubernetes']);
  if (kind === 'local' && paths.length === 0) throw new UsageError('ambit gateway: no configuration given; pass --config <file|dir> or --source kubernetes');
  if (kind !== 'local' && paths.length > 0) throw new UsageError(`ambit gateway: --source ${kind} does not read files; drop ${paths.join(' ')}`);
  const source: SourceChoice = kind === 'local' ? { kind: 'local', paths } : { kind: 'kubernetes', ...(values.kubeconfig !== undefined ? { kubeconfig: values.kubeconfig } : {}) };
  const pod = values.pod ?? (env['POD_NAMESPACE'] && env['POD_NAME'] ? `${env['POD_NAMESPACE']}/${env['POD_NAME']}` : undefined);
  if (!pod || !/^[^/]+\/[^/]+$/.test(pod)) throw new UsageError('ambit gateway: which pod is this gateway? pass --pod <namespace/name> or set POD_NAMESPACE and POD_NAME');
  const level = values['log-level'];
  if (!isLogLevel(level)) throw new UsageError(`ambit gateway: --log-level ${JSON.stringify(level)}: expected one of trace, debug, info, warn, error`);
  const ca = parseChoice('--ca', values.ca, ['embedded', 'istiod']);
  if (ca === 'istiod' && values['ca-dir'] !== undefined) throw new UsageError('ambit gateway: --ca-dir is the embedded CA\'s; with --ca istiod, istiod signs');
  const certTtlSeconds = Math.ceil(parseDuration('--cert-ttl', values['cert-ttl']) / 1000);
  const identity: GatewayProcessConfig['identity'] =
    ca === 'istiod'
      ? {
          ca,
          certTtlSeconds,
          istiod: {
            address: values['ca-address'] ?? env['CA_ADDRESS'] ?? env['XDS_ADDRESS'] ?? DEFAULT_ISTIOD_ADDRESS,
            ...(values['istiod-root-cert'] !== undefined ? { rootCertFile: values['istiod-root-cert'] } : {}),
            ...(values['istiod-token'] !== undefined ? { tokenFile: values['istiod-token'] } : {}),
          },
        }
      : { ca, certTtlSeconds, stateDir: values['state-dir'], ...(values['ca-dir'] !== undefined ? { caDir: values['ca-dir'] } : {}) };
  const engine = parseHboneFlags(values);
  if (!engine.ok) throw new UsageError(`ambit gateway: ${engine.message}`);
  return {
    logLevel: level,
    config: {
      source,
      trustDomain: values['trust-domain'],
      clusterDomain: values['cluster-domain'],
      clusterId: values['cluster-id'] ?? env['ISTIO_META_CLUSTER_ID'] ?? DEFAULT_CLUSTER_ID,
      pod,
      hbone: parseListenAddress('--hbone-address', values['hbone-address']),
      readiness: parseListenAddress('--readiness-address', values['readiness-address']),
      metrics: parseListenAddress('--metrics-address', values['metrics-address']),
      drainMs: parseDuration('--drain-timeout', values['drain-timeout']),
      engine: engine.options,
      identity,
    },
  };
}

export async function gatewayCommand(argv: readonly string[]): Promise<number> {
  const { config, logLevel } = parseGatewayArgs(argv);
  const log = createLogger(logLevel, { gateway: config.pod });
  let quit!: (reason: string) => void;
  const stopped = new Promise<string>((resolve) => (quit = resolve));
  process.once('SIGTERM', () => quit('SIGTERM'));
  process.once('SIGINT', () => quit('SIGINT'));
  const gateway = new GatewayProcess(config, log);
  try {
    await gateway.start();
  } catch (err) {
    log.fatal({ err }, (err as Error).message);
    await gateway.stop();
    throw err;
  }
  const reason = await stopped;
  log.info({ reason }, `${reason}: shutting down`);
  await gateway.stop();
  return 0;
}

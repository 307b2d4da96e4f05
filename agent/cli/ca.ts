// `ambit ca`: the mesh's certificate authority as its own process (a Deployment in a cluster, a
// process of the lab's control plane), so that node agents never hold the signing key. See agent/ca/.

import { parseArgs } from 'node:util';
import { CaServer } from '../ca/ca-server.js';
import { type ServiceAccountName, parseServiceAccountName } from '../ca/caller-node.js';
import { CA_AUDIENCE } from '../ca/token-review.js';
import { KubeApiClient } from '../sources/kubernetes/api-client.js';
import { loadApiConnection } from '../sources/kubernetes/connection.js';
import { type LogLevel, createLogger, isLogLevel } from '../telemetry/log.js';
import { UsageError, parseDuration, parseListenAddress } from './usage.js';

/** The node agents' ServiceAccount in deploy/ (the DaemonSet's), and the CA's Service name. */
const AGENT_SERVICE_ACCOUNT = 'ambit';
const CA_SERVICE = 'ambit-ca';

export const CA_USAGE = `Usage: ambit ca --ca-dir <dir> [options]

Runs the mesh's certificate authority: Istio's IstioCertificateService (CreateCertificate) over gRPC
and TLS, the API the agents' --ca istiod client speaks. Each caller's bearer token is reviewed by the
Kubernetes API server (TokenReview, audience ${CA_AUDIENCE}) and must be bound to a pod of a trusted node
agent ServiceAccount; a certificate is issued only for the ImpersonatedIdentity of a running pod on
that pod's node. The signing key stays here: agents get certificates, never the key.

Options:
  --ca-dir <dir>               Istio's cacerts layout: ca-cert.pem, ca-key.pem, root-cert.pem,
                               cert-chain.pem (every replica must share it) (default: /etc/cacerts)
  --listen <ip:port>           where to serve (default: 0.0.0.0:15012)
  --kubeconfig <file>          the API server for TokenReview and pods (default: in-cluster
                               configuration when KUBERNETES_SERVICE_HOST is set, else $KUBECONFIG)
  --trust-domain <domain>      SPIFFE trust domain of the identities issued (default: cluster.local)
  --trusted-node-account <namespace/name>
                               a ServiceAccount whose pods may ask on behalf of the pods of their
                               node (repeatable; default: <namespace>/${AGENT_SERVICE_ACCOUNT}, the DaemonSet's)
  --namespace <ns>             the namespace the CA and the agents run in (default: $POD_NAMESPACE
                               or ambit-system)
  --san <name|ip>              a DNS name or address agents reach the CA by, for its serving
                               certificate (repeatable; default: ${CA_SERVICE}.<namespace>.svc and
                               ${CA_SERVICE}.<namespace>.svc.<cluster-domain>)
  --cluster-domain <domain>    Kubernetes cluster domain, for the default --san (default: cluster.local)
  --serving-cert-ttl <duration> lifetime of the CA's own serving certificate, renewed at half life
                               (default: 24h)
  --max-cert-ttl <duration>    longest workload certificate lifetime granted (default: 2160h, 90 days)
  --log-level <level>          trace|debug|info|warn|error (default: $AMBIT_LOG_LEVEL or info)
`;

export interface CaArgs {
  readonly caDir: string;
  readonly host: string;
  readonly port: number;
  readonly kubeconfig?: string;
  readonly trustDomain: string;
  readonly trustedNodeAccounts: readonly ServiceAccountName[];
  readonly servingNames: readonly string[];
  readonly servingTtlSeconds: number;
  readonly maxTtlSeconds: number;
  readonly logLevel: LogLevel;
}

export function parseCaArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): CaArgs {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      'ca-dir': { type: 'string', default: '/etc/cacerts' },
      listen: { type: 'string', default: '0.0.0.0:15012' },
      kubeconfig: { type: 'string' },
      'trust-domain': { type: 'string', default: 'cluster.local' },
      'trusted-node-account': { type: 'string', multiple: true },
      namespace: { type: 'string', default: env['POD_NAMESPACE'] ?? 'ambit-system' },
      san: { type: 'string', multiple: true },
      'cluster-domain': { type: 'string', default: 'cluster.local' },
      'serving-cert-ttl': { type: 'string', default: '24h' },
      'max-cert-ttl': { type: 'string', default: '2160h' },
      'log-level': { type: 'string', default: env['AMBIT_LOG_LEVEL'] ?? 'info' },
    },
  });
  if (positionals.length > 0) throw new UsageError(`ambit ca takes no arguments, only options; drop ${positionals.join(' ')}`);
  const listen = parseListenAddress('--listen', values.listen);
  const namespace = values.namespace;
  const accounts = (values['trusted-node-account'] ?? [`${namespace}/${AGENT_SERVICE_ACCOUNT}`]).map((text) => {
    const account = parseServiceAccountName(text);
    if (!account) throw new UsageError(`--trusted-node-account ${JSON.stringify(text)}: expected <namespace>/<service-account>, such as ambit-system/ambit`);
    return account;
  });
  const logLevel = values['log-level'];
  if (!isLogLevel(logLevel)) throw new UsageError(`--log-level ${JSON.stringify(logLevel)}: expected one of trace, debug, info, warn, error`);
  return {
    caDir: values['ca-dir'],
    host: listen.host,
    port: listen.port,
    ...(values.kubeconfig !== undefined ? { kubeconfig: values.kubeconfig } : {}),
    trustDomain: values['trust-domain'],
    trustedNodeAccounts: accounts,
    servingNames: values.san ?? [`${CA_SERVICE}.${namespace}.svc`, `${CA_SERVICE}.${namespace}.svc.${values['cluster-domain']}`],
    servingTtlSeconds: Math.ceil(parseDuration('--serving-cert-ttl', values['serving-cert-ttl']) / 1000),
    maxTtlSeconds: Math.floor(parseDuration('--max-cert-ttl', values['max-cert-ttl']) / 1000),
    logLevel,
  };
}

export async function caCommand(argv: readonly string[]): Promise<number> {
  const args = parseCaArgs(argv);
  const log = createLogger(args.logLevel, { component: 'ambit-ca' });
  const connection = await loadApiConnection(args.kubeconfig !== undefined ? { kubeconfig: args.kubeconfig } : {});
  if (typeof connection === 'string') throw new Error(`ambit ca: ${connection}`);
  let quit!: (signal: string) => void;
  const stopped = new Promise<string>((resolve) => (quit = resolve));
  process.once('SIGTERM', () => quit('SIGTERM'));
  process.once('SIGINT', () => quit('SIGINT'));
  const server = await CaServer.start(
    {
      host: args.host,
      port: args.port,
      caDir: args.caDir,
      trustDomain: args.trustDomain,
      servingNames: args.servingNames,
      servingTtlSeconds: args.servingTtlSeconds,
      trustedNodeAccounts: args.trustedNodeAccounts,
      maxTtlSeconds: args.maxTtlSeconds,
    },
    new KubeApiClient(connection),
    log,
  );
  const signal = await stopped;
  log.info({ signal }, `${signal}: stopping; requests in flight get 5 s`);
  await server.stop();
  return 0;
}

// Where the API server is and how each request proves who the agent is. In a pod (the DaemonSet) that is
// client-go's in-cluster configuration, done here: KUBERNETES_SERVICE_HOST/PORT, the service account's
// CA and its token, re-read for every request so a rotated (projected) token applies at once. A
// kubeconfig file (a developer's cluster, `--kubeconfig`) can name any of the credential kinds
// kubectl knows (client certificates, exec plugins, OIDC), so those are read by
// @kubernetes/client-node's KubeConfig, imported only then: the library loads its whole generated API
// with it (about 28 MB of heap and most of a second), which an agent on every node should not carry.

import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Agent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { isIPv6 } from 'node:net';
import { join } from 'node:path';

/** What one request to the API server carries. */
export interface RequestCredentials {
  /** TLS trust and client certificate, when the connection needs its own. */
  agent?: Agent;
  headers: Record<string, string | string[] | number>;
  /** Basic auth, `user:password`. */
  auth?: string;
}

export interface ApiConnection {
  /** The API server's base URL. */
  readonly server: string;
  /** The credentials for one request; rejects when they cannot be read (a token file gone, an exec plugin failing). */
  credentials(): Promise<RequestCredentials>;
}

export interface ConnectionChoice {
  /** A kubeconfig file; without it, in-cluster config when KUBERNETES_SERVICE_HOST is set, else $KUBECONFIG. */
  readonly kubeconfig?: string;
  /** Prefix for the service-account files (/var/run/secrets/kubernetes.io/serviceaccount), for tests. */
  readonly serviceAccountRoot?: string;
}

const SERVICE_ACCOUNT_DIR = 'var/run/secrets/kubernetes.io/serviceaccount';

/** The connection `choice` names, or why there is none. */
export async function loadApiConnection(choice: ConnectionChoice): Promise<ApiConnection | string> {
  if (choice.kubeconfig !== undefined) return fromKubeconfig(choice.kubeconfig);
  if (process.env['KUBERNETES_SERVICE_HOST']) return inCluster(choice.serviceAccountRoot ?? '/');
  const fromEnv = process.env['KUBECONFIG'];
  if (fromEnv && existsSync(fromEnv)) return fromKubeconfig(fromEnv);
  return 'no Kubernetes connection: not in a cluster (KUBERNETES_SERVICE_HOST is unset); pass --kubeconfig <file>';
}

/** As client-go's rest.InClusterConfig: HTTPS to the kubernetes Service, its CA, the service account's bearer token. */
function inCluster(root: string): ApiConnection | string {
  const host = process.env['KUBERNETES_SERVICE_HOST'] ?? '';
  const port = process.env['KUBERNETES_SERVICE_PORT'] ?? '';
  if (!host || !port) return 'in-cluster configuration needs both KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT; is the agent running in a pod?';
  const dir = join(root, SERVICE_ACCOUNT_DIR);
  const tokenFile = join(dir, 'token');
  let ca: string;
  try {
    ca = readFileSync(join(dir, 'ca.crt'), 'utf8');
    readFileSync(tokenFile);
  } catch (err) {
    return `cannot read the service account's files in ${dir}: ${(err as Error).message} (is automountServiceAccountToken off for the agent's pod?)`;
  }
  const agent = new HttpsAgent({ ca, keepAlive: true });
  return {
    server: `https://${isIPv6(host) ? `[${host}]` : host}:${port}`,
    async credentials() {
      const token = (await readFile(tokenFile, 'utf8')).trim();
      return { agent, headers: { authorization: `Bearer ${token}` } };
    },
  };
}

function fromKubeconfig(file: string): Promise<ApiConnection | string> {
  return kubeconfigConnection(file, (config) => config.loadFromFile(file));
}

/** A connection from a kubeconfig's text (a remote secret's); `origin` names it in messages. */
export function connectionFromKubeconfigText(text: string, origin: string): Promise<ApiConnection | string> {
  return kubeconfigConnection(origin, (config) => config.loadFromString(text));
}

async function kubeconfigConnection(origin: string, load: (config: import('@kubernetes/client-node').KubeConfig) => void): Promise<ApiConnection | string> {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const config = new KubeConfig();
  try {
    load(config);
  } catch (err) {
    return `cannot load ${origin}: ${(err as Error).message}`;
  }
  const cluster = config.getCurrentCluster();
  if (!cluster) return `${origin} has no current cluster (set current-context)`;
  return {
    server: cluster.server,
    async credentials() {
      const options: RequestCredentials = { headers: {} };
      await config.applyToHTTPSOptions(options as Parameters<typeof config.applyToHTTPSOptions>[0]);
      return options;
    },
  };
}

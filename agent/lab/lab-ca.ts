// The lab's mesh CA for `ambit lab up --source kubernetes`: `ambit ca` runs as its own process in the
// fabric namespace, against the lab's kube-apiserver, as it runs in a cluster. Each node's agent is
// given what a DaemonSet pod has: a pod object of the agents' ServiceAccount on its node (in the API
// server), and a projected token bound to that pod for audience istio-ca, which the supervisor renews.

import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CA_AUDIENCE } from '../ca/token-review.js';
import type { KubeObject } from './kube-resources.js';
import { LAB_API_SERVER, type LabLayout } from './layout.js';
import type { LabNodePlan } from './plan.js';
import { issueServiceAccountToken } from './service-account-tokens.js';

/** Where `ambit ca` listens: the API server's fabric address (routed from every node), Istio's CA port. */
export const LAB_CA = { ip: LAB_API_SERVER.ip, port: 15012 } as const;
/** The namespace and ServiceAccount of the agents, as deploy/daemonset names them. */
export const AGENT_NAMESPACE = 'ambit-system';
export const AGENT_SERVICE_ACCOUNT = 'ambit';

/** As the chart's `expirationSeconds: 43200`; renewed well before, as the kubelet does at 80 %. */
const TOKEN_LIFETIME_MS = 12 * 3600 * 1000;
export const TOKEN_RENEW_MS = 3600 * 1000;

/** The pod a node's agent runs as: stable name and UID, so that its token stays bound across restarts. */
export function agentPod(layout: LabLayout, node: LabNodePlan): KubeObject {
  const uid = createHash('sha256').update(`${layout.name}/${node.name}`).digest('hex');
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: `ambit-${node.name}`,
      namespace: AGENT_NAMESPACE,
      uid: `${uid.slice(0, 8)}-${uid.slice(8, 12)}-4${uid.slice(13, 16)}-8${uid.slice(17, 20)}-${uid.slice(20, 32)}`,
      labels: { 'app.kubernetes.io/name': 'ambit' },
    },
    // hostNetwork, as the DaemonSet's: never enrolled, and shares its node's address without owning it.
    spec: { nodeName: node.name, serviceAccountName: AGENT_SERVICE_ACCOUNT, hostNetwork: true, containers: [{ name: 'agent', image: 'ambit/agent' }] },
    status: { phase: 'Running', podIP: node.ip, hostIP: node.ip },
  };
}

/** The objects the lab adds to what the YAML holds: the agents' namespace (outside the mesh) and pods. */
export function agentObjects(layout: LabLayout, nodes: readonly LabNodePlan[]): KubeObject[] {
  const namespace: KubeObject = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: AGENT_NAMESPACE, labels: { 'istio.io/dataplane-mode': 'none' } } };
  return [namespace, ...nodes.map((node) => agentPod(layout, node))];
}

/** The key the lab's API server signs and reviews ServiceAccount tokens with; made once per lab. */
export async function tokenKey(layout: LabLayout): Promise<Buffer> {
  const file = join(layout.apiServerDir, 'token-signing.key');
  const existing = await readFile(file).catch(() => undefined);
  if (existing) return existing;
  const key = randomBytes(32);
  await writeFile(file, key, { mode: 0o600 });
  return key;
}

/** Writes each agent's token (bound to its pod, for istio-ca) where its `--istiod-token` points, atomically. */
export async function writeAgentTokens(layout: LabLayout, nodes: readonly LabNodePlan[]): Promise<void> {
  const key = await tokenKey(layout);
  await mkdir(join(layout.apiServerDir, 'tokens'), { recursive: true, mode: 0o700 });
  for (const node of nodes) {
    const pod = agentPod(layout, node);
    const token = issueServiceAccountToken(key, {
      namespace: AGENT_NAMESPACE,
      serviceAccount: AGENT_SERVICE_ACCOUNT,
      pod: { name: pod.metadata.name, uid: pod.metadata.uid! },
      node: node.name,
      audiences: [CA_AUDIENCE],
      expiresAt: new Date(Date.now() + TOKEN_LIFETIME_MS),
    });
    const file = agentTokenFile(layout, node.name);
    await writeFile(`${file}.new`, token, { mode: 0o600 });
    await rename(`${file}.new`, file);
  }
}

export function agentTokenFile(layout: LabLayout, node: string): string {
  return join(layout.apiServerDir, 'tokens', node);
}

/** `ambit run`'s flags for an agent of the lab that gets its certificates from the lab's `ambit ca`. */
export function agentCaArgs(layout: LabLayout, node: string, caDir: string): string[] {
  return ['--ca', 'istiod', '--ca-address', `${LAB_CA.ip}:${LAB_CA.port}`, '--istiod-root-cert', join(caDir, 'root-cert.pem'), '--istiod-token', agentTokenFile(layout, node)];
}

/** `ambit ca`'s flags in the lab: the lab's CA files, its API server, a certificate for its address. */
export function caArgs(layout: LabLayout, caDir: string, trustDomain: string, logLevel: string): string[] {
  return [
    'ca',
    '--ca-dir', caDir,
    '--listen', `${LAB_CA.ip}:${LAB_CA.port}`,
    '--kubeconfig', layout.kubeconfig,
    '--namespace', AGENT_NAMESPACE,
    '--trusted-node-account', `${AGENT_NAMESPACE}/${AGENT_SERVICE_ACCOUNT}`,
    '--san', LAB_CA.ip,
    '--trust-domain', trustDomain,
    '--log-level', logLevel,
  ];
}

// The long-lived process behind a running lab (`ambit lab supervise`, started by `lab up`): it owns the
// pods' containers and the node agents through the Kubelet (and, with `--source kubernetes`, the lab's
// API server the agents read) and the lab's cluster DNS, and, like kube-proxy, keeps Service VIPs and
// pods' hosts and resolv.conf files in step with the YAML as the user edits it.

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { POD_READINESS_SOCKET } from '../admin/pod-readiness.js';
import { LocalFileSource } from '../sources/local-files.js';
import { WorkloadStore } from '../state/store.js';
import { createLogger } from '../telemetry/log.js';
import { Kubelet, enterNodeNetns, enterPodNetns, inCgroupAndNetns, probeFromNode } from './kubelet.js';
import { LAB_CA, TOKEN_RENEW_MS, agentCaArgs, caArgs, writeAgentTokens } from './lab-ca.js';
import { LAB_CLUSTER_DNS, clusterDnsCgroup, clusterDnsId, clusterDnsLog } from './cluster-dns.js';
import { API_SERVER_ID, CA_ID, LAB_API_SERVER, type LabLayout } from './layout.js';
import { LabNetwork } from './network.js';
import { agentConfigArgs, clusterView, eastWestGatewayId } from './clusters.js';
import { podSandboxReady } from './pod-sandbox.js';
import type { LabPlan, LabProbe } from './plan.js';
import { serveUpgradeRequests } from './upgrade.js';

/** Agents and gateways alike are ready when their readiness port (15021) says so, as the DaemonSet's probe asks. */
const AGENT_READINESS: LabProbe = {
  kind: 'httpGet',
  path: '/healthz/ready',
  port: 15021,
  scheme: 'HTTP',
  httpHeaders: [],
  resolvedPort: 15021,
  periodSeconds: 5,
  timeoutSeconds: 1,
  failureThreshold: 3,
  successThreshold: 1,
};

export type LabSource = 'local' | 'kubernetes';

/** How the running Ambit invokes itself: the same Node, loader flags and entry point (main.ts or main.js). */
export function ambitCommand(): string[] {
  const here = fileURLToPath(import.meta.url);
  const main = join(dirname(here), '..', 'cli', here.endsWith('.ts') ? 'main.ts' : 'main.js');
  return [process.execPath, ...process.execArgv, main];
}

export interface SupervisorOptions {
  readonly trustDomain: string;
  readonly clusterDomain: string;
  readonly caDir?: string;
  readonly certTtl?: string;
  readonly logLevel: string;
  /** Where the agents learn the mesh: the YAML files (default), or the lab's API server serving them. */
  readonly source?: LabSource;
  readonly socks5?: boolean;
  readonly dataThreads?: number;
}

export async function superviseLab(layout: LabLayout, plan: LabPlan, options: SupervisorOptions): Promise<void> {
  const log = createLogger('info', { lab: layout.name, component: 'supervisor' });
  const kubelet = new Kubelet(layout.statusFile);
  const network = new LabNetwork(layout);
  // `ambit lab upgrade node/<name>`: a new agent beside the running one (agent/lab/upgrade.ts).
  serveUpgradeRequests(layout, kubelet, log);

  // `lab up` applied the Services before starting us; from here on they follow each cluster's YAML.
  const sources = plan.clusters.map((cluster) => {
    const view = clusterView(plan, cluster);
    const store = new WorkloadStore();
    store.subscribe((snapshot) => {
      network.applyServices(view, snapshot).then(
        () => log.info({ version: snapshot.version, cluster: cluster.id }, `kube-proxy rules and pod hosts files updated to configuration version ${snapshot.version}`),
        (err: Error) => log.error({ err, cluster: cluster.id }, `updating kube-proxy rules failed: ${err.message}`),
      );
    });
    return new LocalFileSource({ paths: cluster.configPaths, trustDomain: options.trustDomain, clusterDomain: options.clusterDomain }, store, log);
  });
  for (const source of sources) {
    await source.load();
    await source.watch();
  }

  const kubernetes = options.source === 'kubernetes';
  if (kubernetes) {
    const port = LAB_API_SERVER.port;
    kubelet.run({
      id: API_SERVER_ID,
      command: 'ambit lab kube-apiserver',
      argv: inCgroupAndNetns(layout.apiServerCgroup, enterNodeNetns(layout.fabricNetns), [...ambitCommand(), 'lab', 'kube-apiserver', '--lab', layout.name]),
      cwd: '/',
      env: process.env,
      cgroup: layout.apiServerCgroup,
      log: layout.apiServerLog,
      probe: probeFromNode(layout.fabricNetns, LAB_API_SERVER.ip, { kind: 'tcpSocket', port, resolvedPort: port, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 3, successThreshold: 1 }),
      probePeriodMs: 1_000,
    });
  }
  // Each cluster's DNS on its fabric, before the agents, whose DNS proxies forward to it what the mesh does not answer.
  for (const cluster of plan.clusters) {
    const cgroup = clusterDnsCgroup(layout, cluster.id);
    kubelet.run({
      id: clusterDnsId(cluster.id),
      command: 'ambit lab cluster-dns',
      argv: inCgroupAndNetns(cgroup, enterNodeNetns(cluster.fabricNetns), [
        ...ambitCommand(),
        'lab',
        'cluster-dns',
        '--lab',
        layout.name,
        ...(cluster.id === undefined ? [] : ['--cluster', cluster.id]),
      ]),
      cwd: '/',
      env: process.env,
      cgroup,
      log: clusterDnsLog(layout, cluster.id),
      probe: probeFromNode(cluster.fabricNetns, LAB_CLUSTER_DNS.ip, {
        kind: 'tcpSocket',
        port: LAB_CLUSTER_DNS.port,
        resolvedPort: LAB_CLUSTER_DNS.port,
        periodSeconds: 1,
        timeoutSeconds: 1,
        failureThreshold: 3,
        successThreshold: 1,
      }),
      probePeriodMs: 1_000,
    });
  }
  await Promise.all(plan.clusters.map((cluster) => kubelet.firstReady(clusterDnsId(cluster.id))));
  // The agents' source: the YAML itself, or (as in a cluster) the API server, once it answers.
  const sourceArgs = (node: LabPlan['nodes'][number]): string[] => (kubernetes ? ['--source', 'kubernetes', '--kubeconfig', layout.kubeconfig] : agentConfigArgs(plan, node.cluster));
  let renewTokens: NodeJS.Timeout | undefined;
  if (kubernetes) {
    await kubelet.firstReady(API_SERVER_ID);
    // As in a cluster, the CA runs apart from the agents and alone reads the signing key; they ask it
    // with tokens bound to their pods, which the kubelet (here: the supervisor) renews.
    kubelet.run({
      id: CA_ID,
      command: 'ambit ca',
      argv: inCgroupAndNetns(layout.caCgroup, enterNodeNetns(layout.fabricNetns), [...ambitCommand(), ...caArgs(layout, options.caDir!, options.trustDomain, options.logLevel)]),
      cwd: '/',
      env: process.env,
      cgroup: layout.caCgroup,
      log: layout.caLog,
      probe: probeFromNode(layout.fabricNetns, LAB_CA.ip, { kind: 'tcpSocket', port: LAB_CA.port, resolvedPort: LAB_CA.port, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 3, successThreshold: 1 }),
      probePeriodMs: 1_000,
    });
    renewTokens = setInterval(() => {
      writeAgentTokens(layout, plan.nodes).catch((err: Error) => log.error({ err }, `renewing the agents' ServiceAccount tokens failed: ${err.message}`));
    }, TOKEN_RENEW_MS);
    renewTokens.unref();
    await kubelet.firstReady(CA_ID);
  }

  // Each cluster's east-west gateway in its edge namespace, as its own pod (clusters.ts), with the lab's CA.
  for (const { id, configPaths, eastWest } of plan.clusters) {
    if (id === undefined || eastWest === undefined) continue;
    kubelet.run({
      id: eastWestGatewayId(id),
      command: `ambit gateway --pod ${eastWest.pod}`,
      argv: inCgroupAndNetns(eastWest.cgroup, enterNodeNetns(eastWest.netns), [
        ...ambitCommand(),
        'gateway',
        '--pod',
        eastWest.pod,
        // Its metrics' destination_cluster, as the cluster's agents name theirs.
        '--cluster-id',
        id,
        ...configPaths.flatMap((p) => ['--config', p]),
        '--ca-dir',
        options.caDir!,
        '--state-dir',
        eastWest.stateDir,
        '--trust-domain',
        options.trustDomain,
        '--cluster-domain',
        options.clusterDomain,
        '--log-level',
        options.logLevel,
        ...(options.certTtl ? ['--cert-ttl', options.certTtl] : []),
      ]),
      cwd: '/',
      env: process.env,
      cgroup: eastWest.cgroup,
      log: eastWest.log,
      probe: probeFromNode(eastWest.netns, '127.0.0.1', AGENT_READINESS),
      probePeriodMs: 5_000,
    });
  }

  for (const node of plan.nodes) {
    kubelet.run({
      id: `node/${node.name}`,
      command: `ambit run --node ${node.name}`,
      argv: inCgroupAndNetns(node.cgroup, enterNodeNetns(node.netns), [
        ...ambitCommand(),
        'run',
        '--node',
        node.name,
        '--trust-domain',
        options.trustDomain,
        '--cluster-domain',
        options.clusterDomain,
        '--log-level',
        options.logLevel,
        // Pods' DNS is captured (ambit run's default): what the mesh does not answer goes to the cluster DNS.
        '--dns-upstream',
        LAB_CLUSTER_DNS.ip,
        '--pod-cgroup',
        layout.podCgroup('{namespace}', '{name}'),
        '--bpf-scope',
        layout.bpfScope(node.name),
        '--state-dir',
        join(layout.stateDir, 'agents', node.name),
        ...(kubernetes ? agentCaArgs(layout, node.name, options.caDir!) : options.caDir ? ['--ca-dir', options.caDir] : []),
        ...(options.certTtl ? ['--cert-ttl', options.certTtl] : []),
        ...(options.socks5 ? ['--socks5'] : []),
        ...(options.dataThreads !== undefined ? ['--data-threads', String(options.dataThreads)] : []),
        ...sourceArgs(node),
      ]),
      cwd: '/',
      env: process.env,
      cgroup: node.cgroup,
      log: node.log,
      probe: probeFromNode(node.netns, '127.0.0.1', AGENT_READINESS),
      probePeriodMs: 5_000,
    });
  }

  // As Istio's CNI plugin holds a pod's sandbox until the node's ztunnel is ready, a node's containers
  // start only once its agent is: else their first connections would leave before capture is in place.
  // With SOCKS5, each pod's sandbox process starts first (a kubelet's pause container), and its
  // containers wait until the agent has opened the listener in it (podSandboxReady).
  const startPod = async (pod: LabPlan['pods'][number], node: LabPlan['nodes'][number]): Promise<void> => {
    if (options.socks5) {
      kubelet.run({
        id: `sandbox/${pod.key}`,
        command: 'sandbox (sleep infinity)',
        argv: inCgroupAndNetns(pod.cgroup, enterPodNetns(pod.netns), ['sleep', 'infinity']),
        cwd: '/',
        env: {},
        cgroup: pod.cgroup,
        log: layout.containerLog(pod.namespace, pod.name, '.sandbox'),
        probePeriodMs: 10_000,
      });
      await podSandboxReady(join(layout.stateDir, 'agents', node.name, POD_READINESS_SOCKET), pod.key, log, stopping);
    }
    for (const container of pod.containers) {
      const probe = container.readinessProbe;
      kubelet.run({
        id: `${pod.key}/${container.name}`,
        command: container.argv.join(' '),
        argv: inCgroupAndNetns(pod.cgroup, enterPodNetns(pod.netns), container.argv),
        cwd: container.cwd,
        env: container.env,
        cgroup: pod.cgroup,
        log: container.log,
        ...(probe ? { probe: probeFromNode(node.netns, pod.ip, probe) } : {}),
        probePeriodMs: (probe?.periodSeconds ?? 10) * 1000,
      });
    }
  };
  const stopping = new AbortController();
  for (const node of plan.nodes) {
    void kubelet.firstReady(`node/${node.name}`).then(() => {
      log.info({ node: node.name }, `agent of node ${node.name} is ready; starting its pods' containers`);
      for (const pod of plan.pods) if (pod.node === node.name) void startPod(pod, node);
    });
  }

  log.info({ nodes: plan.nodes.length, pods: plan.pods.length }, 'lab supervisor running');
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info({ signal }, 'stopping every container and agent');
      stopping.abort();
      for (const source of sources) source.close();
      clearInterval(renewTokens);
      void kubelet.stopAll(5_000).then(() => resolve());
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

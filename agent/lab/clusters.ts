// The clusters of a lab: one (`lab up <yaml…>`), or several (`lab up --cluster <id>=<yaml…>`), each on a
// network of its own, as Istio's multi-primary, multi-network install: its nodes and pods reach no other
// cluster's, and its only way out is its east-west gateway (a Gateway of class istio-east-west), which
// the lab wires onto a segment that joins the clusters' gateways and nothing else.

import { isIPv4 } from 'node:net';
import { join } from 'node:path';
import type { GatewayObject } from '../config/gateway-api/types.js';
import type { MeshObject } from '../config/objects.js';
import type { NamespaceObject } from '../config/kubernetes.js';
import { EAST_WEST_GATEWAY_CLASS, NETWORK_LABEL, clusterNetwork } from '../state/clusters.js';
import type { MeshSnapshot } from '../state/model.js';
import { parseIpv4Prefix, prefixContains, prefixesOverlap } from '../system/ipv4.js';
import type { LabLayout } from './layout.js';
import type { LabNodePlan, LabPlan, LabPodPlan } from './plan.js';

/** The supervisor's name for a cluster's `ambit gateway`, in status.json, `lab status` and `lab logs`. */
export function eastWestGatewayId(cluster: string): string {
  return `gateway/${cluster}`;
}

/** What the user names for one cluster: its ID (none in a lab of one cluster) and its YAML files or directories. */
export interface LabClusterInput {
  readonly cluster?: string;
  readonly paths: readonly string[];
}

/** What the lab reads for one cluster: its ID (none in a lab of one cluster), its YAML and what that builds. */
export interface LabClusterSource {
  readonly cluster?: string;
  readonly configPaths: readonly string[];
  readonly objects: readonly MeshObject[];
  readonly snapshot: MeshSnapshot;
}

/** A cluster's east-west gateway: a namespace of its own on both the cluster's fabric and the internetwork. */
export interface LabEastWestPlan {
  /** The Gateway object it comes from, `<namespace>/<name>`. */
  readonly gateway: string;
  /**
   * The gateway's pod (`<namespace>/<name>`), which `ambit gateway` takes its identity from: the lab
   * writes it to `podFile`, one more file of the cluster's YAML, as Istio's deployment controller
   * makes a Deployment for the Gateway.
   */
  readonly pod: string;
  readonly podFile: string;
  readonly network: string;
  readonly netns: string;
  /** Its address on the internetwork (the Gateway's spec.addresses), where other networks reach it. */
  readonly address: string;
  /**
   * Its address on the cluster's fabric, link-local so that it can clash with no node, pod or Service:
   * the nodes route other networks' gateways through it, and it reaches the pods from it.
   */
  readonly fabricAddress: string;
  /** Its port on the cluster's fabric bridge and on the internetwork bridge (in those namespaces). */
  readonly fabricLink: string;
  readonly internetworkLink: string;
  readonly stateDir: string;
  readonly cgroup: string;
  readonly log: string;
}

export interface LabClusterPlan {
  /** Absent in a lab of one cluster, whose agents keep their default cluster ID. */
  readonly id?: string;
  /** The cluster's network (its istio-system Namespace's topology.istio.io/network); absent in a lab of one. */
  readonly network?: string;
  /** The cluster's YAML, and the file holding its east-west gateway's pod when it has one. */
  readonly configPaths: readonly string[];
  readonly fabricNetns: string;
  readonly eastWest?: LabEastWestPlan;
}

/** A lab of one cluster has one fabric, named as it always was; several clusters have one each. */
export function planClusters(layout: LabLayout, sources: readonly LabClusterSource[], nodes: readonly LabNodePlan[], pods: readonly LabPodPlan[], problems: string[]): LabClusterPlan[] {
  const single = sources.length === 1 && sources[0]!.cluster === undefined;
  if (single) return [{ configPaths: sources[0]!.configPaths, fabricNetns: layout.fabricNetns }];
  const clusters: LabClusterPlan[] = [];
  const networks = new Map<string, string>();
  for (const [index, source] of sources.entries()) {
    const id = source.cluster;
    if (id === undefined) {
      problems.push(`${source.configPaths.join(', ')}: in a lab of several clusters every YAML set needs its cluster ID (--cluster <id>=<file|dir>[,…])`);
      continue;
    }
    const network = labClusterNetwork(source, problems);
    if (network === undefined) continue;
    const other = networks.get(network);
    if (other) problems.push(`cluster ${id}: network ${network} is also cluster ${other}'s; the lab builds one network per cluster, so give each its own topology.istio.io/network`);
    networks.set(network, id);
    const eastWest = planEastWest(layout, source, id, network, index, problems);
    const configPaths = eastWest ? [...source.configPaths, eastWest.podFile] : source.configPaths;
    clusters.push({ id, network, configPaths, fabricNetns: layout.clusterFabricNetns(id), ...(eastWest ? { eastWest } : {}) });
  }
  problems.push(...crossClusterProblems(nodes, pods, clusters));
  return clusters;
}

/** As Istio's, a cluster's network is the label on its istio-system Namespace. */
function labClusterNetwork(source: LabClusterSource, problems: string[]): string | undefined {
  const network = clusterNetwork(undefined, source.objects.filter((o): o is NamespaceObject => o.kind === 'Namespace'));
  if (network) return network;
  problems.push(
    `cluster ${source.cluster}: no network: label its istio-system Namespace with ${NETWORK_LABEL}: <network> (as Istio's multi-network install does), in ${source.configPaths.join(', ')}`,
  );
  return undefined;
}

/** The cluster's Gateway of class istio-east-west, for its network; none: the cluster is reached from no other network. */
function planEastWest(layout: LabLayout, source: LabClusterSource, cluster: string, network: string, index: number, problems: string[]): LabEastWestPlan | undefined {
  const gateways = source.objects.filter((o): o is GatewayObject => o.kind === 'Gateway' && o.spec.gatewayClassName === EAST_WEST_GATEWAY_CLASS);
  const gateway = gateways[0];
  if (gateway === undefined) return undefined;
  const ref = `${gateway.source.file}:${gateway.source.line}: Gateway ${gateway.metadata.namespace}/${gateway.metadata.name}`;
  if (gateways.length > 1) problems.push(`${ref}: cluster ${cluster} has ${gateways.length} Gateways of class ${EAST_WEST_GATEWAY_CLASS}; the lab runs one per cluster`);
  const labelled = gateway.metadata.labels[NETWORK_LABEL];
  if (labelled !== network) {
    problems.push(`${ref}: metadata.labels: ${NETWORK_LABEL} is ${labelled === undefined ? 'missing' : JSON.stringify(labelled)}; the gateway of cluster ${cluster} serves its network ${network}`);
  }
  const address = gateway.spec.addresses.find((a) => a.type === 'IPAddress')?.value;
  if (address === undefined || !isIPv4(address)) {
    problems.push(`${ref}: spec.addresses: the lab needs the IPv4 address other networks reach the gateway at ({ type: IPAddress, value: <address> })`);
    return undefined;
  }
  const stateDir = layout.gatewayStateDir(cluster);
  return {
    gateway: `${gateway.metadata.namespace}/${gateway.metadata.name}`,
    // Its pods run as the ServiceAccount named after the Gateway, as Istio's deployment controller names it.
    pod: `${gateway.metadata.namespace}/${gateway.metadata.name}`,
    podFile: join(stateDir, 'east-west-gateway.yaml'),
    network,
    netns: layout.gatewayNetns(cluster),
    address,
    fabricAddress: `169.254.101.${index + 1}`,
    fabricLink: `ewgw${index}`,
    internetworkLink: `net${index}`,
    stateDir,
    cgroup: layout.gatewayCgroup(cluster),
    log: layout.gatewayLog(cluster),
  };
}

/** Names are the lab's (`lab exec <namespace>/<pod>`, `node/<name>`), and no address may be two clusters'. */
function crossClusterProblems(nodes: readonly LabNodePlan[], pods: readonly LabPodPlan[], clusters: readonly LabClusterPlan[]): string[] {
  const problems: string[] = [];
  const nodeCluster = new Map<string, string | undefined>();
  for (const node of nodes) {
    if (nodeCluster.has(node.name)) problems.push(`Node ${node.name} is in clusters ${nodeCluster.get(node.name)} and ${node.cluster}; node names must be unique across the lab`);
    nodeCluster.set(node.name, node.cluster);
  }
  const podCluster = new Map<string, string | undefined>();
  for (const pod of pods) {
    const cluster = nodes.find((n) => n.name === pod.node)?.cluster;
    if (podCluster.has(pod.key)) problems.push(`Pod ${pod.key} is in clusters ${podCluster.get(pod.key)} and ${cluster}; pod names must be unique across the lab (lab exec names pods by namespace/name)`);
    podCluster.set(pod.key, cluster);
  }
  for (const [i, a] of nodes.entries()) {
    for (const b of nodes.slice(i + 1)) {
      if (a.cluster === b.cluster) continue;
      for (const ca of a.podCidrs) {
        const overlapping = b.podCidrs.find((cb) => prefixesOverlap(parseIpv4Prefix(ca)!, parseIpv4Prefix(cb)!));
        if (overlapping) problems.push(`Node ${a.name}'s podCIDR ${ca} (cluster ${a.cluster}) overlaps Node ${b.name}'s ${overlapping} (cluster ${b.cluster}); the clusters' pod ranges must not overlap`);
      }
    }
  }
  const gateways = clusters.flatMap((c) => (c.eastWest ? [{ cluster: c.id, address: c.eastWest.address }] : []));
  for (const [i, g] of gateways.entries()) {
    const twin = gateways.slice(i + 1).find((o) => o.address === g.address);
    if (twin) problems.push(`the east-west gateways of clusters ${g.cluster} and ${twin.cluster} have one address, ${g.address}`);
    const node = nodes.find((n) => n.ip === g.address || n.podCidrs.some((c) => prefixContains(parseIpv4Prefix(c)!, g.address)));
    if (node) problems.push(`the east-west gateway address ${g.address} of cluster ${g.cluster} is Node ${node.name}'s address or in its podCIDR; give the gateway an address of its own`);
  }
  return problems;
}

/** The part of the plan that is one cluster's: its nodes and their pods (what its kube-proxy and hosts files serve). */
export function clusterView(plan: LabPlan, cluster: LabClusterPlan): LabPlan {
  const nodes = plan.nodes.filter((n) => n.cluster === cluster.id);
  return { ...plan, configPaths: cluster.configPaths, clusters: [cluster], nodes, pods: plan.pods.filter((p) => nodes.some((n) => n.name === p.node)) };
}

/**
 * What a lab agent reads: its cluster's YAML and, in a lab of several clusters, its cluster ID and
 * network and every other cluster's YAML as a remote cluster's (as istiod reads remote clusters).
 */
export function agentConfigArgs(plan: LabPlan, cluster: string | undefined): string[] {
  const own = plan.clusters.find((c) => c.id === cluster)!;
  const config = own.configPaths.flatMap((p) => ['--config', p]);
  if (own.id === undefined || own.network === undefined) return config;
  const remote = plan.clusters.filter((c) => c !== own).flatMap((c) => c.configPaths.flatMap((p) => ['--remote-config', `${c.id}=${p}`]));
  return ['--cluster-id', own.id, '--network', own.network, ...config, ...remote];
}

/**
 * The east-west gateway's pod, as Istio's deployment controller would make it for the Gateway: in the
 * Gateway's namespace, running as the ServiceAccount of the Gateway's name, at the edge's address on
 * the cluster's fabric (where the connections it relays to the cluster's nodes come from).
 */
export function eastWestGatewayPodYaml(cluster: string, edge: LabEastWestPlan): string {
  const [namespace, name] = edge.pod.split('/') as [string, string];
  return `# Written by ambit lab: the pod of cluster ${cluster}'s east-west gateway (Gateway ${edge.gateway}), which
# \`ambit gateway\` runs as in the namespace ${edge.netns}; the lab removes it with the lab.
apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: ${namespace}
  labels: { gateway.networking.k8s.io/gateway-name: ${name}, ${NETWORK_LABEL}: ${edge.network} }
spec:
  serviceAccountName: ${name}
  containers: [{ name: istio-proxy, command: [ambit, gateway] }]
status: { phase: Running, podIP: ${edge.fabricAddress} }
`;
}

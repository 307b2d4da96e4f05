// What a lab will build from the user's YAML: one network namespace per Node and per Pod, the veth and
// fabric links between them, and the processes to run. Planning checks everything it can before a
// single namespace exists, so a bad file costs nothing to fix.

import { isIPv4 } from 'node:net';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { Container, PodObject, Probe } from '../config/kubernetes.js';
import { type Ipv4Prefix, formatPrefix, parseIpv4Prefix, prefixContains, prefixesOverlap } from '../system/ipv4.js';
import { type LabClusterPlan, type LabClusterSource, planClusters } from './clusters.js';
import { LabLayout, fabricLink, podHostLink } from './layout.js';

export interface LabNodePlan {
  readonly name: string;
  /** Its cluster's ID in a lab of several clusters (LabClusterPlan.id); absent in a lab of one. */
  readonly cluster?: string;
  readonly netns: string;
  readonly ip: string;
  readonly podCidrs: readonly string[];
  /** The node's port on the fabric bridge, in the fabric namespace (the node side is always `fab0`). */
  readonly fabricLink: string;
  readonly cgroup: string;
  readonly log: string;
}

/** A probe with its port resolved to a number, run from the pod's node as a kubelet would. */
export type LabProbe = Probe & { readonly resolvedPort: number };

export interface LabContainerPlan {
  readonly name: string;
  readonly argv: readonly string[];
  readonly cwd: string;
  readonly env: Readonly<Record<string, string>>;
  readonly readinessProbe?: LabProbe;
  readonly log: string;
}

export interface LabPodPlan {
  readonly key: string;
  readonly namespace: string;
  readonly name: string;
  readonly node: string;
  readonly netns: string;
  readonly ip: string;
  readonly hostLink: string;
  readonly cgroup: string;
  readonly containers: readonly LabContainerPlan[];
}

export interface LabPlan {
  readonly name: string;
  /** Every YAML file of the lab, all clusters' (each cluster's own are in its LabClusterPlan). */
  readonly configPaths: readonly string[];
  /** One cluster without an ID (`lab up <yaml…>`), or several, each on its own network (`lab up --cluster …`). */
  readonly clusters: readonly LabClusterPlan[];
  readonly nodes: readonly LabNodePlan[];
  readonly pods: readonly LabPodPlan[];
}

/** Addresses in use on the machine itself, which the lab's ranges must not touch. */
export interface HostAddresses {
  /** Connected and routed prefixes of the root namespace, other than the default route. */
  readonly prefixes: readonly Ipv4Prefix[];
  readonly nameservers: readonly string[];
}

export type PlanResult = { readonly ok: true; readonly plan: LabPlan } | { readonly ok: false; readonly problems: readonly string[] };

export function planLab(layout: LabLayout, sources: readonly LabClusterSource[], host: HostAddresses): PlanResult {
  const problems: string[] = [];
  const nodes: LabNodePlan[] = [];
  const pods: LabPodPlan[] = [];
  for (const source of sources) {
    const clusterNodes = planNodes(layout, source, nodes.length, problems);
    nodes.push(...clusterNodes);
    pods.push(...planPods(layout, source, clusterNodes, problems));
  }
  if (nodes.length === 0) problems.push('no Node objects: the lab needs at least one Node (kind: Node, status.addresses InternalIP, spec.podCIDR)');
  const nodeIps = new Map<string, string>();
  for (const node of nodes) {
    const other = nodeIps.get(node.ip);
    if (other) problems.push(`Node ${node.name}: InternalIP ${node.ip} is also Node ${other}'s`);
    nodeIps.set(node.ip, node.name);
  }
  const clusters = planClusters(layout, sources, nodes, pods, problems);
  problems.push(...hostOverlaps(nodes, pods, clusters, sources, host));
  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, plan: { name: layout.name, configPaths: sources.flatMap((s) => s.configPaths), clusters, nodes, pods } };
}

const where = (o: { source: { file: string; line: number } }): string => `${o.source.file}:${o.source.line}`;

/** `firstIndex`: how many nodes earlier clusters have, so that fabric link names stay unique across the lab. */
function planNodes(layout: LabLayout, source: LabClusterSource, firstIndex: number, problems: string[]): LabNodePlan[] {
  const nodes: LabNodePlan[] = [];
  for (const node of source.snapshot.nodes.values()) {
    const object = source.objects.find((o) => o.kind === 'Node' && o.metadata.name === node.name);
    const at = object ? `${where(object)}: ` : '';
    if (!node.internalIp) {
      problems.push(`${at}Node ${node.name}: status.addresses: the lab needs an InternalIP address for every node`);
      continue;
    }
    if (!isIPv4(node.internalIp)) {
      problems.push(`${at}Node ${node.name}: status.addresses: the lab supports IPv4 node addresses only, got ${node.internalIp}`);
      continue;
    }
    nodes.push({
      name: node.name,
      ...(source.cluster !== undefined ? { cluster: source.cluster } : {}),
      netns: layout.nodeNetns(node.name),
      ip: node.internalIp,
      podCidrs: node.podCidrs.filter((c) => parseIpv4Prefix(c) !== undefined),
      fabricLink: fabricLink(firstIndex + nodes.length),
      cgroup: layout.agentCgroup(node.name),
      log: layout.agentLog(node.name),
    });
  }
  return nodes;
}

function planPods(layout: LabLayout, source: LabClusterSource, nodes: readonly LabNodePlan[], problems: string[]): LabPodPlan[] {
  const pods: LabPodPlan[] = [];
  for (const object of source.objects) {
    if (object.kind !== 'Pod') continue;
    const pod = object;
    const ref = `${where(pod)}: Pod ${pod.metadata.namespace}/${pod.metadata.name}`;
    const ip = pod.status.podIP ?? pod.status.podIPs[0];
    const node = nodes.find((n) => n.name === pod.spec.nodeName);
    if (!pod.spec.nodeName) problems.push(`${ref}: spec.nodeName: the lab needs to know which node runs the pod`);
    else if (!node) problems.push(`${ref}: spec.nodeName: node "${pod.spec.nodeName}" is not defined (define a Node object with that name${source.cluster !== undefined ? ` in cluster ${source.cluster}'s YAML` : ''})`);
    if (pod.spec.hostNetwork) {
      problems.push(`${ref}: spec.hostNetwork: the lab gives every pod a network namespace of its own and cannot run it on its node's; remove hostNetwork (agents never capture hostNetwork pods anyway)`);
      continue;
    }
    if (!ip) problems.push(`${ref}: status.podIP: the lab needs the pod's IP (in a cluster the kubelet sets it; here you do)`);
    else if (!isIPv4(ip)) problems.push(`${ref}: status.podIP: the lab supports IPv4 pod addresses only, got ${ip}`);
    else if (node && node.podCidrs.length > 0 && !node.podCidrs.some((c) => prefixContains(parseIpv4Prefix(c)!, ip))) {
      problems.push(`${ref}: status.podIP: ${ip} is outside node ${node.name}'s podCIDR ${node.podCidrs.join(', ')}`);
    }
    if (!node || !ip || !isIPv4(ip)) continue;
    const containers = pod.spec.containers.map((c) => planContainer(layout, pod, c, node.name, ip, problems));
    pods.push({
      key: `${pod.metadata.namespace}/${pod.metadata.name}`,
      namespace: pod.metadata.namespace,
      name: pod.metadata.name,
      node: node.name,
      netns: layout.podNetns(pod.metadata.namespace, pod.metadata.name),
      ip,
      hostLink: podHostLink(pod.metadata.namespace, pod.metadata.name),
      cgroup: layout.podCgroup(pod.metadata.namespace, pod.metadata.name),
      containers,
    });
  }
  return pods;
}

function planContainer(layout: LabLayout, pod: PodObject, c: Container, node: string, ip: string, problems: string[]): LabContainerPlan {
  const ref = `${pod.source.file}:${pod.source.line}: Pod ${pod.metadata.namespace}/${pod.metadata.name}: container ${c.name}`;
  const argv = [...c.command, ...c.args];
  // The lab runs commands on this machine's filesystem; there is no image to supply an entrypoint.
  if (argv.length === 0) problems.push(`${ref}: command: the lab runs no images, so each container needs a command (and args)`);
  const yamlDir = dirname(pod.source.file);
  const cwd = c.workingDir ? (isAbsolute(c.workingDir) ? c.workingDir : resolve(yamlDir, c.workingDir)) : yamlDir;
  const downward: Record<string, string> = {
    'metadata.name': pod.metadata.name,
    'metadata.namespace': pod.metadata.namespace,
    'status.podIP': ip,
    'spec.nodeName': node,
    'spec.serviceAccountName': pod.spec.serviceAccountName ?? 'default',
  };
  const env: Record<string, string> = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: '/root',
    HOSTNAME: pod.metadata.name,
  };
  for (const e of c.env) {
    if ('value' in e) env[e.name] = e.value;
    else if (e.fieldRef in downward) env[e.name] = downward[e.fieldRef]!;
    else problems.push(`${ref}: env ${e.name}: fieldRef ${e.fieldRef} is not one the lab fills in (${Object.keys(downward).join(', ')})`);
  }
  let readinessProbe: LabProbe | undefined;
  if (c.readinessProbe) {
    const port = c.readinessProbe.port;
    const resolvedPort = typeof port === 'number' ? port : c.ports.find((p) => p.name === port)?.containerPort;
    if (resolvedPort === undefined) problems.push(`${ref}: readinessProbe.port: no container port is named "${String(port)}"`);
    else readinessProbe = { ...c.readinessProbe, resolvedPort };
  }
  return {
    name: c.name,
    argv,
    cwd,
    env,
    ...(readinessProbe ? { readinessProbe } : {}),
    log: layout.containerLog(pod.metadata.namespace, pod.metadata.name, c.name),
  };
}

/** The lab's addresses live only in its namespaces, but they must still not shadow the machine's own. */
function hostOverlaps(
  nodes: readonly LabNodePlan[],
  pods: readonly LabPodPlan[],
  clusters: readonly LabClusterPlan[],
  sources: readonly LabClusterSource[],
  host: HostAddresses,
): string[] {
  const problems: string[] = [];
  const labRanges: { what: string; prefix: Ipv4Prefix }[] = [];
  for (const n of nodes) {
    labRanges.push({ what: `Node ${n.name} InternalIP`, prefix: parseIpv4Prefix(n.ip)! });
    for (const c of n.podCidrs) labRanges.push({ what: `Node ${n.name} podCIDR`, prefix: parseIpv4Prefix(c)! });
  }
  for (const p of pods) labRanges.push({ what: `Pod ${p.key} IP`, prefix: parseIpv4Prefix(p.ip)! });
  for (const s of sources.flatMap((source) => [...source.snapshot.services.values()])) {
    for (const vip of s.vips) {
      const prefix = parseIpv4Prefix(vip);
      if (prefix) labRanges.push({ what: `Service ${s.key} cluster IP`, prefix });
    }
  }
  for (const c of clusters) if (c.eastWest) labRanges.push({ what: `east-west gateway ${c.eastWest.gateway} address`, prefix: parseIpv4Prefix(c.eastWest.address)! });
  for (const { what, prefix } of labRanges) {
    const hostPrefix = host.prefixes.find((h) => prefixesOverlap(h, prefix));
    if (hostPrefix) problems.push(`${what} ${formatPrefix(prefix)} overlaps this machine's network ${formatPrefix(hostPrefix)}; choose lab addresses the machine does not use`);
    const resolver = host.nameservers.find((ns) => prefixContains(prefix, ns));
    if (resolver) problems.push(`${what} ${formatPrefix(prefix)} contains this machine's DNS resolver ${resolver}; choose a narrower range`);
  }
  return problems;
}

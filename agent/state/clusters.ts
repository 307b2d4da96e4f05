// Several clusters as one mesh (docs/multicluster.md): the network each workload is on, the east-west
// gateway that reaches a network from the others, and remote clusters' pods and global Services merged
// into the agent's snapshot as Istio's multi-primary ambient mode merges them. Configuration (policies,
// routes) is the agent's own cluster's only, as each Istio primary reads its own.

import type { Labels, NamespaceObject, NodeObject, PodObject, ServiceObject } from '../config/kubernetes.js';
import type { MeshObject } from '../config/objects.js';
import type { ConfigDiagnostic } from '../config/diagnostics.js';
import type { LabelSelector, ServiceScopeConfig } from '../config/mesh-config.js';
import { WorkloadLabelIndex } from './label-index.js';
import type { MeshNamespace, MeshNode, MeshService, MeshServicePort, NetworkGateway, ObjectKey, Workload } from './model.js';
import { kubernetesServiceHostname, serviceKey, spiffeId } from './model.js';
import { type Warn, podIps, podWorkload, selectEndpoints } from './pod-workloads.js';
import { portProtocol } from './protocol.js';

/** Istio's label naming a network: on a cluster's istio-system Namespace, a pod, or an east-west Gateway. */
export const NETWORK_LABEL = 'topology.istio.io/network';
/** The ambient profile's serviceScopeConfigs: a Service labelled so is shared with every cluster. */
export const GLOBAL_SERVICE_LABEL = 'istio.io/global';
/** Where Istio reads a cluster's network from, and keeps its remote secrets. */
export const SYSTEM_NAMESPACE = 'istio-system';
/** A network's own east-west gateway, which other networks reach it through. */
export const EAST_WEST_GATEWAY_CLASS = 'istio-east-west';
/** In the agent's own cluster: a hand-written pointer to another network's east-west gateway. */
export const REMOTE_GATEWAY_CLASS = 'istio-remote';
/** istiod sends 15008 for every remote east-west gateway (createSplitHorizonWorkload's default). */
export const EAST_WEST_HBONE_PORT = 15008;

/** Another cluster's objects, read through its remote secret or its `--remote-config` set. */
export interface RemoteClusterObjects {
  readonly id: string;
  readonly objects: readonly MeshObject[];
}

/** The agent's own cluster: its ID and, when configured, its network (else its istio-system label). */
export interface OwnCluster {
  readonly id: string;
  readonly network?: string;
}

/** A cluster's network: the configured one, else its istio-system Namespace's label; none without either. */
export function clusterNetwork(configured: string | undefined, namespaces: Iterable<NamespaceObject>): string | undefined {
  if (configured !== undefined) return configured;
  for (const ns of namespaces) if (ns.metadata.name === SYSTEM_NAMESPACE) return ns.metadata.labels[NETWORK_LABEL];
  return undefined;
}

/**
 * The ambient profile's serviceScopeConfigs (manifests/helm-profiles/profile-ambient.yaml): Services
 * labelled `istio.io/global: "true"` are shared. Ambit applies it when MeshConfig sets none.
 */
export const AMBIENT_PROFILE_SCOPES: readonly ServiceScopeConfig[] = [
  {
    namespaceSelector: { matchLabels: {}, matchExpressions: [] },
    servicesSelector: { matchLabels: {}, matchExpressions: [{ key: GLOBAL_SERVICE_LABEL, operator: 'In', values: ['true'] }] },
    scope: 'GLOBAL',
  },
];

/**
 * Whether a Service is shared across clusters, as istiod's matchServiceScope: some GLOBAL entry's
 * namespaceSelector matches its Namespace's labels and its servicesSelector the Service's (an empty
 * selector matches all); anything else is local. `configured`: MeshConfig's, absent when it sets none.
 */
export function isGlobalService(serviceLabels: Labels, namespaceLabels: Labels, configured: readonly ServiceScopeConfig[] | undefined): boolean {
  return (configured ?? AMBIENT_PROFILE_SCOPES).some(
    (c) => c.scope === 'GLOBAL' && selectorMatches(c.namespaceSelector, namespaceLabels) && selectorMatches(c.servicesSelector, serviceLabels),
  );
}

function selectorMatches(selector: LabelSelector, labels: Labels): boolean {
  for (const [key, value] of Object.entries(selector.matchLabels)) if (labels[key] !== value) return false;
  return selector.matchExpressions.every((e) => {
    const value = labels[e.key];
    switch (e.operator) {
      case 'In':
        return value !== undefined && e.values.includes(value);
      case 'NotIn':
        return value === undefined || !e.values.includes(value);
      case 'Exists':
        return value !== undefined;
      case 'DoesNotExist':
        return value === undefined;
    }
  });
}

/** Istio's uid for a pod, which also keys a remote cluster's pods in the snapshot (unique across clusters). */
export function remotePodKey(cluster: string, namespace: string, name: string): ObjectKey {
  return `${cluster}//Pod/${namespace}/${name}`;
}

/** A remote node's key: never a local node's name (Kubernetes node names have no '/'). */
export function remoteNodeKey(cluster: string, node: string): string {
  return `${cluster}/${node}`;
}

/**
 * Each network's east-west gateway: a Gateway of class istio-east-west (in any cluster) or
 * istio-remote (in the agent's own) labelled with its network, at its first IPAddress, else Hostname,
 * in status.addresses, else spec.addresses. The first one found for a network wins, the own cluster's
 * before remote ones.
 */
export function networkGateways(own: readonly MeshObject[], remotes: readonly RemoteClusterObjects[], trustDomain: string): Map<string, NetworkGateway> {
  const gateways = new Map<string, NetworkGateway>();
  const consider = (object: MeshObject, classes: readonly string[]): void => {
    if (object.kind !== 'Gateway' || !classes.includes(object.spec.gatewayClassName)) return;
    const network = object.metadata.labels[NETWORK_LABEL];
    if (network === undefined || gateways.has(network)) return;
    // What its controller reports, as istiod reads it; else what it asks for (a YAML set has no status).
    const addresses = object.status?.addresses.length ? object.status.addresses : object.spec.addresses;
    const ip = addresses.find((a) => a.type === 'IPAddress');
    const host = addresses.find((a) => a.type === 'Hostname');
    const destination = ip ? { address: ip.value } : host ? { namespace: object.metadata.namespace, hostname: host.value } : undefined;
    // Its pods run as the ServiceAccount named after the Gateway (Istio's deployment controller, no class suffix for istio-east-west).
    const identity = spiffeId(trustDomain, object.metadata.namespace, object.metadata.name);
    if (destination) gateways.set(network, { destination, hboneMtlsPort: EAST_WEST_HBONE_PORT, identity });
  };
  for (const object of own) consider(object, [EAST_WEST_GATEWAY_CLASS, REMOTE_GATEWAY_CLASS]);
  for (const remote of remotes) for (const object of remote.objects) consider(object, [EAST_WEST_GATEWAY_CLASS]);
  return gateways;
}

/** The kinds a remote cluster contributes; anything else there is configuration, the own cluster's alone. */
const REMOTE_KINDS: ReadonlySet<MeshObject['kind']> = new Set(['Node', 'Namespace', 'Pod', 'Service', 'ServiceAccount', 'Gateway', 'ConfigMap']);

/** The snapshot under construction that remote clusters add to. */
export interface MergeTarget {
  readonly trustDomain: string;
  readonly clusterDomain: string;
  /** The agent's network; workloads on any other are reached through their network's gateway. */
  readonly network: string | undefined;
  readonly gateways: ReadonlyMap<string, NetworkGateway>;
  /** The own MeshConfig's serviceScopeConfigs; absent: none set. */
  readonly serviceScopes: readonly ServiceScopeConfig[] | undefined;
  readonly nodes: Map<string, MeshNode>;
  readonly workloads: Map<ObjectKey, Workload>;
  readonly workloadsByIp: Map<string, Workload>;
  readonly services: Map<ObjectKey, MeshService>;
  readonly servicesByVip: Map<string, MeshService>;
  readonly servicesByHostname: Map<string, MeshService>;
  readonly ensureNamespace: (name: string) => MeshNamespace;
  readonly diagnostics: ConfigDiagnostic[];
  readonly warn: Warn;
}

/** Whether a workload on `network` is on the agent's own (the empty network is one like any other). */
export function onOwnNetwork(target: Pick<MergeTarget, 'network'>, network: string | undefined): boolean {
  return (network ?? '') === (target.network ?? '');
}

/** The gateway that reaches `network` from the agent's, or undefined when it is the agent's own (or has none). */
export function gatewayFor(target: Pick<MergeTarget, 'network' | 'gateways'>, network: string | undefined): NetworkGateway | undefined {
  return onOwnNetwork(target, network) ? undefined : target.gateways.get(network ?? '');
}

/**
 * Adds every remote cluster's pods (as workloads) and global Services (merged by namespace/hostname
 * with the own cluster's) to `target`. Clusters go in ID order, so the same objects give the same snapshot.
 */
export function mergeRemoteClusters(remotes: readonly RemoteClusterObjects[], target: MergeTarget): void {
  // Only the own cluster's global Services take remote endpoints; a local-only one keeps its own.
  const ownServices = new Set(target.services.keys());
  const unreachable = new Set<string>();
  for (const remote of [...remotes].sort((a, b) => a.id.localeCompare(b.id))) {
    const byKind = <K extends MeshObject['kind']>(kind: K): Extract<MeshObject, { kind: K }>[] =>
      remote.objects.filter((o): o is Extract<MeshObject, { kind: K }> => o.kind === kind);
    reportIgnored(remote, target);
    const namespaces = new Map(byKind('Namespace').map((ns) => [ns.metadata.name, { name: ns.metadata.name, labels: ns.metadata.labels }]));
    const network = clusterNetwork(undefined, byKind('Namespace'));
    for (const node of byKind('Node')) addNode(remote.id, node, target);
    const workloads: Workload[] = [];
    for (const pod of byKind('Pod')) {
      const workload = remoteWorkload(remote.id, pod, namespaces.get(pod.metadata.namespace) ?? { name: pod.metadata.namespace, labels: {} }, network, target);
      workloads.push(workload);
      if (!onOwnNetwork(target, workload.network) && !workload.networkGateway && !unreachable.has(workload.network ?? '')) {
        unreachable.add(workload.network ?? '');
        const net = workload.network ?? '';
        const message =
          `cluster ${remote.id}: network "${net}" has no east-west gateway (a Gateway of class ${EAST_WEST_GATEWAY_CLASS} labelled ` +
          `${NETWORK_LABEL}: "${net}" with an address); its workloads cannot be reached from network "${target.network ?? ''}"`;
        target.warn(pod.source, 'Pod', pod.metadata.namespace, pod.metadata.name, undefined, message);
      }
    }
    const byLabel = new WorkloadLabelIndex(workloads);
    for (const svc of byKind('Service')) {
      const nsLabels = namespaces.get(svc.metadata.namespace)?.labels ?? {};
      if (isGlobalService(svc.metadata.labels, nsLabels, target.serviceScopes)) mergeService(remote.id, svc, network, byLabel, ownServices, target);
    }
  }
}

function reportIgnored(remote: RemoteClusterObjects, target: MergeTarget): void {
  const ignored = new Map<string, MeshObject>();
  for (const object of remote.objects) if (!REMOTE_KINDS.has(object.kind) && !ignored.has(object.kind)) ignored.set(object.kind, object);
  for (const [kind, first] of ignored) {
    const message =
      `cluster ${remote.id} is a remote cluster: its ${kind} objects are ignored ` +
      `(configuration comes from the agent's own cluster, as for each Istio primary; apply it there too)`;
    target.warn(first.source, kind, first.metadata.namespace, first.metadata.name, undefined, message);
  }
}

function addNode(cluster: string, node: NodeObject, target: MergeTarget): void {
  const key = remoteNodeKey(cluster, node.metadata.name);
  target.nodes.set(key, { name: key, podCidrs: [], labels: node.metadata.labels });
}

function remoteWorkload(cluster: string, pod: PodObject, ns: MeshNamespace, clusterNet: string | undefined, target: MergeTarget): Workload {
  const { namespace, name } = pod.metadata;
  const network = pod.metadata.labels[NETWORK_LABEL] ?? clusterNet;
  const networkGateway = gatewayFor(target, network);
  const key = remotePodKey(cluster, namespace, name);
  target.ensureNamespace(namespace);
  const workload = podWorkload(pod, ns, target.trustDomain, {
    key,
    istioUid: key,
    ...(pod.spec.nodeName ? { node: remoteNodeKey(cluster, pod.spec.nodeName) } : {}),
    cluster,
    ...(network !== undefined ? { network } : {}),
    ...(networkGateway ? { networkGateway } : {}),
  });
  target.workloads.set(key, workload);
  // Another network's pod IPs are never dialled (and may repeat ours); on ours, the own cluster's pod wins.
  if (onOwnNetwork(target, network) && !pod.spec.hostNetwork) {
    for (const ip of podIps(pod)) {
      const taken = target.workloadsByIp.get(ip);
      if (!taken) {
        target.workloadsByIp.set(ip, workload);
        continue;
      }
      const message = `cluster ${cluster}: IP ${ip} is already used by ${taken.key} on the same network; connections to it reach that one`;
      target.warn(pod.source, 'Pod', namespace, name, 'status.podIP', message);
    }
  }
  return workload;
}

/**
 * A remote global Service: merged into the own cluster's Service of its namespace/hostname when that
 * one is global too (ignored when it is local-only), else into an earlier remote cluster's copy, else
 * the first copy, which is then the base (its ports, its load-balancing).
 */
function mergeService(
  cluster: string,
  svc: ServiceObject,
  network: string | undefined,
  byLabel: WorkloadLabelIndex,
  ownServices: ReadonlySet<ObjectKey>,
  target: MergeTarget,
): void {
  const { name, namespace } = svc.metadata;
  const hostname = kubernetesServiceHostname(name, namespace, target.clusterDomain);
  const key = serviceKey(namespace, hostname);
  const base = target.services.get(key);
  if (base && ownServices.has(key) && (!isGlobalService(base.labels, target.ensureNamespace(namespace).labels, target.serviceScopes) || base.entry)) return;
  const ports: MeshServicePort[] = svc.spec.ports.map((p) => ({
    ...(p.name ? { name: p.name } : {}),
    port: p.port,
    targetPort: p.targetPort,
    protocol: portProtocol(p),
  }));
  const found = selectEndpoints(svc, ports, byLabel, false, target.warn, false);
  const sameNetwork = onOwnNetwork(target, network);
  // The cluster IPs of another network mean nothing here (and may repeat ours).
  const vips = (sameNetwork ? serviceVips(svc) : []).filter((vip) => {
    const holder = target.servicesByVip.get(vip);
    if (holder && holder.key !== key) {
      const message = `cluster ${cluster}: cluster IP ${vip} is already used by Service ${holder.key} on the same network; it stays with that one`;
      target.warn(svc.source, 'Service', namespace, name, 'spec.clusterIP', message);
    }
    return !holder;
  });
  if (!base) {
    const selector = svc.spec.selector ? { selector: svc.spec.selector } : {};
    const service: MeshService = { key, name, namespace, hostname, vips, ports, ...selector, endpoints: found, labels: svc.metadata.labels, source: svc.source };
    index(service, target);
    return;
  }
  if (!samePorts(base.ports, ports)) {
    const message =
      `cluster ${cluster}: its ports (${describePorts(ports)}) differ from ${base.key}'s (${describePorts(base.ports)}), ` +
      'which are in force; its endpoints serve the ports both have';
    target.warn(svc.source, 'Service', namespace, name, 'spec.ports', message);
  }
  const served = new Set(base.ports.map((p) => p.port));
  const endpoints = found.map((e) => ({ ...e, ports: new Map([...e.ports].filter(([port]) => served.has(port))) }));
  index({ ...base, vips: [...base.vips, ...vips.filter((v) => !base.vips.includes(v))], endpoints: [...base.endpoints, ...endpoints] }, target);
}

function index(service: MeshService, target: MergeTarget): void {
  target.services.set(service.key, service);
  target.servicesByHostname.set(service.hostname, service);
  for (const vip of service.vips) target.servicesByVip.set(vip, service);
}

function samePorts(a: readonly MeshServicePort[], b: readonly MeshServicePort[]): boolean {
  return describePorts(a) === describePorts(b);
}

function describePorts(ports: readonly MeshServicePort[]): string {
  return ports.map((p) => `${p.port}→${p.targetPort}`).sort().join(', ');
}

/** A Service's cluster IPs (none for a headless one). */
export function serviceVips(svc: ServiceObject): string[] {
  const vips = svc.spec.clusterIPs.filter((ip) => ip !== 'None');
  if (svc.spec.clusterIP && svc.spec.clusterIP !== 'None' && !vips.includes(svc.spec.clusterIP)) vips.unshift(svc.spec.clusterIP);
  return vips;
}

// Turns validated configuration objects into a MeshSnapshot: workloads with their SPIFFE identities and
// enrollment, services with endpoints from selectors over ready pods, and the Istio resources in force;
// other clusters' pods and global Services join through agent/state/clusters.ts.
// Problems that span objects (duplicate pod IPs, selectors that match nothing) become diagnostics here;
// single-object problems were already caught by agent/config.

import type { ConfigDiagnostic } from '../config/diagnostics.js';
import type { Labels, NamespaceObject, PodObject, ServiceObject, SourceLocation } from '../config/kubernetes.js';
import { EMPTY_MESH_CONFIG, type MeshConfig } from '../config/mesh-config.js';
import type { MeshObject } from '../config/objects.js';
import {
  type AmbitResources,
  type IstioResources,
  type MeshNamespace,
  type MeshNode,
  type MeshService,
  type MeshSnapshot,
  type ObjectKey,
  type Workload,
  kubernetesServiceHostname,
  objectKey,
  serviceKey,
} from './model.js';
import { NETWORK_LABEL, type OwnCluster, type RemoteClusterObjects, clusterNetwork, gatewayFor, mergeRemoteClusters, networkGateways, serviceVips } from './clusters.js';
import { gatewayApiResources } from './gateway-api.js';
import { WorkloadLabelIndex } from './label-index.js';
import { podIps, podWorkload, selectEndpoints } from './pod-workloads.js';
import { portProtocol } from './protocol.js';
import { serviceLoadBalancing } from './locality.js';
import { entryWorkloads, serviceEntryServices } from './service-entries.js';


export interface SnapshotOptions {
  readonly version: number;
  readonly trustDomain: string;
  readonly clusterDomain: string;
  /** What the source states where YAML and Kubernetes leave it to be derived (istiod); absent: derived. */
  readonly stated?: StatedFacts;
  /** The agent's own cluster (its objects are `objects`); absent: one cluster, ID unknown. */
  readonly cluster?: OwnCluster;
  /** Other clusters' objects, whose pods and global Services join the mesh (docs/multicluster.md). */
  readonly remoteClusters?: readonly RemoteClusterObjects[];
}

/** What istiod states about the objects its translation hands in, which buildSnapshot would otherwise derive. */
export interface StatedFacts {
  /** The key a pod is stored under: istiod's uid, since namespace/name need not be unique there. */
  workloadKey(pod: PodObject): ObjectKey;
  /** A Service's own hostname: a ServiceEntry host is no `<name>.<namespace>.svc` name. */
  hostname(svc: ServiceObject): string;
  /** Whether a Service's unready endpoints still get traffic (health_policy ALLOW_ALL). */
  allowsUnready(svc: ServiceObject): boolean;
}

export function buildSnapshot(objects: readonly MeshObject[], options: SnapshotOptions): MeshSnapshot {
  const diagnostics: ConfigDiagnostic[] = [];
  const warn = (source: SourceLocation, kind: string, namespace: string, name: string, field: string | undefined, message: string): void => {
    diagnostics.push({ severity: 'warning', location: source, object: { kind, namespace, name }, ...(field ? { field } : {}), message });
  };

  const nodes = new Map<string, MeshNode>();
  const declaredNamespaces = new Map<string, NamespaceObject>();
  const pods: PodObject[] = [];
  const serviceObjects: ServiceObject[] = [];
  const serviceAccounts = new Set<ObjectKey>();
  const istio = {
    virtualServices: [] as IstioResources['virtualServices'][number][],
    destinationRules: [] as IstioResources['destinationRules'][number][],
    authorizationPolicies: [] as IstioResources['authorizationPolicies'][number][],
    peerAuthentications: [] as IstioResources['peerAuthentications'][number][],
    requestAuthentications: [] as IstioResources['requestAuthentications'][number][],
    serviceEntries: [] as IstioResources['serviceEntries'][number][],
    workloadEntries: [] as IstioResources['workloadEntries'][number][],
    telemetries: [] as IstioResources['telemetries'][number][],
    meshConfig: EMPTY_MESH_CONFIG as MeshConfig,
  };
  const ambit = { rateLimits: [] as AmbitResources['rateLimits'][number][] };

  for (const object of objects) {
    switch (object.kind) {
      case 'Node': {
        const internalIp = object.status.addresses.find((a) => a.type === 'InternalIP')?.address;
        const podCidrs = object.spec.podCIDRs.length > 0 ? object.spec.podCIDRs : object.spec.podCIDR ? [object.spec.podCIDR] : [];
        nodes.set(object.metadata.name, {
          name: object.metadata.name,
          ...(internalIp ? { internalIp } : {}),
          podCidrs,
          labels: object.metadata.labels,
        });
        break;
      }
      case 'Namespace':
        declaredNamespaces.set(object.metadata.name, object);
        break;
      case 'ServiceAccount':
        serviceAccounts.add(objectKey(object.metadata.namespace, object.metadata.name));
        break;
      case 'Pod':
        pods.push(object);
        break;
      case 'Service':
        serviceObjects.push(object);
        break;
      case 'VirtualService':
        istio.virtualServices.push(object);
        break;
      case 'DestinationRule':
        istio.destinationRules.push(object);
        break;
      case 'AuthorizationPolicy':
        istio.authorizationPolicies.push(object);
        break;
      case 'PeerAuthentication':
        istio.peerAuthentications.push(object);
        break;
      case 'RequestAuthentication':
        istio.requestAuthentications.push(object);
        break;
      case 'ServiceEntry':
        istio.serviceEntries.push(object);
        break;
      case 'WorkloadEntry':
        istio.workloadEntries.push(object);
        break;
      case 'Telemetry':
        istio.telemetries.push(object);
        break;
      case 'ConfigMap':
        if (object.meshConfig) istio.meshConfig = object.meshConfig;
        break;
      case 'RateLimit':
        ambit.rateLimits.push(object);
        break;
    }
  }

  const namespaces = new Map<string, MeshNamespace>();
  for (const [name, ns] of declaredNamespaces) namespaces.set(name, { name, labels: ns.metadata.labels, source: ns.source });
  const ensureNamespace = (name: string): MeshNamespace => {
    let ns = namespaces.get(name);
    if (!ns) {
      ns = { name, labels: {} };
      namespaces.set(name, ns);
    }
    return ns;
  };

  const remotes = options.remoteClusters ?? [];
  const ownNetwork = clusterNetwork(options.cluster?.network, declaredNamespaces.values());
  const placement = { network: ownNetwork, gateways: networkGateways(objects, remotes, options.trustDomain) };
  const workloads = new Map<ObjectKey, Workload>();
  const workloadsByIp = new Map<string, Workload>();
  for (const pod of pods) {
    const { name, namespace } = pod.metadata;
    const ns = ensureNamespace(namespace);
    const serviceAccount = pod.spec.serviceAccountName ?? 'default';
    if (pod.spec.serviceAccountName && !serviceAccounts.has(objectKey(namespace, serviceAccount))) {
      warn(pod.source, 'Pod', namespace, name, 'spec.serviceAccountName', `ServiceAccount ${namespace}/${serviceAccount} is not defined; the identity is still derived from its name`);
    }
    if (pod.spec.nodeName && nodes.size > 0 && !nodes.has(pod.spec.nodeName)) {
      warn(pod.source, 'Pod', namespace, name, 'spec.nodeName', `node "${pod.spec.nodeName}" is not defined; no agent will enroll this pod`);
    }
    const ips = podIps(pod);
    // A hostNetwork pod's IP is its node's: many pods share it, and none owns it.
    const ownsIps = !pod.spec.hostNetwork;
    const conflicting = ownsIps ? ips.map((ip) => workloadsByIp.get(ip)).find((w) => w !== undefined) : undefined;
    if (conflicting) {
      diagnostics.push({
        severity: 'error',
        location: pod.source,
        object: { kind: 'Pod', namespace, name },
        field: 'status.podIP',
        message: `IP ${ips.join(', ')} is already used by Pod ${conflicting.key} (${conflicting.source.file}:${conflicting.source.line}); this pod is ignored`,
      });
      continue;
    }
    const network = pod.metadata.labels[NETWORK_LABEL] ?? ownNetwork;
    const networkGateway = gatewayFor(placement, network);
    const key = options.stated?.workloadKey(pod) ?? objectKey(namespace, name);
    const workload = podWorkload(pod, ns, options.trustDomain, {
      key,
      ...(pod.spec.nodeName ? { node: pod.spec.nodeName } : {}),
      ...(options.cluster ? { cluster: options.cluster.id } : {}),
      ...(network !== undefined ? { network } : {}),
      ...(networkGateway ? { networkGateway } : {}),
    });
    workloads.set(workload.key, workload);
    if (ownsIps) for (const ip of ips) workloadsByIp.set(ip, workload);
  }

  // WorkloadEntries and inline ServiceEntry endpoints are workloads too; selectors (a Service's, a
  // ServiceEntry's workloadSelector) pick WorkloadEntries as they pick pods, as in Istio.
  const entries = entryWorkloads([...istio.workloadEntries, ...istio.serviceEntries], options.trustDomain);
  for (const workload of entries.workloads) {
    ensureNamespace(workload.namespace);
    const conflicting = workload.ips.map((ip) => workloadsByIp.get(ip)).find((w) => w !== undefined);
    if (conflicting && workload.enrollment.enrolled) {
      diagnostics.push({
        severity: 'error',
        location: workload.source,
        object: { kind: workload.entry ?? 'WorkloadEntry', namespace: workload.namespace, name: workload.name },
        field: 'spec.address',
        message: `IP ${workload.ips.join(', ')} is already used by ${conflicting.key} (${conflicting.source.file}:${conflicting.source.line}); this endpoint is ignored`,
      });
      continue;
    }
    workloads.set(workload.key, workload);
    // An endpoint outside the mesh is no workload a pod reaches by its IP: dialled directly, it is passthrough.
    if (workload.enrollment.enrolled) for (const ip of workload.ips) workloadsByIp.set(ip, workload);
  }

  const byLabel = new WorkloadLabelIndex([...workloads.values()].filter((w) => w.entry !== 'ServiceEntry'));
  const services = new Map<ObjectKey, MeshService>();
  const servicesByVip = new Map<string, MeshService>();
  const servicesByHostname = new Map<string, MeshService>();
  for (const svc of serviceObjects) {
    const { name, namespace } = svc.metadata;
    ensureNamespace(namespace);
    const vips = serviceVips(svc);
    const taken = vips.map((vip) => servicesByVip.get(vip)).find((s) => s !== undefined);
    if (taken) {
      diagnostics.push({
        severity: 'error',
        location: svc.source,
        object: { kind: 'Service', namespace, name },
        field: 'spec.clusterIP',
        message: `cluster IP ${vips.join(', ')} is already used by Service ${taken.key} (${taken.source.file}:${taken.source.line}); this service is ignored`,
      });
      continue;
    }
    const ports = svc.spec.ports.map((p) => ({
      ...(p.name ? { name: p.name } : {}),
      port: p.port,
      targetPort: p.targetPort,
      protocol: portProtocol(p),
    }));
    const selector = svc.spec.selector;
    const allowUnready = options.stated?.allowsUnready(svc) ?? false;
    const endpoints = selectEndpoints(svc, ports, byLabel, allowUnready, warn, true);
    const loadBalancing = serviceLoadBalancing(svc.spec.internalTrafficPolicy, svc.spec.trafficDistribution);
    const hostname = options.stated?.hostname(svc) ?? kubernetesServiceHostname(name, namespace, options.clusterDomain);
    const service: MeshService = {
      key: serviceKey(namespace, hostname),
      name,
      namespace,
      hostname,
      vips,
      ports,
      ...(selector ? { selector } : {}),
      endpoints,
      ...(loadBalancing ? { loadBalancing } : {}),
      ...(allowUnready ? { allowUnready: true as const } : {}),
      labels: svc.metadata.labels,
      source: svc.source,
    };
    services.set(service.key, service);
    servicesByHostname.set(service.hostname, service);
    for (const vip of vips) servicesByVip.set(vip, service);
  }

  mergeRemoteClusters(remotes, {
    trustDomain: options.trustDomain,
    clusterDomain: options.clusterDomain,
    ...placement,
    serviceScopes: istio.meshConfig.serviceScopeConfigs,
    nodes,
    workloads,
    workloadsByIp,
    services,
    servicesByVip,
    servicesByHostname,
    ensureNamespace,
    diagnostics,
    warn,
  });

  const entryServices = serviceEntryServices(istio.serviceEntries, entries.portsByName, workloads, byLabel, { vips: servicesByVip, keys: services }, diagnostics, warn);
  for (const service of entryServices) {
    ensureNamespace(service.namespace);
    services.set(service.key, service);
    // A Kubernetes Service of the same hostname keeps the name (istiod merges them; Ambit does not yet).
    if (!servicesByHostname.has(service.hostname)) servicesByHostname.set(service.hostname, service);
    for (const vip of service.vips) servicesByVip.set(vip, service);
  }

  for (const policy of [...istio.authorizationPolicies, ...istio.peerAuthentications, ...istio.requestAuthentications]) {
    const selector = policy.spec.selector?.matchLabels;
    if (!selector) continue;
    const { namespace, name } = policy.metadata;
    const matches = byLabel.select(namespace, selector).length > 0;
    if (!matches) {
      warn(policy.source, policy.kind, namespace, name, 'spec.selector.matchLabels', `selector ${formatSelector(selector)} matches no pod in namespace ${namespace}; the policy applies to nothing yet`);
    }
  }

  for (const limit of ambit.rateLimits) {
    const { namespace, name } = limit.metadata;
    const target = limit.spec.target;
    if (target.kind !== 'service') continue;
    const svc = services.get(serviceKey(namespace, kubernetesServiceHostname(target.name, namespace, options.clusterDomain)));
    if (!svc) warn(limit.source, 'RateLimit', namespace, name, 'spec.targetRef.name', `Service ${namespace}/${target.name} is not defined; the rate limit applies to nothing yet`);
    else if (target.port !== undefined && !svc.ports.some((p) => p.port === target.port)) {
      warn(limit.source, 'RateLimit', namespace, name, 'spec.targetRef.port', `Service ${svc.key} has no port ${target.port}; the rate limit applies to nothing`);
    }
  }

  const gatewayApi = gatewayApiResources(objects, services, options.clusterDomain, warn);

  return {
    version: options.version,
    trustDomain: options.trustDomain,
    clusterDomain: options.clusterDomain,
    ...(options.cluster ? { ownCluster: options.cluster.id } : {}),
    ...(ownNetwork !== undefined ? { ownNetwork } : {}),
    nodes,
    namespaces,
    workloads,
    workloadsByIp,
    services,
    servicesByVip,
    servicesByHostname,
    istio,
    gatewayApi,
    ambit,
    diagnostics,
  };
}

/** Kubernetes label-selector semantics for matchLabels: every key must be present with the same value. */
export function matchesLabels(selector: Labels, labels: Labels): boolean {
  for (const [key, value] of Object.entries(selector)) if (labels[key] !== value) return false;
  return true;
}

function formatSelector(selector: Labels): string {
  const pairs = Object.entries(selector).map(([k, v]) => `${k}=${v}`);
  return pairs.length > 0 ? pairs.join(',') : '{}';
}

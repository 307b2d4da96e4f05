// Workloads and services as ztunnel dumps them (src/state/workload.rs Workload, src/state/service.rs
// Service and Endpoint), from what istiod would have sent for the same pods and Services: every pod
// with an address, and every such pod a Service selects as its endpoint, healthy or not.

import { canonicalName, canonicalRevision } from '../state/canonical.js';
import { matchesLabels } from '../state/build.js';
import { isGlobalService } from '../state/clusters.js';
import type { MeshService, MeshSnapshot, NetworkGateway, Workload } from '../state/model.js';
import { DEFAULT_CLUSTER_ID } from '../telemetry/connections.js';
import { compareBytes } from './byte-order.js';
import { workloadPolicies } from './dump-policies.js';

export type HealthStatus = 'Healthy' | 'Unhealthy';

/** ztunnel's field order; `node`, `authorizationPolicies` and `services` are left out when empty, as there. */
export interface WorkloadDump {
  readonly workloadIps: readonly string[];
  /** How a client on another network reaches it: `<network>/<ip>` or `<namespace>/<hostname>`, and the port. */
  readonly networkGateway?: { readonly destination: string; readonly hboneMtlsPort: number };
  readonly protocol: 'HBONE' | 'TCP';
  readonly networkMode: 'Standard' | 'HostNetwork';
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly trustDomain: string;
  readonly serviceAccount: string;
  /** Left out for the default (empty) network, as ztunnel. */
  readonly network?: string;
  readonly workloadName: string;
  readonly workloadType: 'pod';
  readonly canonicalName: string;
  readonly canonicalRevision: string;
  readonly node?: string;
  /** `namespace/name` of the selector-bound policies that select it (dump-policies.ts). */
  readonly authorizationPolicies?: readonly string[];
  readonly status: HealthStatus;
  readonly clusterId: string;
  /** `namespace/hostname` of the Services that select it. */
  readonly services?: readonly string[];
  /** A workload istiod knows by name only (no address). */
  readonly hostname?: string;
  readonly capacity: number;
}

/** One workload behind a Service: its target port per service port, and its health. */
export interface EndpointDump {
  readonly workloadUid: string;
  readonly port: Readonly<Record<string, number>>;
  readonly status: HealthStatus;
}

export interface ServiceDump {
  readonly name: string;
  readonly namespace: string;
  readonly hostname: string;
  /** `<network>/<ip>`; the default network is empty. */
  readonly vips: readonly string[];
  /** Service port → target port; 0 when the target port is a name (each endpoint says its own). */
  readonly ports: Readonly<Record<string, number>>;
  /** By workload uid. */
  readonly endpoints: Readonly<Record<string, EndpointDump>>;
  readonly subjectAltNames: readonly string[];
  readonly ipFamilies: 'IPv4' | 'IPv6' | 'Dual';
  /** istiod marks every Kubernetes Service canonical (the one owner of its hostname). */
  readonly canonical: boolean;
  /** ztunnel's LoadBalancer: present when the service prefers localities or keeps unhealthy endpoints. */
  readonly loadBalancer?: { readonly routingPreferences: readonly string[]; readonly mode: 'Standard' | 'Strict' | 'Failover'; readonly healthPolicy: 'OnlyHealthy' | 'AllowAll' };
  readonly visibility: 'Public' | 'Namespace';
}

/** istiod's uid for a workload it sent, else Istio's uid for a pod: cluster, group, kind, namespace and name. */
export function workloadUid(w: Pick<Workload, 'namespace' | 'name' | 'istioUid' | 'cluster'>): string {
  return w.istioUid ?? `${w.cluster ?? DEFAULT_CLUSTER_ID}//Pod/${w.namespace}/${w.name}`;
}

/**
 * ztunnel's GatewayAddress as it dumps it: the destination as one string, `<network>/<ip>` (the
 * gateway is on the workload's network, as istiod addresses it) or `<namespace>/<hostname>`.
 */
function networkGatewayDump(gateway: NetworkGateway, network: string | undefined): NonNullable<WorkloadDump['networkGateway']> {
  const d = gateway.destination;
  return { destination: 'address' in d ? `${network ?? ''}/${d.address}` : `${d.namespace}/${d.hostname}`, hboneMtlsPort: gateway.hboneMtlsPort };
}

/** istiod sends no workload for a pod without an address, but does for one it knows by hostname. */
export function dumpedWorkloads(snapshot: MeshSnapshot): Workload[] {
  return [...snapshot.workloads.values()].filter((w) => w.ips.length > 0 || w.hostname !== undefined);
}

/** Sorted by uid, as ztunnel's workload store. */
export function workloadsDump(snapshot: MeshSnapshot, members: ServiceMembers): WorkloadDump[] {
  return dumpedWorkloads(snapshot)
    .map((w): WorkloadDump => {
      const policies = workloadPolicies(snapshot, w);
      const services = (members.servicesOf.get(w) ?? []).map((s) => `${s.namespace}/${s.hostname}`).sort(compareBytes);
      return {
        workloadIps: w.ips,
        ...(w.networkGateway ? { networkGateway: networkGatewayDump(w.networkGateway, w.network) } : {}),
        protocol: w.enrollment.enrolled ? 'HBONE' : 'TCP',
        networkMode: w.hostNetwork ? 'HostNetwork' : 'Standard',
        uid: workloadUid(w),
        name: w.name,
        namespace: w.namespace,
        trustDomain: snapshot.trustDomain,
        serviceAccount: w.serviceAccount,
        ...(w.network ? { network: w.network } : {}),
        workloadName: w.workloadName,
        workloadType: 'pod',
        canonicalName: canonicalName(w),
        canonicalRevision: canonicalRevision(w),
        ...(w.node ? { node: w.node } : {}),
        ...(policies.length > 0 ? { authorizationPolicies: policies } : {}),
        status: w.ready ? 'Healthy' : 'Unhealthy',
        clusterId: w.cluster ?? snapshot.ownCluster ?? DEFAULT_CLUSTER_ID,
        ...(services.length > 0 ? { services } : {}),
        ...(w.hostname !== undefined ? { hostname: w.hostname } : {}),
        capacity: w.capacity ?? 1,
      };
    })
    .sort((a, b) => compareBytes(a.uid, b.uid));
}

/** Sorted by hostname (then namespace), as ztunnel's service store. */
export function servicesDump(snapshot: MeshSnapshot, members: ServiceMembers): ServiceDump[] {
  return [...snapshot.services.values()]
    .sort((a, b) => compareBytes(a.hostname, b.hostname) || compareBytes(a.namespace, b.namespace))
    .map((s): ServiceDump => {
      const endpoints: Record<string, EndpointDump> = {};
      for (const w of members.workloadsOf.get(s) ?? []) {
        const uid = workloadUid(w);
        endpoints[uid] = { workloadUid: uid, port: Object.fromEntries(targetPorts(s, w)), status: w.ready ? 'Healthy' : 'Unhealthy' };
      }
      return {
        name: s.name,
        namespace: s.namespace,
        hostname: s.hostname,
        vips: s.vips.map((v) => `/${v}`),
        ports: Object.fromEntries(s.ports.map((p) => [String(p.port), typeof p.targetPort === 'number' ? p.targetPort : 0])),
        endpoints,
        subjectAltNames: [...(s.subjectAltNames ?? [])],
        ipFamilies: s.vips.some((v) => v.includes(':')) ? (s.vips.some((v) => !v.includes(':')) ? 'Dual' : 'IPv6') : 'IPv4',
        canonical: true,
        ...(s.loadBalancing || s.allowUnready ? { loadBalancer: loadBalancerDump(s) } : {}),
        visibility: s.visibility === 'namespace' ? 'Namespace' : 'Public',
      };
    });
}

/** ztunnel's LoadBalancer, in its dump's spelling (enum variant names). */
function loadBalancerDump(s: MeshService): NonNullable<ServiceDump['loadBalancer']> {
  const lb = s.loadBalancing;
  return {
    routingPreferences: (lb?.routingPreference ?? []).map((scope) => scope[0]!.toUpperCase() + scope.slice(1)),
    mode: lb?.mode === 'strict' ? 'Strict' : lb?.mode === 'failover' ? 'Failover' : 'Standard',
    healthPolicy: s.allowUnready ? 'AllowAll' : 'OnlyHealthy',
  };
}

/** Which dumped workloads each Service selects, whatever their readiness, and the reverse. */
export interface ServiceMembers {
  readonly workloadsOf: ReadonlyMap<MeshService, readonly Workload[]>;
  readonly servicesOf: ReadonlyMap<Workload, readonly MeshService[]>;
}

/**
 * As istiod builds a Service's endpoints: every pod with an address in its namespace that its selector
 * matches (another cluster's only for a global Service). The snapshot's own `endpoints` hold only the pods traffic may go to, which is not what
 * ztunnel shows (`0/1` for a Service whose one pod is not ready).
 */
export function serviceMembers(snapshot: MeshSnapshot): ServiceMembers {
  const workloadsOf = new Map<MeshService, Workload[]>();
  const servicesOf = new Map<Workload, MeshService[]>();
  const workloads = dumpedWorkloads(snapshot);
  for (const s of snapshot.services.values()) {
    const selector = s.selector;
    if (!selector) continue;
    // Another cluster's pods belong only to Services shared across clusters (agent/state/clusters.ts).
    const shared = isGlobalService(s.labels, snapshot.namespaces.get(s.namespace)?.labels ?? {}, snapshot.istio.meshConfig.serviceScopeConfigs);
    const selected = workloads.filter((w) => w.namespace === s.namespace && matchesLabels(selector, w.labels) && (shared || (w.cluster ?? snapshot.ownCluster) === snapshot.ownCluster));
    workloadsOf.set(s, selected);
    for (const w of selected) servicesOf.set(w, [...(servicesOf.get(w) ?? []), s]);
  }
  return { workloadsOf, servicesOf };
}

/** Service port → the workload's port; a port whose named target the pod lacks is left out, as istiod does. */
function targetPorts(s: MeshService, w: Workload): [string, number][] {
  return s.ports.flatMap((p) => {
    const target = typeof p.targetPort === 'number' ? p.targetPort : w.namedPorts.get(p.targetPort);
    return target === undefined ? [] : [[String(p.port), target] as [string, number]];
  });
}

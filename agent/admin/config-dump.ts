// The agent's state as `/config_dump` shows it, in the JSON shape `istioctl ztunnel-config` reads
// (camelCase, ztunnel's field names), so that Istio's own tooling can inspect an Ambit node.

import { matchesLabels } from '../state/build.js';
import { canonicalName, canonicalRevision } from '../state/canonical.js';
import type { MeshService, MeshSnapshot, Workload } from '../state/model.js';

export interface WorkloadDump {
  readonly uid: string;
  readonly workloadIps: readonly string[];
  readonly protocol: 'HBONE' | 'TCP';
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly workloadName: string;
  readonly workloadType: 'pod';
  readonly canonicalName: string;
  readonly canonicalRevision: string;
  readonly clusterId: string;
  readonly trustDomain: string;
  readonly node: string;
  readonly status: 'Healthy' | 'Unhealthy';
  readonly services: readonly string[];
  readonly authorizationPolicies: readonly string[];
}

export interface ServiceDump {
  readonly name: string;
  readonly namespace: string;
  readonly hostname: string;
  readonly vips: readonly string[];
  readonly ports: Readonly<Record<string, number>>;
  readonly endpoints: Readonly<Record<string, { workloadUid: string; service: string; port: Readonly<Record<string, number>> }>>;
  readonly subjectAltNames: readonly string[];
  readonly ipFamilies: 'IPv4' | 'IPv6' | 'Dual';
}

export interface PolicyDump {
  readonly name: string;
  readonly namespace: string;
  readonly scope: 'Global' | 'Namespace' | 'WorkloadSelector';
  readonly action: string;
}

export interface ConfigDump {
  readonly version: number;
  readonly workloads: readonly WorkloadDump[];
  readonly services: readonly ServiceDump[];
  readonly policies: readonly PolicyDump[];
  readonly config: { readonly node: string; readonly trustDomain: string; readonly clusterDomain: string };
}

const CLUSTER_ID = 'Kubernetes';
const ROOT_NAMESPACE = 'istio-system';

/** Istio's uid for a pod: cluster, group, kind, namespace and name. */
export function workloadUid(w: Workload): string {
  return `${CLUSTER_ID}//Pod/${w.namespace}/${w.name}`;
}

export function buildConfigDump(snapshot: MeshSnapshot, node: string): ConfigDump {
  const servicesOf = (w: Workload): string[] =>
    [...snapshot.services.values()].filter((s) => s.endpoints.some((e) => e.workload === w.key)).map((s) => `${s.namespace}/${s.hostname}`);
  const workloads = [...snapshot.workloads.values()].map(
    (w): WorkloadDump => ({
      uid: workloadUid(w),
      workloadIps: w.ips,
      protocol: w.enrollment.enrolled ? 'HBONE' : 'TCP',
      name: w.name,
      namespace: w.namespace,
      serviceAccount: w.serviceAccount,
      workloadName: w.labels['app'] ?? w.name,
      workloadType: 'pod',
      canonicalName: canonicalName(w),
      canonicalRevision: canonicalRevision(w),
      clusterId: CLUSTER_ID,
      trustDomain: snapshot.trustDomain,
      node: w.node ?? '',
      status: w.ready ? 'Healthy' : 'Unhealthy',
      services: servicesOf(w),
      authorizationPolicies: policiesSelecting(snapshot, w),
    }),
  );
  return {
    version: snapshot.version,
    workloads,
    services: [...snapshot.services.values()].map((s) => serviceDump(snapshot, s)),
    policies: snapshot.istio.authorizationPolicies.map((p) => ({
      name: p.metadata.name,
      namespace: p.metadata.namespace,
      scope: p.spec.selector ? 'WorkloadSelector' : p.metadata.namespace === ROOT_NAMESPACE ? 'Global' : 'Namespace',
      action: p.spec.action,
    })),
    config: { node, trustDomain: snapshot.trustDomain, clusterDomain: snapshot.clusterDomain },
  };
}

function serviceDump(snapshot: MeshSnapshot, s: MeshService): ServiceDump {
  const endpoints: Record<string, ServiceDump['endpoints'][string]> = {};
  for (const e of s.endpoints) {
    const w = snapshot.workloads.get(e.workload);
    if (!w) continue;
    endpoints[workloadUid(w)] = { workloadUid: workloadUid(w), service: '', port: Object.fromEntries([...e.ports].map(([k, v]) => [String(k), v])) };
  }
  return {
    name: s.name,
    namespace: s.namespace,
    hostname: s.hostname,
    // Istio writes addresses as <network>/<ip>; the default network is empty.
    vips: s.vips.map((v) => `/${v}`),
    ports: Object.fromEntries(s.ports.map((p) => [String(p.port), typeof p.targetPort === 'number' ? p.targetPort : 0])),
    endpoints,
    subjectAltNames: [],
    ipFamilies: s.vips.some((v) => v.includes(':')) ? (s.vips.some((v) => !v.includes(':')) ? 'Dual' : 'IPv6') : 'IPv4',
  };
}

/** `namespace/name` of every AuthorizationPolicy that applies to the workload. */
function policiesSelecting(snapshot: MeshSnapshot, w: Workload): string[] {
  return snapshot.istio.authorizationPolicies
    .filter((p) => {
      const ns = p.metadata.namespace;
      if (ns !== ROOT_NAMESPACE && ns !== w.namespace) return false;
      const selector = p.spec.selector?.matchLabels;
      return selector === undefined || matchesLabels(selector, w.labels);
    })
    .map((p) => `${p.metadata.namespace}/${p.metadata.name}`);
}

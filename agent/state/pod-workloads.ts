// A pod as the mesh sees it (its workload: identity, enrollment, readiness, named ports) and the
// endpoints a Service's selector finds among such workloads. The same rules serve the agent's own
// cluster and every remote one (agent/state/clusters.ts); only where a workload sits differs.

import type { PodObject, ServiceObject, SourceLocation } from '../config/kubernetes.js';
import type { WorkloadLabelIndex } from './label-index.js';
import type { Enrollment, MeshNamespace, MeshServicePort, NetworkGateway, ObjectKey, ServiceEndpoint, Workload } from './model.js';
import { spiffeId } from './model.js';
import { workloadName } from './workload-name.js';

/** The label that puts a namespace (or a single pod) in the mesh, and takes a pod out with `none`. */
export const DATAPLANE_MODE_LABEL = 'istio.io/dataplane-mode';
/** Set by Istio's sidecar injector on every pod that has a sidecar. */
const SIDECAR_STATUS_ANNOTATION = 'sidecar.istio.io/status';

export type Warn = (source: SourceLocation, kind: string, namespace: string, name: string, field: string | undefined, message: string) => void;

/** Where a pod's workload sits in the mesh: its key, node, cluster and network. */
export interface PodPlacement {
  readonly key: ObjectKey;
  /** Istio's uid for it, when its key is not `namespace/name` (a remote cluster's pod). */
  readonly istioUid?: string;
  /** Its node's key in the snapshot: the node name, `<cluster>/<node>` for a remote cluster's. */
  readonly node?: string;
  readonly cluster?: string;
  readonly network?: string;
  readonly networkGateway?: NetworkGateway;
}

export function podWorkload(pod: PodObject, ns: MeshNamespace, trustDomain: string, placement: PodPlacement): Workload {
  const { name, namespace } = pod.metadata;
  const serviceAccount = pod.spec.serviceAccountName ?? 'default';
  const ips = podIps(pod);
  return {
    key: placement.key,
    name,
    namespace,
    // The API server's uid when the pod came from it (kubepods cgroups are named by it), else a stable stand-in.
    uid: pod.metadata.uid ?? `${namespace}/${name}`,
    workloadName: workloadName(pod.metadata),
    ...(placement.istioUid !== undefined ? { istioUid: placement.istioUid } : {}),
    ...(placement.node !== undefined ? { node: placement.node } : {}),
    ...(placement.cluster !== undefined ? { cluster: placement.cluster } : {}),
    ...(placement.network !== undefined ? { network: placement.network } : {}),
    ...(placement.networkGateway ? { networkGateway: placement.networkGateway } : {}),
    ips,
    labels: pod.metadata.labels,
    serviceAccount,
    identity: spiffeId(trustDomain, namespace, serviceAccount),
    ready: isReady(pod, ips),
    enrollment: enrollment(pod, ns, ips),
    ...(pod.spec.hostNetwork ? { hostNetwork: true } : {}),
    namedPorts: namedPorts(pod),
    ...(pod.spec.containers[0]?.readinessProbe ? { readinessProbe: pod.spec.containers[0].readinessProbe } : {}),
    annotations: pod.metadata.annotations,
    source: pod.source,
  };
}

export function podIps(pod: PodObject): string[] {
  const ips = [...pod.status.podIPs];
  if (pod.status.podIP && !ips.includes(pod.status.podIP)) ips.unshift(pod.status.podIP);
  return ips;
}

/**
 * The ready workloads `svc` selects among `byLabel`, each with the Service's ports resolved to its own
 * container ports. `warnUnmatched`: say so when the selector matches no pod (not for a remote cluster,
 * where a global Service without pods of its own is the usual case).
 */
export function selectEndpoints(
  svc: ServiceObject,
  ports: readonly MeshServicePort[],
  byLabel: WorkloadLabelIndex,
  allowUnready: boolean,
  warn: Warn,
  warnUnmatched: boolean,
): ServiceEndpoint[] {
  const { name, namespace } = svc.metadata;
  const selector = svc.spec.selector;
  if (!selector) return [];
  const endpoints: ServiceEndpoint[] = [];
  let matched = 0;
  for (const workload of byLabel.select(namespace, selector)) {
    matched++;
    const ip = workload.ips[0];
    if ((!workload.ready && !allowUnready) || ip === undefined) continue;
    const resolved = new Map<number, number>();
    for (const p of ports) {
      const target = typeof p.targetPort === 'number' ? p.targetPort : workload.namedPorts.get(p.targetPort);
      if (target === undefined) {
        const message = `Pod ${workload.key} has no container port named "${p.targetPort}"; it serves no traffic on port ${p.port}`;
        warn(svc.source, 'Service', namespace, name, `spec.ports[${ports.indexOf(p)}].targetPort`, message);
        continue;
      }
      resolved.set(p.port, target);
    }
    endpoints.push({ workload: workload.key, ip, ports: resolved });
  }
  if (matched === 0 && warnUnmatched) {
    const pairs = Object.entries(selector).map(([k, v]) => `${k}=${v}`);
    const text = pairs.length > 0 ? pairs.join(',') : '{}';
    warn(svc.source, 'Service', namespace, name, 'spec.selector', `selector ${text} matches no pod in namespace ${namespace}; the service has no endpoints`);
  }
  return endpoints;
}

/** Ready unless the pod says otherwise: a lab or local file usually omits status.phase and conditions. */
function isReady(pod: PodObject, ips: readonly string[]): boolean {
  if (ips.length === 0) return false;
  if (pod.status.phase !== undefined && pod.status.phase !== 'Running') return false;
  const ready = pod.status.conditions.find((c) => c.type === 'Ready');
  return ready === undefined || ready.status === 'True';
}

/**
 * Istio's ambient enrollment rules: a namespace labeled `ambient` enrolls its pods, a pod labeled
 * `ambient` enrolls itself, and a pod labeled `none` stays out whatever its namespace says. Never a pod
 * on the host's network (Istio's CNI skips those: capturing one would capture its node) nor one with a
 * sidecar (the sidecar wins, as in Istio).
 */
function enrollment(pod: PodObject, ns: MeshNamespace, ips: readonly string[]): Enrollment {
  const podMode = pod.metadata.labels[DATAPLANE_MODE_LABEL];
  if (podMode === 'none') return { enrolled: false, reason: 'pod-opt-out' };
  if (pod.spec.hostNetwork) return { enrolled: false, reason: 'host-network' };
  if (pod.metadata.annotations[SIDECAR_STATUS_ANNOTATION] !== undefined) return { enrolled: false, reason: 'sidecar' };
  if (ips.length === 0) return { enrolled: false, reason: 'no-pod-ip' };
  if (podMode === 'ambient') return { enrolled: true, reason: 'pod-label' };
  if (ns.labels[DATAPLANE_MODE_LABEL] === 'ambient') return { enrolled: true, reason: 'namespace-label' };
  return { enrolled: false, reason: 'namespace-not-ambient' };
}

function namedPorts(pod: PodObject): Map<string, number> {
  const ports = new Map<string, number>();
  for (const container of pod.spec.containers) {
    for (const port of container.ports) if (port.name) ports.set(port.name, port.containerPort);
  }
  return ports;
}

// The accepted xDS resources (translate-address.ts, translate-authorization.ts) turned into the same
// configuration objects local YAML produces, so that buildSnapshot gives the store exactly what it
// would give for the equivalent files.
//
// Two things istiod has already resolved and YAML leaves to the agent are carried through labels that
// only this translation writes: which Service a workload backs (istiod sends the membership, not the
// selector), and which selector-scoped Authorization applies to it (istiod lists them on the workload).
// What istiod names itself (workload uids, service hostnames, health policy) reaches buildSnapshot as
// StatedFacts.

import type { NodeObject, PodObject, ServiceObject } from '../../config/kubernetes.js';
import type { MeshObject } from '../../config/objects.js';
import type { ConfigDiagnostic } from '../../config/diagnostics.js';
import { type StatedFacts, buildSnapshot } from '../../state/build.js';
import { DATAPLANE_MODE_LABEL } from '../../state/pod-workloads.js';
import { type HostnameEndpoint, type MeshService, type MeshSnapshot, type ObjectKey, type Workload, kubernetesServiceHostname, objectKey, serviceKey, spiffeId } from '../../state/model.js';
import { POLICY_SELECTED_LABEL_PREFIX, SERVICE_MEMBER_LABEL_PREFIX, xdsLocation } from './translated.js';
import type { XdsAddress, XdsService, XdsWorkload } from './translate-address.js';
import type { XdsAuthorization } from './translate-authorization.js';

export interface XdsSnapshotOptions {
  readonly version: number;
  readonly trustDomain: string;
  readonly clusterDomain: string;
  /** This agent's node and its address: istiod sends no Node objects, and capture needs the address. */
  readonly node?: { readonly name: string; readonly ip?: string };
}

/**
 * The accepted resources as one MeshSnapshot, built by the same code as local YAML. Dry-run policies
 * are left out (they are never enforced) and counted in `dryRun`.
 */
export function buildXdsSnapshot(
  addresses: ReadonlyMap<string, XdsAddress>,
  authorizations: ReadonlyMap<string, XdsAuthorization>,
  options: XdsSnapshotOptions,
): { snapshot: MeshSnapshot; dryRun: number } {
  const diagnostics: ConfigDiagnostic[] = [];
  const workloads = [...addresses.entries()].filter((e): e is [string, XdsWorkload] => e[1].kind === 'workload').sort(([a], [b]) => a.localeCompare(b));
  const services = [...addresses.entries()].filter((e): e is [string, XdsService] => e[1].kind === 'service').sort(([a], [b]) => a.localeCompare(b));

  for (const [name, entry] of [...workloads, ...services]) {
    for (const why of entry.unsupported) {
      diagnostics.push({
        severity: 'warning',
        location: xdsLocation('Address', name),
        object: { kind: entry.kind === 'workload' ? 'Pod' : 'Service', namespace: entry.namespace, name: entry.name },
        message: why,
      });
    }
  }

  // Each service's target port per workload, so that differing ones can be given as named ports.
  const servicesByKey = new Map(services.map(([, s]) => [`${s.namespace}/${s.hostname}`, s]));
  const targetsOf = (w: XdsWorkload, s: XdsService): Map<number, number> => {
    const own = w.services.get(`${s.namespace}/${s.hostname}`);
    return new Map(s.ports.map((p) => [p.servicePort, own?.get(p.servicePort) || p.targetPort || p.servicePort]));
  };
  const namedTargetPorts = new Set<string>();
  for (const [, w] of workloads) {
    for (const key of w.services.keys()) {
      const s = servicesByKey.get(key);
      if (!s) continue;
      for (const [servicePort, target] of targetsOf(w, s)) {
        const declared = s.ports.find((p) => p.servicePort === servicePort)?.targetPort ?? 0;
        if (declared === 0 || declared !== target) namedTargetPorts.add(targetPortName(s, servicePort));
      }
    }
  }

  const objects: MeshObject[] = [];
  // The workload API sends no nodes: this agent's own, and each workload's node with the locality
  // istiod gives its workloads (as topology labels, where locality-aware balancing reads them).
  const nodeLabels = new Map<string, Record<string, string>>();
  if (options.node) nodeLabels.set(options.node.name, {});
  for (const [, w] of workloads) if (w.node && (w.locality || !nodeLabels.has(w.node))) nodeLabels.set(w.node, { ...nodeLabels.get(w.node), ...w.locality });
  for (const [name, labels] of nodeLabels) {
    const own = name === options.node?.name;
    const node: NodeObject = {
      kind: 'Node',
      apiVersion: 'v1',
      metadata: { name, namespace: '', labels, annotations: {} },
      spec: { podCIDRs: [] },
      status: { addresses: own && options.node?.ip ? [{ type: 'InternalIP', address: options.node.ip }] : [] },
      source: own ? { file: 'agent options', line: 0 } : xdsLocation('Address', `node ${name}`),
    };
    objects.push(node);
  }

  // Workloads are keyed by uid and services by namespace/hostname, as ztunnel keys them: one ServiceEntry
  // (each inline endpoint, each host) or one selector-less Service gives several with one namespace/name.
  const workloadOf = new Map<PodObject, XdsWorkload>();
  for (const [name, w] of workloads) {
    const labels: Record<string, string> = {};
    if (w.hbone) labels[DATAPLANE_MODE_LABEL] = 'ambient';
    if (w.canonicalName) labels['service.istio.io/canonical-name'] = w.canonicalName;
    if (w.canonicalRevision) labels['service.istio.io/canonical-revision'] = w.canonicalRevision;
    for (const policy of w.authorizationPolicies) labels[`${POLICY_SELECTED_LABEL_PREFIX}${policy}`] = 'true';
    const containerPorts: { name: string; containerPort: number; protocol: 'TCP' }[] = [];
    for (const serviceKey of w.services.keys()) {
      labels[`${SERVICE_MEMBER_LABEL_PREFIX}${serviceKey}`] = 'true';
      const s = servicesByKey.get(serviceKey);
      if (!s) continue;
      for (const [servicePort, target] of targetsOf(w, s)) {
        const portName = targetPortName(s, servicePort);
        if (namedTargetPorts.has(portName)) containerPorts.push({ name: portName, containerPort: target, protocol: 'TCP' });
      }
    }
    const pod: PodObject = {
      kind: 'Pod',
      apiVersion: 'v1',
      metadata: { name: w.name, namespace: w.namespace, uid: w.uid, labels, annotations: {} },
      spec: {
        ...(w.node ? { nodeName: w.node } : {}),
        serviceAccountName: w.serviceAccount,
        ...(w.hostNetwork ? { hostNetwork: true } : {}),
        containers: [{ name: 'workload', command: [], args: [], env: [], ports: containerPorts }],
      },
      status: {
        phase: 'Running',
        ...(w.ips[0] ? { podIP: w.ips[0] } : {}),
        podIPs: [...w.ips],
        conditions: [{ type: 'Ready', status: w.healthy ? 'True' : 'False' }],
      },
      source: xdsLocation('Address', name),
    };
    workloadOf.set(pod, w);
    objects.push(pod);
  }

  const serviceOf = new Map<ServiceObject, XdsService>();
  const taken = new Map<ObjectKey, string>();
  for (const [name, s] of services) {
    const key = serviceKey(s.namespace, s.hostname);
    const first = taken.get(key);
    if (first !== undefined) {
      diagnostics.push({
        severity: 'error',
        location: xdsLocation('Address', name),
        object: { kind: 'Service', namespace: s.namespace, name: s.name },
        message: `service ${key} was already sent as resource ${first}; this one is ignored`,
      });
      continue;
    }
    taken.set(key, name);
    const service: ServiceObject = {
      kind: 'Service',
      apiVersion: 'v1',
      metadata: { name: s.name, namespace: s.namespace, labels: {}, annotations: {} },
      spec: {
        type: 'ClusterIP',
        selector: { [`${SERVICE_MEMBER_LABEL_PREFIX}${key}`]: 'true' },
        ...(s.vips[0] ? { clusterIP: s.vips[0] } : { clusterIP: 'None' }),
        clusterIPs: [...s.vips],
        ports: s.ports.map((p) => {
          const named = targetPortName(s, p.servicePort);
          return {
            port: p.servicePort,
            targetPort: namedTargetPorts.has(named) ? named : p.targetPort || p.servicePort,
            protocol: 'TCP' as const,
            ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}),
          };
        }),
      },
      source: xdsLocation('Address', name),
    };
    serviceOf.set(service, s);
    objects.push(service);
  }

  let dryRun = 0;
  for (const [name, a] of [...authorizations.entries()].sort(([x], [y]) => x.localeCompare(y))) {
    for (const why of a.dropped) {
      const [namespace = '', policyName = ''] = a.key.split('/');
      diagnostics.push({ severity: 'warning', location: xdsLocation('Authorization', name), object: { kind: 'AuthorizationPolicy', namespace, name: policyName }, message: `authorization ${a.key}: ${why}` });
    }
    if (a.dryRun) dryRun++;
    else objects.push(a.policy);
  }

  const stated: StatedFacts = {
    workloadKey: (pod) => workloadOf.get(pod)?.uid ?? objectKey(pod.metadata.namespace, pod.metadata.name),
    hostname: (svc) => serviceOf.get(svc)?.hostname ?? kubernetesServiceHostname(svc.metadata.name, svc.metadata.namespace, options.clusterDomain),
    allowsUnready: (svc) => serviceOf.get(svc)?.allowUnhealthy ?? false,
  };
  const built = buildSnapshot(objects, { version: options.version, trustDomain: options.trustDomain, clusterDomain: options.clusterDomain, stated });
  const byUid = new Map([...workloadOf.values()].map((w) => [w.uid, w]));
  const byServiceKey = new Map([...serviceOf.values()].map((s) => [serviceKey(s.namespace, s.hostname), s]));
  return { snapshot: withXdsIdentities(built, byUid, byServiceKey, diagnostics), dryRun };
}

/** A service's named target port, for workloads whose target port differs from the service's. */
function targetPortName(s: XdsService, servicePort: number): string {
  return `xds:${s.namespace}/${s.hostname}:${servicePort}`;
}

/**
 * What istiod states and YAML derives, laid over the built snapshot: each workload's uid, trust domain,
 * capacity and hostname, each service's subject_alt_names, locality preferences and visibility.
 */
function withXdsIdentities(
  snapshot: MeshSnapshot,
  workloads: ReadonlyMap<ObjectKey, XdsWorkload>,
  services: ReadonlyMap<ObjectKey, XdsService>,
  diagnostics: readonly ConfigDiagnostic[],
): MeshSnapshot {
  const fixedWorkloads = new Map<ObjectKey, Workload>();
  const workloadsByIp = new Map<string, Workload>();
  for (const [key, w] of snapshot.workloads) {
    const x = workloads.get(key);
    const fixed: Workload = x
      ? {
          ...w,
          uid: x.uid,
          istioUid: x.uid,
          identity: spiffeId(x.trustDomain, w.namespace, w.serviceAccount),
          ...(x.capacity !== 1 ? { capacity: x.capacity } : {}),
          ...(x.hostname !== undefined ? { hostname: x.hostname } : {}),
        }
      : w;
    fixedWorkloads.set(key, fixed);
  }
  for (const [ip, w] of snapshot.workloadsByIp) workloadsByIp.set(ip, fixedWorkloads.get(w.key) ?? w);

  // A workload known by name only is an endpoint resolved when a connection picks it (ztunnel's on-demand DNS).
  const byName = new Map<ObjectKey, HostnameEndpoint[]>();
  for (const [key, w] of workloads) {
    if (w.hostname === undefined || !w.healthy) continue;
    for (const [serviceKeyOf, targets] of w.services) {
      const s = services.get(serviceKeyOf);
      if (!s) continue;
      const ports = new Map(s.ports.map((p) => [p.servicePort, targets.get(p.servicePort) || p.targetPort || p.servicePort]));
      byName.set(serviceKeyOf, [...(byName.get(serviceKeyOf) ?? []), { workload: key, hostname: w.hostname, ports }]);
    }
  }

  const fixedServices = new Map<ObjectKey, MeshService>();
  const servicesByVip = new Map<string, MeshService>();
  const servicesByHostname = new Map<string, MeshService>();
  for (const [key, s] of snapshot.services) {
    const x = services.get(key);
    const fixed: MeshService = x
      ? {
          ...s,
          ...(x.subjectAltNames.length > 0 ? { subjectAltNames: x.subjectAltNames } : {}),
          ...(x.loadBalancing ? { loadBalancing: x.loadBalancing } : {}),
          ...(x.visibility !== 'public' ? { visibility: x.visibility } : {}),
          ...(byName.has(key) ? { hostnameEndpoints: byName.get(key)! } : {}),
        }
      : s;
    fixedServices.set(key, fixed);
    servicesByHostname.set(fixed.hostname, fixed);
    for (const vip of fixed.vips) servicesByVip.set(vip, fixed);
  }
  return {
    ...snapshot,
    workloads: fixedWorkloads,
    workloadsByIp,
    services: fixedServices,
    servicesByVip,
    servicesByHostname,
    diagnostics: [...diagnostics, ...snapshot.diagnostics.filter((d) => !isSyntheticNoise(d))],
  };
}

/**
 * buildSnapshot's warnings that do not apply to istiod's state: selectors over the labels this
 * translation invented (a service with no endpoints is normal here), and ServiceAccount and Node
 * objects, which the workload API never sends.
 */
function isSyntheticNoise(d: ConfigDiagnostic): boolean {
  if (d.severity !== 'warning') return false;
  if (d.field === 'spec.serviceAccountName' || d.field === 'spec.nodeName') return true;
  return d.message.includes(SERVICE_MEMBER_LABEL_PREFIX) || d.message.includes(POLICY_SELECTED_LABEL_PREFIX);
}

/** Labels a workload carries only because of this translation; hidden where operators read labels. */
export function isXdsLabel(key: string): boolean {
  return key.startsWith(SERVICE_MEMBER_LABEL_PREFIX) || key.startsWith(POLICY_SELECTED_LABEL_PREFIX);
}

// ServiceEntries and WorkloadEntries in the snapshot, as istiod hands them to ztunnel: each WorkloadEntry
// and each inline endpoint is a workload (reached over HBONE when it carries a serviceAccount), each host
// of a ServiceEntry is a service keyed namespace/hostname, with its addresses or an address Istio's
// automatic allocation gives it (so that the DNS proxy can answer for it and the data path can resolve it).

import type { ConfigDiagnostic } from '../config/diagnostics.js';
import type { ServiceEntryObject, WorkloadEntryObject, EntryEndpoint, ServiceEntryPort } from '../config/parse-service-entry.js';
import { AUTOALLOCATE_LABEL } from '../config/parse-service-entry.js';
import type { SourceLocation } from '../config/kubernetes.js';
import type { WorkloadLabelIndex } from './label-index.js';
import { type HostnameEndpoint, type MeshService, type MeshServicePort, type ObjectKey, type ServiceEndpoint, type SpiffeId, type Workload, serviceKey, spiffeId } from './model.js';
import type { AppProtocol } from './protocol.js';

type Warn = (source: SourceLocation, kind: string, namespace: string, name: string, field: string | undefined, message: string) => void;

/** Istio's ranges for automatically allocated ServiceEntry addresses (Class E, and a documentation-reserved v6 /48). */
export const AUTO_VIP_V4_PREFIX = '240.240.';
export const AUTO_VIP_V6_PREFIX = '2001:2::';

/** The workloads of WorkloadEntries and inline endpoints, with the ports each serves by port name. */
export interface EntryWorkloads {
  readonly workloads: readonly Workload[];
  /** Workload key → its `ports` (port name → number), which override a ServiceEntry's target ports. */
  readonly portsByName: ReadonlyMap<ObjectKey, Readonly<Record<string, number>>>;
}

/** The key of a WorkloadEntry's workload; apart from pods', whose keys are namespace/name. */
export function workloadEntryKey(namespace: string, name: string): ObjectKey {
  return `WorkloadEntry/${namespace}/${name}`;
}

/** The key of a ServiceEntry's inline endpoint (istiod gives each its own uid too). */
export function inlineEndpointKey(namespace: string, name: string, index: number): ObjectKey {
  return `ServiceEntry/${namespace}/${name}/${index}`;
}

/** Workloads for every WorkloadEntry and every inline ServiceEntry endpoint. */
export function entryWorkloads(objects: readonly (ServiceEntryObject | WorkloadEntryObject)[], trustDomain: string): EntryWorkloads {
  const workloads: Workload[] = [];
  const portsByName = new Map<ObjectKey, Readonly<Record<string, number>>>();
  for (const object of objects) {
    const { namespace, name } = object.metadata;
    if (object.kind === 'WorkloadEntry') {
      const w = endpointWorkload(workloadEntryKey(namespace, name), name, namespace, object.spec, object.spec.serviceAccount !== undefined, object.source, object.metadata.annotations, 'WorkloadEntry');
      workloads.push(w);
      portsByName.set(w.key, object.spec.ports);
      continue;
    }
    object.spec.endpoints.forEach((endpoint, i) => {
      // A MESH_EXTERNAL endpoint is outside the mesh whatever it claims: it speaks plain TCP.
      const hbone = object.spec.location === 'MESH_INTERNAL' && endpoint.serviceAccount !== undefined;
      const w = endpointWorkload(inlineEndpointKey(namespace, name, i), name, namespace, endpoint, hbone, object.source, {}, 'ServiceEntry');
      workloads.push(w);
      portsByName.set(w.key, endpoint.ports);
    });
  }
  return { workloads, portsByName };

  function endpointWorkload(key: ObjectKey, name: string, namespace: string, e: EntryEndpoint, hbone: boolean, source: SourceLocation, annotations: Workload['annotations'], entry: 'WorkloadEntry' | 'ServiceEntry'): Workload {
    const isIp = /^[0-9.]+$|:/.test(e.address);
    const serviceAccount = e.serviceAccount ?? 'default';
    return {
      key,
      name,
      namespace,
      uid: key,
      workloadName: name,
      ips: isIp ? [e.address] : [],
      ...(isIp ? {} : { hostname: e.address }),
      ...(e.weight !== undefined && e.weight > 0 ? { capacity: e.weight } : {}),
      labels: e.labels,
      serviceAccount,
      identity: spiffeId(trustDomain, namespace, serviceAccount),
      ready: isIp,
      enrollment: hbone ? { enrolled: true, reason: 'workload-entry' } : { enrolled: false, reason: 'no-identity' },
      namedPorts: new Map(Object.entries(e.ports)),
      annotations,
      entry,
      source,
    };
  }
}

/**
 * A service per host of each ServiceEntry. Endpoints are its inline endpoints, or the pods and
 * WorkloadEntries its workloadSelector picks in its namespace; ServiceEntries are taken in namespace/name
 * order so that every agent allocates the same automatic addresses.
 */
export function serviceEntryServices(
  entries: readonly ServiceEntryObject[],
  entryPorts: EntryWorkloads['portsByName'],
  workloads: ReadonlyMap<ObjectKey, Workload>,
  byLabel: WorkloadLabelIndex,
  taken: { readonly vips: ReadonlyMap<string, MeshService>; readonly keys: ReadonlyMap<ObjectKey, MeshService> },
  diagnostics: ConfigDiagnostic[],
  warn: Warn,
): MeshService[] {
  const out: MeshService[] = [];
  const usedVips = new Set<string>(taken.vips.keys());
  const usedKeys = new Set<ObjectKey>(taken.keys.keys());
  const sorted = [...entries].sort((a, b) => objectOrder(a).localeCompare(objectOrder(b)));
  for (const se of sorted) {
    const { namespace, name } = se.metadata;
    const spec = se.spec;
    const error = (field: string, message: string): void => {
      diagnostics.push({ severity: 'error', location: se.source, object: { kind: 'ServiceEntry', namespace, name }, field, message });
    };
    const ports = spec.ports.map((p) => servicePort(p, spec.resolution));
    if (spec.resolution === 'NONE' && spec.ports.some((p) => isHttpProtocol(p.protocol))) {
      warn(se.source, 'ServiceEntry', namespace, name, 'spec.ports', 'resolution NONE has no endpoints to route requests to: its HTTP ports are carried as TCP to the address dialled');
    }
    const members = spec.endpoints.length > 0
      ? spec.endpoints.map((_, i) => workloads.get(inlineEndpointKey(namespace, name, i))).filter((w): w is Workload => w !== undefined)
      : spec.workloadSelector ? byLabel.select(namespace, spec.workloadSelector.matchLabels) : [];
    if (spec.workloadSelector && members.length === 0) {
      warn(se.source, 'ServiceEntry', namespace, name, 'spec.workloadSelector', `workloadSelector matches no pod or WorkloadEntry in namespace ${namespace}; the service has no endpoints`);
    }
    const endpoints: ServiceEndpoint[] = [];
    const hostnameEndpoints: HostnameEndpoint[] = [];
    const dns = spec.resolution === 'DNS' || spec.resolution === 'DNS_ROUND_ROBIN';
    for (const w of members) {
      const overrides = entryPorts.get(w.key) ?? {};
      const targets = new Map(spec.ports.map((p) => [p.number, overrides[p.name] ?? p.targetPort ?? p.number]));
      const ip = w.ips[0];
      // An endpoint written as a name is resolved when a connection picks it, as ztunnel resolves hostname workloads.
      if (dns && ip === undefined && w.hostname !== undefined) hostnameEndpoints.push({ workload: w.key, hostname: w.hostname, ports: targets });
      if (!w.ready || ip === undefined) continue;
      endpoints.push({ workload: w.key, ip, ports: targets });
    }
    const subjectAltNames = spec.subjectAltNames.filter((s) => s.startsWith('spiffe://')) as SpiffeId[];
    const exportedHere = spec.exportTo.length === 1 && spec.exportTo[0] === '.';
    if (spec.exportTo.length > 0 && !exportedHere && !spec.exportTo.includes('*')) {
      warn(se.source, 'ServiceEntry', namespace, name, 'spec.exportTo', `exportTo ${spec.exportTo.join(', ')} is applied as "*" (every namespace): Ambit limits visibility only to "."`);
    }
    for (const host of spec.hosts) {
      const key = serviceKey(namespace, host);
      if (usedKeys.has(key)) {
        error('spec.hosts', `host ${host} is already a service of namespace ${namespace} (${taken.keys.get(key)?.source.file ?? 'another ServiceEntry'}); this host is ignored`);
        continue;
      }
      const vips: string[] = [];
      for (const vip of spec.addresses.length > 0 ? spec.addresses : autoVips(se, host, usedVips)) {
        if (usedVips.has(vip) && spec.addresses.length > 0) {
          error('spec.addresses', `address ${vip} is already used by another service; host ${host} is not reached through it`);
          continue;
        }
        usedVips.add(vip);
        vips.push(vip);
      }
      usedKeys.add(key);
      // resolution DNS without endpoints: the host itself is looked up (Envoy's STRICT_DNS cluster of the host).
      const resolved = dns && spec.endpoints.length === 0 && !spec.workloadSelector && !host.startsWith('*')
        ? [{ hostname: host, ports: new Map(spec.ports.map((p) => [p.number, p.targetPort ?? p.number])) }]
        : hostnameEndpoints;
      out.push({
        key,
        name,
        namespace,
        hostname: host,
        vips,
        ports,
        endpoints,
        ...(resolved.length > 0 ? { hostnameEndpoints: resolved } : {}),
        ...(subjectAltNames.length > 0 ? { subjectAltNames } : {}),
        ...(exportedHere ? { visibility: 'namespace' as const } : {}),
        entry: { resolution: spec.resolution === 'DNS_ROUND_ROBIN' ? 'DNS' : spec.resolution, location: spec.location },
        labels: se.metadata.labels,
        source: se.source,
      });
    }
  }
  return out;
}

function objectOrder(se: ServiceEntryObject): string {
  return `${se.metadata.namespace}/${se.metadata.name}`;
}

function servicePort(p: ServiceEntryPort, resolution: ServiceEntryObject['spec']['resolution']): MeshServicePort {
  return { name: p.name, port: p.number, targetPort: p.targetPort ?? p.number, protocol: resolution === 'NONE' ? 'TCP' : appProtocolOf(p) };
}

function isHttpProtocol(protocol: ServiceEntryPort['protocol']): boolean {
  return protocol === 'HTTP' || protocol === 'HTTP2' || protocol === 'GRPC' || protocol === 'GRPC-WEB';
}

function appProtocolOf(p: ServiceEntryPort): AppProtocol {
  switch (p.protocol) {
    case 'GRPC-WEB':
      return 'GRPC-Web';
    case 'MONGO':
      return 'Mongo';
    case 'MYSQL':
      return 'MySQL';
    case 'REDIS':
      return 'Redis';
    case undefined:
      return 'TCP';
    default:
      return p.protocol;
  }
}

/**
 * Istio's automatic allocation (ip-autoallocate): a host that is no wildcard, of a ServiceEntry with no
 * addresses and a resolution other than NONE, gets one IPv4 address of 240.240.0.0/16 and one IPv6 of
 * 2001:2::/48, unless the ServiceEntry is labelled networking.istio.io/enable-autoallocate-ip=false.
 * istiod writes its choice into status; without istiod every agent must choose alike, so the address is a
 * hash of namespace/name/host, moved to the next free one on a collision (entries are taken in order).
 */
export function autoVips(se: ServiceEntryObject, host: string, used: ReadonlySet<string>): string[] {
  if (se.spec.resolution === 'NONE' || host.startsWith('*') || se.metadata.labels[AUTOALLOCATE_LABEL]?.toLowerCase() === 'false') return [];
  let index = fnv1a(`${se.metadata.namespace}/${se.metadata.name}/${host}`) % 0xfffe;
  for (let tries = 0; tries < 0xfffe; tries++, index = (index + 1) % 0xfffe) {
    const n = index + 1; // never .0.0, never .255.255
    const v4 = `${AUTO_VIP_V4_PREFIX}${n >> 8}.${n & 0xff}`;
    if (!used.has(v4)) return [v4, `${AUTO_VIP_V6_PREFIX}${n.toString(16)}`];
  }
  return [];
}

function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return hash;
}

// The agent's state as `/config_dump` shows it, in the JSON shape `istioctl ztunnel-config` reads
// (camelCase, ztunnel's field names), so that Istio's own tooling can inspect an Ambit node.

import { X509Certificate } from 'node:crypto';
import type { CertificateStatus } from '../identity/certificate-manager.js';
import { matchesLabels } from '../state/build.js';
import { canonicalName, canonicalRevision } from '../state/canonical.js';
import type { MeshService, MeshSnapshot, Workload } from '../state/model.js';
import { DEFAULT_CLUSTER_ID } from '../telemetry/connections.js';
import { HBONE_PORT } from '../tunnel/h2/settings.js';
import type { LiveConnection } from '../tunnel/live-connections.js';

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

/** One certificate as ztunnel dumps it (src/admin.rs CertDump). */
export interface CertDump {
  /** The PEM text, base64-encoded (as ztunnel: the PEM's own line breaks would not survive JSON tooling). */
  readonly pem: string;
  /** Decimal, as ztunnel; istioctl prints it in hex. */
  readonly serialNumber: string;
  /** RFC 3339, whole seconds, UTC. */
  readonly validFrom: string;
  readonly expirationTime: string;
}

/** One identity's certificates (ztunnel's CertsDump): the leaf and intermediates, and the roots apart. */
export interface CertsDump {
  readonly identity: string;
  /** `Initializing`, `Available` or `Unavailable: <why>`. */
  readonly state: string;
  readonly certChain: readonly CertDump[];
  readonly rootCerts: readonly CertDump[];
}

/** One relayed connection in ztunnel's connection-manager shape, plus what Ambit also knows. */
export interface ConnectionDump {
  readonly src: string;
  /** Outbound: where the pod connected; inbound: the Service the peer asked for, when known. */
  readonly originalDst: string | null;
  /** Where bytes go: an HBONE peer's `<pod IP>:15008` outbound, the pod's own address inbound. */
  readonly actualDst: string;
  readonly protocol: 'HBONE' | 'TCP';
  readonly transport: LiveConnection['transport'];
  readonly srcIdentity?: string;
  readonly dstIdentity?: string;
  readonly startedAt: string;
}

/** A workload this agent proxies for, keyed by uid in `workloadState` (ztunnel's in-pod admin handler). */
export interface WorkloadStateDump {
  readonly state: 'Up';
  readonly connections: { readonly inbound: readonly ConnectionDump[]; readonly outbound: readonly ConnectionDump[] };
  readonly info: { readonly name: string; readonly namespace: string; readonly trustDomain: string; readonly serviceAccount: string };
}

export interface ConfigDump {
  readonly version: number;
  readonly workloads: readonly WorkloadDump[];
  readonly services: readonly ServiceDump[];
  readonly policies: readonly PolicyDump[];
  readonly certificates: readonly CertsDump[];
  readonly workloadState: Readonly<Record<string, WorkloadStateDump>>;
  readonly config: { readonly node: string; readonly trustDomain: string; readonly clusterDomain: string };
}

/** What the data path knows that the snapshot does not; absent when nothing is captured (--capture none). */
export interface RuntimeState {
  readonly certificates?: readonly CertificateStatus[];
  readonly connections?: readonly LiveConnection[];
}

const CLUSTER_ID = DEFAULT_CLUSTER_ID;
const ROOT_NAMESPACE = 'istio-system';

/** Istio's uid for a pod: cluster, group, kind, namespace and name. */
export function workloadUid(w: Workload): string {
  return `${CLUSTER_ID}//Pod/${w.namespace}/${w.name}`;
}

export function buildConfigDump(snapshot: MeshSnapshot, node: string, runtime: RuntimeState = {}): ConfigDump {
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
    certificates: certificatesDump(runtime.certificates ?? []),
    workloadState: workloadStateDump(snapshot, node, runtime.connections ?? []),
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
    subjectAltNames: [...(s.subjectAltNames ?? [])],
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

/** As ztunnel's dump_certs: sorted by identity; chains only for Available certificates. */
export function certificatesDump(statuses: readonly CertificateStatus[]): CertsDump[] {
  return [...statuses]
    .sort((a, b) => (a.identity < b.identity ? -1 : a.identity > b.identity ? 1 : 0))
    .map((s): CertsDump => {
      const c = s.certificate;
      if (s.state !== 'Available' || !c) {
        return { identity: s.identity, state: s.state === 'Unavailable' ? `Unavailable: ${s.error ?? 'unknown error'}` : s.state, certChain: [], rootCerts: [] };
      }
      return { identity: s.identity, state: 'Available', certChain: [c.leafPem, ...c.intermediatesPem].map(certDump), rootCerts: c.rootsPem.map(certDump) };
    });
}

function certDump(pem: string): CertDump {
  const cert = new X509Certificate(pem);
  return {
    pem: Buffer.from(pem).toString('base64'),
    serialNumber: BigInt(`0x${cert.serialNumber}`).toString(10),
    validFrom: rfc3339Seconds(new Date(cert.validFrom)),
    expirationTime: rfc3339Seconds(new Date(cert.validTo)),
  };
}

function rfc3339Seconds(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}

/**
 * Every enrolled workload on this node, with the connections relayed for it: outbound ones under the
 * source pod, inbound ones under the destination pod. A connection whose pod has left the snapshot
 * (still draining) is listed under its address, so nothing open is hidden.
 */
function workloadStateDump(snapshot: MeshSnapshot, node: string, connections: readonly LiveConnection[]): Record<string, WorkloadStateDump> {
  const state: Record<string, { state: 'Up'; connections: { inbound: ConnectionDump[]; outbound: ConnectionDump[] }; info: WorkloadStateDump['info'] }> = {};
  const entryFor = (w: Workload | undefined, addr: string) => {
    const key = w ? workloadUid(w) : `unknown/${hostOf(addr)}`;
    state[key] ??= {
      state: 'Up',
      connections: { inbound: [], outbound: [] },
      info: w
        ? { name: w.name, namespace: w.namespace, trustDomain: snapshot.trustDomain, serviceAccount: w.serviceAccount }
        : { name: hostOf(addr), namespace: '', trustDomain: '', serviceAccount: '' },
    };
    return state[key]!;
  };
  for (const w of snapshot.workloads.values()) if (w.node === node && w.enrollment.enrolled) entryFor(w, w.ips[0] ?? '');
  for (const c of connections) {
    const local = c.direction === 'outbound' ? c.src : c.dst;
    const entry = entryFor(snapshot.workloadsByIp.get(hostOf(local)), local);
    const protocol = c.transport === 'hbone' ? 'HBONE' : 'TCP';
    const common = {
      protocol,
      transport: c.transport,
      ...(c.srcIdentity !== undefined ? { srcIdentity: c.srcIdentity } : {}),
      ...(c.dstIdentity !== undefined ? { dstIdentity: c.dstIdentity } : {}),
      startedAt: c.startedAt.toISOString(),
    } as const;
    if (c.direction === 'outbound') {
      const originalDst = c.originalDst ?? c.dst;
      entry.connections.outbound.push({ src: c.src, originalDst, actualDst: protocol === 'HBONE' ? joinHostPort(hostOf(c.dst), HBONE_PORT) : c.dst, ...common });
    } else {
      entry.connections.inbound.push({ src: c.src, originalDst: null, actualDst: c.dst, ...common });
    }
  }
  return state;
}

/** The IP of `ip:port` or `[ipv6]:port`. */
function hostOf(addr: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(addr);
  if (bracketed) return bracketed[1]!;
  const colon = addr.lastIndexOf(':');
  return colon > 0 && addr.indexOf(':') === colon ? addr.slice(0, colon) : addr;
}

function joinHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

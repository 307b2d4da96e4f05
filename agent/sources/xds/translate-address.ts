// istiod's Address resources (a Workload or a Service) checked and converted into plain records on
// arrival; a resource that fails here is NACKed with the reason, and its last good version stays.

import { isIPv4 } from 'node:net';
import {
  type Address,
  type GatewayAddress,
  type LoadBalancing,
  LoadBalancing_HealthPolicy,
  LoadBalancing_Mode,
  LoadBalancing_Scope,
  type Service,
  type Workload as XdsWorkloadMessage,
  AppProtocol,
  NetworkMode,
  TunnelProtocol,
  Visibility,
  WorkloadStatus,
} from '../../proto/istio/workload/workload_pb.js';
import { parseSpiffeId } from '../../identity/spiffe.js';
import { type LocalityScope, REGION_LABEL, SUBZONE_LABEL, type ServiceLoadBalancing, ZONE_LABEL } from '../../state/locality.js';
import type { ServiceVisibility, SpiffeId } from '../../state/model.js';
import { type Translated, ok, reject, DEFAULT_TRUST_DOMAIN, DEFAULT_SERVICE_ACCOUNT } from './translated.js';

export interface XdsWorkload {
  readonly kind: 'workload';
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly ips: readonly string[];
  /** A workload known by name only (a ServiceEntry endpoint with DNS resolution); set only when it has no address. */
  readonly hostname?: string;
  /** Its share of its services' connections relative to their other endpoints (istiod's capacity; unset: 1). */
  readonly capacity: number;
  readonly trustDomain: string;
  readonly serviceAccount: string;
  readonly node?: string;
  /** Captured by a node agent (tunnel_protocol HBONE): in the mesh. */
  readonly hbone: boolean;
  /** network_mode HOST_NETWORK: its addresses are its node's, shared with other such pods. */
  readonly hostNetwork: boolean;
  /** Its node's region, zone and subzone, as Kubernetes' and Istio's topology labels (none set: absent). */
  readonly locality?: Readonly<Record<string, string>>;
  readonly healthy: boolean;
  readonly canonicalName?: string;
  readonly canonicalRevision?: string;
  /** `namespace/hostname` → service port → this workload's target port (0: the service's). */
  readonly services: ReadonlyMap<string, ReadonlyMap<number, number>>;
  /** `namespace/name` of the selector-scoped policies that select it. */
  readonly authorizationPolicies: readonly string[];
  /** What Ambit does not do yet, reported as warnings. */
  readonly unsupported: readonly string[];
}

export interface XdsServicePort {
  readonly servicePort: number;
  /** 0 when the service's target port is a name: each workload says its own. */
  readonly targetPort: number;
  readonly appProtocol?: string;
}

export interface XdsService {
  readonly kind: 'service';
  readonly name: string;
  readonly namespace: string;
  readonly hostname: string;
  readonly vips: readonly string[];
  readonly ports: readonly XdsServicePort[];
  /** What its servers may present besides their workloads' identities (a ServiceEntry's subjectAltNames). */
  readonly subjectAltNames: readonly SpiffeId[];
  /** Which endpoints clients prefer by locality (load_balancing STRICT or FAILOVER). */
  readonly loadBalancing?: ServiceLoadBalancing;
  /** load_balancing.health_policy ALLOW_ALL: unhealthy endpoints still get traffic. */
  readonly allowUnhealthy: boolean;
  /** Who may use it: everyone, or only clients in its own namespace. */
  readonly visibility: ServiceVisibility;
  readonly unsupported: readonly string[];
}

export type XdsAddress = XdsWorkload | XdsService;

/** Checks one `istio.workload.Address` and keeps what the agent uses. */
export function translateAddress(address: Address): Translated<XdsAddress> {
  switch (address.type.case) {
    case 'workload':
      return translateWorkload(address.type.value);
    case 'service':
      return translateService(address.type.value);
    default:
      return reject('the Address holds neither a workload nor a service');
  }
}

function translateWorkload(w: XdsWorkloadMessage): Translated<XdsWorkload> {
  if (w.uid === '') return reject('workload has no uid');
  if (w.name === '' || w.namespace === '') return reject(`workload ${w.uid} has no ${w.name === '' ? 'name' : 'namespace'}`);
  const ips: string[] = [];
  for (const [i, bytes] of w.addresses.entries()) {
    const ip = ipFromBytes(bytes);
    if (ip === undefined) return reject(`workload ${w.uid}: addresses[${i}] has ${bytes.length} bytes; an IPv4 address has 4 and an IPv6 address 16`);
    ips.push(ip);
  }
  if (!(w.tunnelProtocol in TunnelProtocol)) return reject(`workload ${w.uid}: unknown tunnel_protocol ${w.tunnelProtocol}`);
  if (!(w.status in WorkloadStatus)) return reject(`workload ${w.uid}: unknown status ${w.status}`);
  const services = new Map<string, Map<number, number>>();
  for (const [key, list] of Object.entries(w.services)) {
    if (!/^[^/]+\/[^/]+$/.test(key)) return reject(`workload ${w.uid}: services key ${JSON.stringify(key)} is not "<namespace>/<hostname>"`);
    const ports = new Map<number, number>();
    for (const port of list.ports) {
      const problem = portProblem(port.servicePort, false) ?? portProblem(port.targetPort, true);
      if (problem) return reject(`workload ${w.uid}: services[${key}]: ${problem}`);
      ports.set(port.servicePort, port.targetPort);
    }
    services.set(key, ports);
  }
  for (const key of w.authorizationPolicies) {
    if (!/^[^/]+\/[^/]+$/.test(key)) return reject(`workload ${w.uid}: authorization_policies entry ${JSON.stringify(key)} is not "<namespace>/<name>"`);
  }
  const locality = localityLabels(w);
  const unsupported: string[] = [];
  // As ztunnel: an address wins over a hostname; a hostname alone is looked up when the workload is picked.
  const hostname = ips.length === 0 && w.hostname !== '' ? w.hostname : undefined;
  if (w.waypoint) unsupported.push(`it uses waypoint ${gatewayName(w.waypoint)}, which Ambit does not route through yet; its traffic goes direct`);
  if (w.networkGateway) unsupported.push(`it is reached through network gateway ${gatewayName(w.networkGateway)}, which Ambit does not support yet`);
  if (w.applicationTunnel) unsupported.push('it asks for an application tunnel (PROXY protocol), which Ambit does not send yet');
  if (w.tunnelProtocol === TunnelProtocol.LEGACY_ISTIO_MTLS) unsupported.push('it is a sidecar workload (legacy Istio mTLS), which Ambit cannot reach with mTLS');
  return ok({
    kind: 'workload',
    uid: w.uid,
    name: w.name,
    namespace: w.namespace,
    ips,
    ...(hostname !== undefined ? { hostname } : {}),
    capacity: w.capacity ?? 1,
    trustDomain: w.trustDomain || DEFAULT_TRUST_DOMAIN,
    serviceAccount: w.serviceAccount || DEFAULT_SERVICE_ACCOUNT,
    ...(w.node ? { node: w.node } : {}),
    hbone: w.tunnelProtocol === TunnelProtocol.HBONE,
    hostNetwork: w.networkMode === NetworkMode.HOST_NETWORK,
    ...(locality ? { locality } : {}),
    healthy: w.status === WorkloadStatus.HEALTHY,
    ...(w.canonicalName ? { canonicalName: w.canonicalName } : {}),
    ...(w.canonicalRevision ? { canonicalRevision: w.canonicalRevision } : {}),
    services,
    authorizationPolicies: [...w.authorizationPolicies],
    unsupported,
  });
}

const APP_PROTOCOLS: ReadonlyMap<AppProtocol, string> = new Map([
  [AppProtocol.HTTP11, 'http'],
  [AppProtocol.HTTP2, 'http2'],
  [AppProtocol.GRPC, 'grpc'],
  [AppProtocol.TCP, 'tcp'],
  [AppProtocol.TLS, 'tls'],
]);

function translateService(s: Service): Translated<XdsService> {
  const id = `${s.namespace}/${s.hostname}`;
  if (s.name === '' || s.namespace === '' || s.hostname === '') return reject(`service ${id} lacks a name, namespace or hostname`);
  const vips: string[] = [];
  const unsupported: string[] = [];
  for (const [i, a] of s.addresses.entries()) {
    const ip = ipFromBytes(a.address);
    if (ip === undefined) return reject(`service ${id}: addresses[${i}] has ${a.address.length} bytes; an IPv4 address has 4 and an IPv6 address 16`);
    const full = isIPv4(ip) ? 32 : 128;
    if (a.length !== undefined && a.length !== full) {
      if (a.length > full) return reject(`service ${id}: addresses[${i}] has prefix length ${a.length}, longer than ${full}`);
      unsupported.push(`its address range ${ip}/${a.length} is not matched by Ambit yet`);
      continue;
    }
    vips.push(ip);
  }
  // Istio's Service proto has no protocol per port, so a Kubernetes Service with 53/UDP and 53/TCP
  // (kube-dns) lists port 53 twice. ztunnel keeps one mapping per service port, the last one listed.
  const byPort = new Map<number, XdsServicePort>();
  for (const [i, p] of s.ports.entries()) {
    const problem = portProblem(p.servicePort, false) ?? portProblem(p.targetPort, true);
    if (problem) return reject(`service ${id}: ports[${i}]: ${problem}`);
    if (!(p.appProtocol in AppProtocol)) return reject(`service ${id}: ports[${i}]: unknown app_protocol ${p.appProtocol}`);
    const appProtocol = APP_PROTOCOLS.get(p.appProtocol);
    const port: XdsServicePort = { servicePort: p.servicePort, targetPort: p.targetPort, ...(appProtocol ? { appProtocol } : {}) };
    const earlier = byPort.get(p.servicePort);
    if (earlier && (earlier.targetPort !== port.targetPort || earlier.appProtocol !== port.appProtocol)) {
      unsupported.push(`port ${p.servicePort} is listed more than once with different targets (${describePort(earlier)}, then ${describePort(port)}); the last one is used, as ztunnel does`);
    }
    byPort.set(p.servicePort, port);
  }
  const ports = [...byPort.values()];
  // As ztunnel: a name that is not a SPIFFE id can never match a peer's URI SAN, so it is dropped, and said.
  const subjectAltNames: SpiffeId[] = [];
  for (const [i, san] of s.subjectAltNames.entries()) {
    const parsed = parseSpiffeId(san);
    if (parsed.ok) subjectAltNames.push(parsed.value.id);
    else unsupported.push(`subject_alt_names[${i}] is ignored: ${parsed.error.message}`);
  }
  if (s.waypoint || s.weightedWaypoints.length > 0) {
    unsupported.push(`it uses waypoint ${s.waypoint ? gatewayName(s.waypoint) : 'weighted waypoints'}, which Ambit does not route through yet; its traffic goes direct`);
  }
  const loadBalancing = translateLoadBalancing(s.loadBalancing, unsupported);
  const healthPolicy = s.loadBalancing?.healthPolicy ?? LoadBalancing_HealthPolicy.ONLY_HEALTHY;
  if (!(healthPolicy in LoadBalancing_HealthPolicy)) return reject(`service ${id}: unknown load_balancing.health_policy ${healthPolicy}`);
  // As ztunnel: an unknown visibility falls back to PUBLIC rather than dropping the service.
  if (!(s.visibility in Visibility)) unsupported.push(`visibility ${s.visibility} is unknown; the service is visible to every namespace, as ztunnel treats it`);
  if (s.visibility === Visibility.NAMESPACE) {
    unsupported.push(
      `its visibility is NAMESPACE (only clients in ${s.namespace} may use it): kept and shown in /config_dump, ` +
        'but the outbound resolver does not consult it yet, so clients in other namespaces still reach it',
    );
  }
  return ok({
    kind: 'service',
    name: s.name,
    namespace: s.namespace,
    hostname: s.hostname,
    vips,
    ports,
    subjectAltNames,
    ...(loadBalancing ? { loadBalancing } : {}),
    allowUnhealthy: healthPolicy === LoadBalancing_HealthPolicy.ALLOW_ALL,
    visibility: s.visibility === Visibility.NAMESPACE ? 'namespace' : 'public',
    unsupported,
  });
}

function describePort(p: XdsServicePort): string {
  return `target ${p.targetPort === 0 ? "each workload's own" : p.targetPort}${p.appProtocol ? ` ${p.appProtocol}` : ''}`;
}

const SCOPES: ReadonlyMap<LoadBalancing_Scope, LocalityScope> = new Map([
  [LoadBalancing_Scope.NETWORK, 'network'],
  [LoadBalancing_Scope.REGION, 'region'],
  [LoadBalancing_Scope.ZONE, 'zone'],
  [LoadBalancing_Scope.SUBZONE, 'subzone'],
  [LoadBalancing_Scope.NODE, 'node'],
  [LoadBalancing_Scope.CLUSTER, 'cluster'],
]);

/** ztunnel's reading of load_balancing: STRICT and FAILOVER rank endpoints by locality; no mode, none. */
function translateLoadBalancing(lb: LoadBalancing | undefined, unsupported: string[]): ServiceLoadBalancing | undefined {
  if (!lb) return undefined;
  if (lb.mode === LoadBalancing_Mode.PASSTHROUGH) {
    unsupported.push('load_balancing mode PASSTHROUGH is not supported; its endpoints are balanced as usual');
    return undefined;
  }
  if (lb.mode !== LoadBalancing_Mode.STRICT && lb.mode !== LoadBalancing_Mode.FAILOVER) return undefined;
  const routingPreference: LocalityScope[] = [];
  for (const scope of lb.routingPreference) {
    const known = SCOPES.get(scope);
    if (known) routingPreference.push(known);
    else unsupported.push(`load_balancing routing_preference ${scope} is unknown and ignored`);
  }
  return { mode: lb.mode === LoadBalancing_Mode.STRICT ? 'strict' : 'failover', routingPreference };
}

/** A workload's locality as the node labels it comes from in Kubernetes; undefined when istiod sent none. */
function localityLabels(w: XdsWorkloadMessage): Record<string, string> | undefined {
  const l = w.locality;
  if (!l || (!l.region && !l.zone && !l.subzone)) return undefined;
  return { ...(l.region ? { [REGION_LABEL]: l.region } : {}), ...(l.zone ? { [ZONE_LABEL]: l.zone } : {}), ...(l.subzone ? { [SUBZONE_LABEL]: l.subzone } : {}) };
}

function portProblem(port: number, zeroAllowed: boolean): string | undefined {
  if (port > 65535 || (port === 0 && !zeroAllowed)) return `port ${port} is outside 1-65535`;
  return undefined;
}

function gatewayName(g: GatewayAddress): string {
  if (g.destination.case === 'hostname') return `${g.destination.value.namespace}/${g.destination.value.hostname}`;
  if (g.destination.case === 'address') return ipFromBytes(g.destination.value.address) ?? '(unreadable address)';
  return '(none)';
}

/** 4 or 16 bytes as an address string; undefined for any other length. */
export function ipFromBytes(bytes: Uint8Array): string | undefined {
  if (bytes.length === 4) return [...bytes].join('.');
  if (bytes.length !== 16) return undefined;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  // The URL parser writes IPv6 in its canonical compressed form.
  return new URL(`http://[${groups.join(':')}]`).hostname.slice(1, -1);
}

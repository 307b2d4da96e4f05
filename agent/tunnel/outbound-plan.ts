// The outbound decision as one value, computed from the snapshot alone: where a pod's connection goes and
// how it is carried (an HBONE tunnel, a pod of this node, plain TCP, or the L7 proxy), so that the L4
// listener, the L7 upstream, health probes and `ambit explain` all read the same answer (ztunnel builds
// one request value in outbound.rs the same way, and a single proxy_to executes it).

import { isIPv6 } from 'node:net';
import type { AppProtocol } from '../state/protocol.js';
import { type MeshService, type MeshSnapshot, type SpiffeId, type Workload, serviceVisibleTo } from '../state/model.js';
import type { ConnectionDescription, ResponseFlag } from '../telemetry/connections.js';
import type { HttpDestination } from '../l7/proxy/http-destination.js';
import { httpDestinationOf } from '../l7/proxy/http-destination.js';
import type { TcpRouteTarget } from '../l7/proxy/tcp-route-target.js';
import { canonicalName, canonicalRevision } from '../state/canonical.js';
import { type Address, type OutboundTarget, resolveOutbound, serverIdentities } from './destination.js';
import { type ServiceAuthority, formatAuthority, formatBaggage, forwardedHeader } from './hbone/connect-headers.js';
import type { DoubleHboneRequest } from './hbone/double-hbone.js';
import type { HboneOpenRequest } from './hbone/open-request.js';
import { type NetworkHop, networkHop } from './network-gateway.js';
import { HBONE_PORT } from './hbone/settings.js';
import { type InboundAttempt, admitInbound } from './inbound-admission.js';

/** Who opens the connection: an enrolled pod of this node, from its own address. */
export interface OutboundSource {
  readonly workload: Workload;
  /** The address the connection leaves from (the pod's). */
  readonly ip: string;
  /** The client's port, for telemetry's `src.addr`; 0 when no client socket exists (a health probe). */
  readonly port: number;
}

/** What the planner needs beyond the snapshot: facts about this agent, never about a socket. */
export interface PlanContext {
  readonly node: string;
  /** Sent in the CONNECT's baggage (`k8s.cluster.name`), as ztunnel does. */
  readonly clusterId: string;
  /** The outbound HTTP proxy takes ports that speak HTTP; without it every port is L4. */
  readonly l7?: boolean;
  /** Same-node HTTP ports are authorized per request by the inbound HTTP proxy (admission skips L4 policy). */
  readonly inboundHttp?: boolean;
  /** A VirtualService's tcp[] route pick for a Service port (the L7 balancer's); absent: the L4 default. */
  readonly routeTcp?: (snapshot: MeshSnapshot, source: Workload, dst: Address) => TcpRouteTarget | undefined;
  /** Picks one of n ready endpoints of a Service VIP; default random. */
  readonly pick?: (n: number) => number;
  /**
   * `probe`: a health check of the endpoint, which travels as the source's traffic only across nodes
   * (HBONE with its identity); to a pod of this node or outside the mesh it goes plain from the agent's
   * own address, as a kubelet's would, with no admission. Default `connection`.
   */
  readonly purpose?: 'connection' | 'probe';
}

interface PlanCommon {
  /** Who talked to whom, as the TCP metrics and access log count it: the outbound side first. */
  readonly telemetry: readonly ConnectionDescription[];
}

/** To an enrolled pod on another node: a stream on a pooled HBONE connection to its 15008. */
export interface HbonePlan extends PlanCommon {
  readonly transport: 'hbone';
  readonly workload: Workload;
  readonly service?: MeshService;
  /** The pod and application port: the CONNECT's `:authority`. */
  readonly target: Address;
  readonly authority: string;
  /** What the pool executes: the source identity's certificate, the IP to bind, the expected server identities. */
  readonly request: HboneOpenRequest;
  /** The CONNECT's headers besides `:authority` (forwarded, baggage); a random unsampled traceparent is added per stream. */
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * To an enrolled pod on another network: an outer HBONE tunnel to that network's east-west gateway and,
 * inside it, an inner one whose mTLS ends at the workload (ztunnel's DOUBLEHBONE); both CONNECTs name
 * the Service (`hostname:port`), which the gateway routes on.
 */
export interface DoubleHbonePlan extends PlanCommon {
  readonly transport: 'double-hbone';
  readonly workload: Workload;
  readonly service: MeshService;
  /** The endpoint chosen (its pod IP is not reachable from here; the gateway picks its own endpoint). */
  readonly target: Address;
  /** `hostname:port` of the Service, both tunnels' `:authority`. */
  readonly authority: string;
  /** The gateway: where the outer tunnel goes and the identity it must prove. */
  readonly gateway: { readonly address: Address; readonly identities: readonly SpiffeId[] };
  readonly request: DoubleHboneRequest;
}

/** To an enrolled pod of this node: admitted here as its own agent's inbound side would, no tunnel. */
export interface LocalPlan extends PlanCommon {
  readonly transport: 'local';
  readonly workload: Workload;
  readonly service?: MeshService;
  readonly target: Address;
  /** Re-checked on every new snapshot while the connection lives. */
  readonly admission: InboundAttempt;
  /** The client's port, which the inbound HTTP proxy's telemetry and forwarding name. */
  readonly sourcePort: number;
  /** Set when the port speaks HTTP and the inbound HTTP proxy authorizes each request. */
  readonly httpProtocol?: AppProtocol;
  /** The source address to connect from; absent when a pod reaches itself (it cannot be sent its own address). */
  readonly bindSource?: string;
}

/** Plain TCP: outside the mesh, a pod that is not enrolled, or a health probe of a pod of this node. */
export interface PlainPlan extends PlanCommon {
  readonly transport: 'plain';
  readonly target: Address;
  /** Connect from this address (the pod's, transparently); absent: from the agent's own. */
  readonly bindSource?: string;
}

/** A port that speaks HTTP: the L7 proxy routes each request and opens upstreams with planEndpoint. */
export interface HttpPlan {
  readonly transport: 'http';
  readonly destination: HttpDestination;
}

/**
 * To an endpoint known by name (a ServiceEntry with resolution DNS): the executor resolves `hostname`
 * (agent/dns/host-resolver.ts), then carries the connection as `planResolved` says for the address.
 */
export interface DnsPlan extends PlanCommon {
  readonly transport: 'dns';
  readonly hostname: string;
  /** The port to connect to at the resolved address. */
  readonly port: number;
  readonly workload?: Workload;
  readonly service: MeshService;
  /** The Service port the client dialled. */
  readonly servicePort: number;
  /** The IP family of the address dialled: its answers are preferred (ztunnel's choice). */
  readonly family: 4 | 6;
}

export interface RefusedPlan extends PlanCommon {
  readonly transport: 'refused';
  readonly flag: ResponseFlag;
  readonly reason: string;
}

export type OutboundPlan = HbonePlan | DoubleHbonePlan | LocalPlan | PlainPlan | HttpPlan | DnsPlan | RefusedPlan;
/** A plan for one endpoint already chosen (the L7 upstream, a probe): everything but the L7 hand-off and a name to resolve. */
export type EndpointPlan = Exclude<OutboundPlan, HttpPlan | DnsPlan>;
/** A plan that opens a connection. */
export type ConnectionPlan = HbonePlan | DoubleHbonePlan | LocalPlan | PlainPlan;

/** An endpoint picked by the caller: a workload (or none, outside the mesh) at an address. */
export interface EndpointChoice {
  readonly workload?: Workload;
  readonly address: Address;
  readonly service?: MeshService;
  /** The Service port the client dialled (the address has the target port); derived from the endpoint when absent. */
  readonly servicePort?: number;
}

/**
 * How a connection from `source` to `destination` (what the client dialled: a Service VIP or an
 * address, and a port) is carried, decided from `snapshot` only: no socket is touched, so `ambit
 * explain` calls it to show the transport step exactly as the data path takes it. The only input
 * that is not the snapshot is the endpoint pick among a VIP's ready endpoints (`context.pick`) and a
 * tcp[] route's balancer (`context.routeTcp`).
 */
export function planOutbound(snapshot: MeshSnapshot, source: OutboundSource, destination: Address, context: PlanContext): OutboundPlan {
  const { node } = context;
  const src = source.workload;
  if (src.node !== node || !src.enrollment.enrolled) return refused(source, destination, 'NO_ROUTE', `source ${source.ip} is not an enrolled pod of node ${node}`);
  // Before L4 and L7 alike: a service kept to its namespace (visibility NAMESPACE, exportTo ".") is no route for others.
  const vipService = snapshot.servicesByVip.get(destination.ip);
  if (vipService && !serviceVisibleTo(vipService, src.namespace)) {
    return refused(source, destination, 'NO_ROUTE', `service ${vipService.hostname} is visible only to namespace ${vipService.namespace} (visibility NAMESPACE, or exportTo "."), not to ${src.namespace}`);
  }
  const http = context.l7 ? httpDestinationOf(snapshot, destination) : undefined;
  if (http) return { transport: 'http', destination: http };
  const target: OutboundTarget = context.routeTcp?.(snapshot, src, destination) ?? resolveOutbound(snapshot, destination, node, context.pick);
  if (target.kind === 'refused') return refused(source, destination, 'NO_ROUTE', target.reason);
  if (target.kind === 'dns') {
    const { hostname, port, workload, service } = target;
    const description: ConnectionDescription = { direction: 'outbound', src: { addr: srcAddr(source), workload: src }, dst: { addr: `${hostname}:${port}`, ...(workload ? { workload } : {}), service }, securityPolicy: 'unknown' };
    const family = isIPv6(destination.ip) ? 6 : 4;
    return { transport: 'dns', hostname, port, ...(workload ? { workload } : {}), service, servicePort: destination.port, family, telemetry: [description] };
  }
  const endpoint: EndpointChoice = target.kind === 'workload' ? { ...target, ...(target.service ? { servicePort: destination.port } : {}) } : { address: target.address };
  return planEndpoint(snapshot, source, endpoint, context);
}

/** How a connection to an endpoint known by name is carried once `ip` is its address. */
export function planResolved(snapshot: MeshSnapshot, source: OutboundSource, plan: DnsPlan, ip: string, context: PlanContext): EndpointPlan {
  const { workload, service, servicePort, port } = plan;
  return planEndpoint(snapshot, source, { ...(workload ? { workload } : {}), address: { ip, port }, service, servicePort }, context);
}

/**
 * How a connection to one endpoint already chosen is carried: HBONE to an enrolled pod elsewhere, the
 * same-node path (with the destination's admission) to one here, plain TCP to anything else.
 */
export function planEndpoint(snapshot: MeshSnapshot, source: OutboundSource, endpoint: EndpointChoice, context: PlanContext): EndpointPlan {
  const { workload, address, service } = endpoint;
  const src = source.workload;
  const probe = context.purpose === 'probe';
  if (source.ip === '') return refused(source, address, 'NO_ROUTE', `source ${src.key} has no IP to connect from`);
  const enrolled = workload?.enrollment.enrolled === true;
  if (!workload || !enrolled || (probe && workload.node === context.node)) {
    const dst: ConnectionDescription['dst'] = { addr: formatAuthority(address), ...(workload ? { workload, ...(service ? { service } : {}) } : {}) };
    const description: ConnectionDescription = { direction: 'outbound', src: { addr: srcAddr(source), workload: src }, dst, securityPolicy: 'unknown' };
    return { transport: 'plain', target: address, ...(probe ? {} : { bindSource: source.ip }), telemetry: [description] };
  }
  const mutual = { addr: srcAddr(source), workload: src, identity: src.identity };
  // As ztunnel, the source pod's network decides (the agent's own): another network is reached through its gateway.
  if ((workload.network ?? '') !== (src.network ?? '')) return doubleHbonePlan(snapshot, source, endpoint, workload, context, mutual);
  if (workload.node !== context.node) return hbonePlan(source, workload, address, service, context.clusterId, mutual);
  const outbound: ConnectionDescription = {
    direction: 'outbound',
    src: mutual,
    dst: { addr: formatAuthority(address), workload, identity: workload.identity, ...(service ? { service } : {}) },
    securityPolicy: 'mutual_tls',
  };
  const telemetry = [outbound, { ...outbound, direction: 'inbound' as const }];
  const attempt: InboundAttempt = { node: context.node, sourceIp: source.ip, sourceIdentity: src.identity, destination: address, ...(context.inboundHttp ? { httpPerRequest: true } : {}) };
  const admission = admitInbound(snapshot, attempt);
  if (!admission.ok) return { transport: 'refused', flag: admission.flag, reason: admission.reason, telemetry };
  const self = admission.workload === src || admission.workload.key === src.key;
  return {
    transport: 'local',
    workload: admission.workload,
    ...(service ? { service } : {}),
    target: address,
    admission: attempt,
    sourcePort: source.port,
    ...(admission.httpProtocol ? { httpProtocol: admission.httpProtocol } : {}),
    ...(self ? {} : { bindSource: source.ip }),
    telemetry,
  };
}

function hbonePlan(source: OutboundSource, workload: Workload, address: Address, service: MeshService | undefined, clusterId: string, src: ConnectionDescription['src']): HbonePlan {
  const request: HboneOpenRequest = {
    source: { identity: source.workload.identity, ip: source.ip },
    bindSource: true,
    destination: { ip: address.ip },
    expectedIdentities: serverIdentities(workload, service),
    authority: address,
    ...(service ? { serviceHostname: service.hostname } : {}),
    baggage: baggageOf(source.workload, clusterId),
  };
  const authority = formatAuthority(address);
  const description: ConnectionDescription = {
    direction: 'outbound',
    src,
    dst: { addr: `${address.ip}:${HBONE_PORT}`, hboneAddr: authority, workload, identity: workload.identity, ...(service ? { service } : {}) },
    securityPolicy: 'mutual_tls',
  };
  const forwarded = forwardedHeader(source.ip, service?.hostname);
  return { transport: 'hbone', workload, ...(service ? { service } : {}), target: address, authority, request, headers: { forwarded, baggage: request.baggage! }, telemetry: [description] };
}

function doubleHbonePlan(snapshot: MeshSnapshot, source: OutboundSource, endpoint: EndpointChoice, workload: Workload, context: PlanContext, src: ConnectionDescription['src']): EndpointPlan {
  const { address, service } = endpoint;
  const where = `${workload.key} on network ${workload.network || '(default)'}`;
  const network = source.workload.network ?? '';
  // ztunnel crosses networks only for Services: the gateway routes on the Service, never on a pod IP.
  if (!service) return refused(source, address, 'NO_ROUTE', `${where} is reachable only through a Service: its pod IP is not routable from network ${network || '(default)'}`);
  const servicePort = endpoint.servicePort ?? servicePortOf(service, workload, address.port);
  if (servicePort === undefined) return refused(source, address, 'NO_ROUTE', `service ${service.hostname} has no port that targets port ${address.port} of ${workload.key}`);
  const hop: NetworkHop | string = networkHop(snapshot, workload, network);
  if (typeof hop === 'string') return refused(source, address, 'NO_ROUTE', hop);
  const target: ServiceAuthority = { hostname: service.hostname, port: servicePort };
  const authority = formatAuthority(target);
  const common = {
    source: { identity: source.workload.identity, ip: source.ip },
    authority: target,
    serviceHostname: service.hostname,
    baggage: baggageOf(source.workload, context.clusterId),
  };
  // The outer TCP connection leaves from the node: the pod's address means nothing on the gateway's network.
  const outer: HboneOpenRequest = { ...common, destination: { ip: hop.address.ip, port: hop.address.port }, expectedIdentities: hop.identities };
  const inner = { ...common, destination: outer.destination, expectedIdentities: serverIdentities(workload, service), originNetwork: network };
  const description: ConnectionDescription = {
    direction: 'outbound',
    src,
    dst: { addr: formatAuthority(hop.address), hboneAddr: authority, workload, identity: workload.identity, service },
    securityPolicy: 'mutual_tls',
  };
  return { transport: 'double-hbone', workload, service, target: address, authority, gateway: hop, request: { outer, inner }, telemetry: [description] };
}

/** The Service port whose target on `workload` is `targetPort` (an L7 upstream knows only the endpoint). */
function servicePortOf(service: MeshService, workload: Workload, targetPort: number): number | undefined {
  const endpoint = service.endpoints.find((e) => e.workload === workload.key);
  for (const [port, target] of endpoint?.ports ?? []) if (target === targetPort) return port;
  return undefined;
}

function refused(source: OutboundSource, destination: Address, flag: ResponseFlag, reason: string): RefusedPlan {
  const description: ConnectionDescription = { direction: 'outbound', src: { addr: srcAddr(source), workload: source.workload }, dst: { addr: formatAuthority(destination) }, securityPolicy: 'unknown' };
  return { transport: 'refused', flag, reason, telemetry: [description] };
}

function srcAddr(source: OutboundSource): string {
  return formatAuthority({ ip: source.ip, port: source.port });
}

/** ztunnel's baggage: who the source is, for the destination's telemetry (it never authorizes). */
export function baggageOf(source: Workload, clusterId: string): string {
  return formatBaggage({
    clusterName: clusterId,
    namespace: source.namespace,
    workload: { type: 'pod', name: source.name },
    canonicalService: canonicalName(source),
    canonicalRevision: canonicalRevision(source),
  });
}


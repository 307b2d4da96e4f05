// The mesh as every other part of the agent sees it: workloads, services and the Istio resources that
// shape them, in one immutable snapshot. Built from configuration objects by `buildSnapshot`.

import type { ConfigDiagnostic } from '../config/diagnostics.js';
import type { Labels, Probe, SourceLocation } from '../config/kubernetes.js';
import type { MeshConfig } from '../config/mesh-config.js';
import type { RouteStatus } from '../config/gateway-api/parent-status.js';
import type { MeshObject } from '../config/objects.js';
import type { AppProtocol } from './protocol.js';
import type { ServiceLoadBalancing } from './locality.js';

/** `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`: who a workload is on the wire. */
export type SpiffeId = string & { readonly __brand: 'SpiffeId' };

export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): SpiffeId {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}` as SpiffeId;
}

/**
 * The key a workload or service is stored under, unique in a snapshot. Workloads: `namespace/name` for
 * YAML and Kubernetes pods (unique there), istiod's uid in xDS mode (one ServiceEntry or selector-less
 * Service yields several workloads with one namespace/name). Services: `namespace/hostname`, as
 * ztunnel keys them (a multi-host ServiceEntry yields several services with one namespace/name).
 */
export type ObjectKey = string;

export function objectKey(namespace: string, name: string): ObjectKey {
  return `${namespace}/${name}`;
}

/** A Kubernetes Service's hostname, the name Istio resources use for it. */
export function kubernetesServiceHostname(name: string, namespace: string, clusterDomain: string): string {
  return `${name}.${namespace}.svc.${clusterDomain}`;
}

/** The key a service is stored under: istiod's resource name for it. */
export function serviceKey(namespace: string, hostname: string): ObjectKey {
  return `${namespace}/${hostname}`;
}

/** Who may use a service: every client, or only those in its namespace (istiod's visibility NAMESPACE). */
export type ServiceVisibility = 'public' | 'namespace';

/** Whether a client in `namespace` may use `service`, as ztunnel's visible_to. */
export function serviceVisibleTo(service: MeshService, namespace: string): boolean {
  return service.visibility !== 'namespace' || service.namespace === namespace;
}

export interface MeshNode {
  readonly name: string;
  readonly internalIp?: string;
  readonly podCidrs: readonly string[];
  readonly labels: Labels;
}

export interface MeshNamespace {
  readonly name: string;
  readonly labels: Labels;
  /** Where its Namespace object came from; absent when none was given and the namespace exists only because objects name it. */
  readonly source?: SourceLocation;
}

/** Why a workload is or is not in the mesh; shown by `ambit zc workloads` and in logs. */
export type Enrollment =
  | { readonly enrolled: true; readonly reason: 'namespace-label' | 'pod-label' | 'workload-entry' }
  | { readonly enrolled: false; readonly reason: 'pod-opt-out' | 'namespace-not-ambient' | 'no-pod-ip' | 'host-network' | 'sidecar' | 'no-identity' };

/** A pod as the mesh sees it. */
export interface Workload {
  readonly key: ObjectKey;
  readonly name: string;
  readonly namespace: string;
  readonly uid: string;
  /** Its Deployment's (CronJob's, ...) name as istiod derives it (workload-name.ts); the pod's own name when none. */
  readonly workloadName: string;
  /** istiod's uid for it, when it came from istiod; /config_dump shows it instead of deriving Istio's pod uid. */
  readonly istioUid?: string;
  readonly node?: string;
  /**
   * The cluster it runs in (its source's cluster ID: Istio's `clusterID`, `--cluster-id` or a local
   * YAML set's `cluster`); absent: the agent's own cluster.
   */
  readonly cluster?: string;
  /**
   * The network it is on (Istio's `topology.istio.io/network`, from the pod, its namespace or its
   * cluster's default); absent: the agent's own network. Its IPs are reachable only from that network.
   */
  readonly network?: string;
  /** How a client on another network reaches it: an east-west gateway (ztunnel's `network_gateway`). */
  readonly networkGateway?: NetworkGateway;
  /** Primary pod IP first; empty until the pod has one. */
  readonly ips: readonly string[];
  /** A workload istiod knows by hostname only (no address): it is no Service endpoint until resolved. */
  readonly hostname?: string;
  /** Its share of its services' connections relative to their other endpoints (istiod's capacity); absent: 1. */
  readonly capacity?: number;
  readonly labels: Labels;
  readonly serviceAccount: string;
  readonly identity: SpiffeId;
  /** Running, with an IP, and not reported unready: only ready workloads are Service endpoints. */
  readonly ready: boolean;
  readonly enrollment: Enrollment;
  /** Present when it is no pod: a WorkloadEntry, or an endpoint written inline in a ServiceEntry. */
  readonly entry?: 'WorkloadEntry' | 'ServiceEntry';
  /** A hostNetwork pod: its IP is its node's, shared with the node and every other such pod there. */
  readonly hostNetwork?: true;
  /** Named container ports, for Services whose targetPort is a name. */
  readonly namedPorts: ReadonlyMap<string, number>;
  /** The first container's readinessProbe, which active health checks reuse. */
  readonly readinessProbe?: Probe;
  readonly annotations: Labels;
  readonly source: SourceLocation;
}

/**
 * An east-west gateway: where an outer HBONE tunnel to a workload on another network goes (ztunnel's
 * GatewayAddress). The inner tunnel, to the workload itself, keeps end-to-end mTLS through it.
 */
export interface NetworkGateway {
  /** The gateway's own address on the client's side, or a Service (namespace/hostname) that fronts it. */
  readonly destination: { readonly address: string } | { readonly namespace: string; readonly hostname: string };
  /** The port its HBONE listener takes the outer tunnel on (15008 unless configured). */
  readonly hboneMtlsPort: number;
  /**
   * The identity the gateway proves on the outer tunnel, when its Gateway object names it: the
   * ServiceAccount Istio's deployment controller gives an `istio-east-west` Gateway's pods (the
   * Gateway's own name, in its namespace). Absent: the workload or Service at its address decides.
   */
  readonly identity?: SpiffeId;
}

export interface MeshServicePort {
  readonly name?: string;
  readonly port: number;
  readonly targetPort: number | string;
  readonly protocol: AppProtocol;
}

/** One ready workload behind a Service, with the Service's ports resolved to its container ports. */
export interface ServiceEndpoint {
  readonly workload: ObjectKey;
  readonly ip: string;
  /** Service port → target port on this workload; a port whose named targetPort the pod lacks is absent. */
  readonly ports: ReadonlyMap<number, number>;
}

/**
 * An endpoint known by a host name, resolved when a connection picks it (a ServiceEntry with resolution
 * DNS: each endpoint written as a name, or the host itself when it lists none).
 */
export interface HostnameEndpoint {
  /** The inline endpoint's workload; absent for the ServiceEntry's own host (an address outside the mesh). */
  readonly workload?: ObjectKey;
  readonly hostname: string;
  /** Service port → the port to connect to at the resolved address. */
  readonly ports: ReadonlyMap<number, number>;
}

export interface MeshService {
  /** `namespace/hostname` (serviceKey). */
  readonly key: ObjectKey;
  readonly name: string;
  readonly namespace: string;
  /** `<name>.<namespace>.svc.<cluster domain>`, the name Istio resources use for it. */
  readonly hostname: string;
  readonly vips: readonly string[];
  readonly ports: readonly MeshServicePort[];
  readonly selector?: Labels;
  readonly endpoints: readonly ServiceEndpoint[];
  /** Endpoints resolved by DNS at connection time (ServiceEntry resolution DNS); absent: none. */
  readonly hostnameEndpoints?: readonly HostnameEndpoint[];
  /**
   * Identities a server may present for this Service besides its workload's own (istiod's
   * `subject_alt_names`, from a ServiceEntry's subjectAltNames); absent for Kubernetes Services.
   */
  readonly subjectAltNames?: readonly SpiffeId[];
  /** Which endpoints a client prefers by locality (internalTrafficPolicy, trafficDistribution); none: all alike. */
  readonly loadBalancing?: ServiceLoadBalancing;
  /** Unready endpoints still get traffic (istiod's health_policy ALLOW_ALL); absent: only ready ones. */
  readonly allowUnready?: true;
  /** Absent: public. */
  readonly visibility?: ServiceVisibility;
  /** Present for a ServiceEntry host: how its endpoints are found, and whether it is part of the mesh. */
  readonly entry?: ServiceEntryFacts;
  readonly labels: Labels;
  readonly source: SourceLocation;
}

/** A ServiceEntry's resolution (DNS_ROUND_ROBIN counts as DNS) and location, as its services carry them. */
export interface ServiceEntryFacts {
  readonly resolution: 'NONE' | 'STATIC' | 'DNS';
  readonly location: 'MESH_EXTERNAL' | 'MESH_INTERNAL';
}

type OfKind<K extends MeshObject['kind']> = Extract<MeshObject, { kind: K }>;

/** The Istio resources in force, grouped by kind, in configuration order. */
export interface IstioResources {
  readonly virtualServices: readonly OfKind<'VirtualService'>[];
  readonly destinationRules: readonly OfKind<'DestinationRule'>[];
  readonly authorizationPolicies: readonly OfKind<'AuthorizationPolicy'>[];
  readonly peerAuthentications: readonly OfKind<'PeerAuthentication'>[];
  readonly requestAuthentications: readonly OfKind<'RequestAuthentication'>[];
  readonly serviceEntries: readonly OfKind<'ServiceEntry'>[];
  readonly workloadEntries: readonly OfKind<'WorkloadEntry'>[];
  readonly telemetries: readonly OfKind<'Telemetry'>[];
  /** From the ConfigMap istio-system/istio (key `mesh`); empty without it. */
  readonly meshConfig: MeshConfig;
}

/**
 * Gateway API resources in force (gateway.networking.k8s.io), and the routes' translation into the
 * VirtualService model the L7 path runs (agent/config/gateway-api/to-virtual-service.ts).
 */
export interface GatewayApiResources {
  readonly httpRoutes: readonly OfKind<'HTTPRoute'>[];
  readonly grpcRoutes: readonly OfKind<'GRPCRoute'>[];
  readonly tcpRoutes: readonly OfKind<'TCPRoute'>[];
  /** Gateways of class istio-waypoint: they mark L7 processing, which Ambit's agents give without a hop. */
  readonly waypoints: readonly OfKind<'Gateway'>[];
  /** Synthesized from the routes; consulted after the user's own VirtualServices. */
  readonly virtualServices: readonly OfKind<'VirtualService'>[];
  /** Each route's Accepted and ResolvedRefs per parentRef, for the Kubernetes source to write back. */
  readonly statuses: readonly RouteStatus[];
}

/** Ambit's own resources in force (ambit.dev), in configuration order. */
export interface AmbitResources {
  readonly rateLimits: readonly OfKind<'RateLimit'>[];
}

export interface MeshSnapshot {
  /** Increases by one with every accepted change; logged and shown in /config_dump. */
  readonly version: number;
  readonly trustDomain: string;
  readonly clusterDomain: string;
  /** The agent's own cluster ID, which its clients are in; absent: unknown (one cluster). */
  readonly ownCluster?: string;
  /** The agent's own network (docs/multicluster.md); absent: the default (empty) network. */
  readonly ownNetwork?: string;
  /** By name; a remote cluster's nodes by `<cluster>/<name>`, so that none is mistaken for a local one. */
  readonly nodes: ReadonlyMap<string, MeshNode>;
  readonly namespaces: ReadonlyMap<string, MeshNamespace>;
  readonly workloads: ReadonlyMap<ObjectKey, Workload>;
  readonly workloadsByIp: ReadonlyMap<string, Workload>;
  readonly services: ReadonlyMap<ObjectKey, MeshService>;
  readonly servicesByVip: ReadonlyMap<string, MeshService>;
  readonly servicesByHostname: ReadonlyMap<string, MeshService>;
  readonly istio: IstioResources;
  readonly gatewayApi: GatewayApiResources;
  readonly ambit: AmbitResources;
  /** Cross-object problems found while building (a selector that matches nothing, a duplicate IP). */
  readonly diagnostics: readonly ConfigDiagnostic[];
}

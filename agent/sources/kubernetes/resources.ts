// The API resources the Kubernetes source lists and watches: exactly the kinds agent/config reads, in
// the versions it accepts. deploy/daemonset/rbac.yaml grants list and watch on these and nothing more.
// Istio's kinds and Ambit's RateLimit are custom resources: a cluster without their CRD serves none,
// which the source treats as "none in force" (and says once), never as a reason not to start.
//
// EndpointSlices are not watched. Service endpoints come from each Service's selector over the pods the
// agent already watches (agent/state/build.ts), the same computation local mode makes, so the same
// objects give the same snapshot whatever the source. The slices would only add endpoints for Services
// without a selector, which local mode cannot express either; the mesh leaves those Services without
// endpoints, and says so (`ambit zc services`). Watching slices cluster-wide would cost every agent a
// second copy of every pod IP for nothing the snapshot reads.

import { GATEWAY_VERSIONS, GRPC_ROUTE_VERSIONS, HTTP_ROUTE_VERSIONS, TCP_ROUTE_VERSIONS } from '../../config/gateway-api/types.js';
import { NETWORKING_VERSIONS, SECURITY_VERSIONS } from '../../config/istio-common.js';
import type { MeshKind } from '../../config/objects.js';
import { MESH_CONFIG_MAP } from '../../config/mesh-config.js';
import { TELEMETRY_VERSIONS } from '../../config/parse-telemetry.js';
import { RATE_LIMIT_VERSIONS } from '../../config/rate-limit.js';

export interface WatchedResource {
  /** A kind agent/config reads, or Secret (remote clusters' kubeconfigs, agent/sources/kubernetes/remote-clusters.ts). */
  readonly kind: MeshKind | 'Secret';
  /** "" for the core group. */
  readonly group: string;
  /** The versions agent/config accepts, preferred first; the first one the server serves is used. */
  readonly versions: readonly string[];
  readonly plural: string;
  /** For custom resources: whose CRD defines it, for the message when the server serves none. */
  readonly crd?: string;
  /** Listed and watched in this namespace only (granted by a Role there), not cluster-wide. */
  readonly namespace?: string;
  /** Only the objects this label selector matches, filtered by the server. */
  readonly labelSelector?: string;
}

const ISTIO = "Istio's CRD";
const GATEWAY_API = "the Gateway API's CRDs (standard channel; TCPRoute before v1.6 is in the experimental channel)";

const versionsOf = (apiVersions: readonly string[]): string[] => apiVersions.map((v) => v.split('/')[1]!);

export const WATCHED_RESOURCES: readonly WatchedResource[] = [
  { kind: 'Node', group: '', versions: ['v1'], plural: 'nodes' },
  { kind: 'Namespace', group: '', versions: ['v1'], plural: 'namespaces' },
  { kind: 'ServiceAccount', group: '', versions: ['v1'], plural: 'serviceaccounts' },
  { kind: 'Pod', group: '', versions: ['v1'], plural: 'pods' },
  { kind: 'Service', group: '', versions: ['v1'], plural: 'services' },
  { kind: 'VirtualService', group: 'networking.istio.io', versions: versionsOf(NETWORKING_VERSIONS), plural: 'virtualservices', crd: ISTIO },
  { kind: 'DestinationRule', group: 'networking.istio.io', versions: versionsOf(NETWORKING_VERSIONS), plural: 'destinationrules', crd: ISTIO },
  { kind: 'ServiceEntry', group: 'networking.istio.io', versions: versionsOf(NETWORKING_VERSIONS), plural: 'serviceentries', crd: ISTIO },
  { kind: 'WorkloadEntry', group: 'networking.istio.io', versions: versionsOf(NETWORKING_VERSIONS), plural: 'workloadentries', crd: ISTIO },
  { kind: 'AuthorizationPolicy', group: 'security.istio.io', versions: versionsOf(SECURITY_VERSIONS), plural: 'authorizationpolicies', crd: ISTIO },
  { kind: 'PeerAuthentication', group: 'security.istio.io', versions: versionsOf(SECURITY_VERSIONS), plural: 'peerauthentications', crd: ISTIO },
  { kind: 'RequestAuthentication', group: 'security.istio.io', versions: versionsOf(SECURITY_VERSIONS), plural: 'requestauthentications', crd: ISTIO },
  { kind: 'Telemetry', group: 'telemetry.istio.io', versions: versionsOf(TELEMETRY_VERSIONS), plural: 'telemetries', crd: ISTIO },
  // MeshConfig (its extension providers): Istio's ConfigMap istio-system/istio; no other ConfigMap is read.
  { kind: 'ConfigMap', group: '', versions: ['v1'], plural: 'configmaps', namespace: MESH_CONFIG_MAP.namespace },
  { kind: 'HTTPRoute', group: 'gateway.networking.k8s.io', versions: versionsOf(HTTP_ROUTE_VERSIONS), plural: 'httproutes', crd: GATEWAY_API },
  { kind: 'GRPCRoute', group: 'gateway.networking.k8s.io', versions: versionsOf(GRPC_ROUTE_VERSIONS), plural: 'grpcroutes', crd: GATEWAY_API },
  { kind: 'TCPRoute', group: 'gateway.networking.k8s.io', versions: versionsOf(TCP_ROUTE_VERSIONS), plural: 'tcproutes', crd: GATEWAY_API },
  { kind: 'Gateway', group: 'gateway.networking.k8s.io', versions: versionsOf(GATEWAY_VERSIONS), plural: 'gateways', crd: GATEWAY_API },
  {
    kind: 'RateLimit',
    group: 'ambit.dev',
    versions: versionsOf(RATE_LIMIT_VERSIONS),
    plural: 'ratelimits',
    crd: "Ambit's RateLimit CRD (deploy/daemonset/crd-ratelimits.yaml, or the Helm chart's crds/)",
  },
];

/** The collection path of a resource in one version: cluster-wide, or in its one namespace. */
export function collectionPath(resource: WatchedResource, version: string): string {
  const scope = resource.namespace !== undefined ? `namespaces/${resource.namespace}/` : '';
  return resource.group === '' ? `/api/${version}/${scope}${resource.plural}` : `/apis/${resource.group}/${version}/${scope}${resource.plural}`;
}

export function apiVersionOf(resource: WatchedResource, version: string): string {
  return resource.group === '' ? version : `${resource.group}/${version}`;
}

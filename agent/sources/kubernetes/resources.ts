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

import { NETWORKING_VERSIONS, SECURITY_VERSIONS } from '../../config/istio-common.js';
import type { MeshKind } from '../../config/objects.js';
import { RATE_LIMIT_VERSIONS } from '../../config/rate-limit.js';

export interface WatchedResource {
  readonly kind: MeshKind;
  /** "" for the core group. */
  readonly group: string;
  /** The versions agent/config accepts, preferred first; the first one the server serves is used. */
  readonly versions: readonly string[];
  readonly plural: string;
  /** For custom resources: whose CRD defines it, for the message when the server serves none. */
  readonly crd?: string;
}

const ISTIO = "Istio's CRD";

const versionsOf = (apiVersions: readonly string[]): string[] => apiVersions.map((v) => v.split('/')[1]!);

export const WATCHED_RESOURCES: readonly WatchedResource[] = [
  { kind: 'Node', group: '', versions: ['v1'], plural: 'nodes' },
  { kind: 'Namespace', group: '', versions: ['v1'], plural: 'namespaces' },
  { kind: 'ServiceAccount', group: '', versions: ['v1'], plural: 'serviceaccounts' },
  { kind: 'Pod', group: '', versions: ['v1'], plural: 'pods' },
  { kind: 'Service', group: '', versions: ['v1'], plural: 'services' },
  { kind: 'VirtualService', group: 'networking.istio.io', versions: versionsOf(NETWORKING_VERSIONS), plural: 'virtualservices', crd: ISTIO },
  { kind: 'DestinationRule', group: 'networking.istio.io', versions: versionsOf(NETWORKING_VERSIONS), plural: 'destinationrules', crd: ISTIO },
  { kind: 'AuthorizationPolicy', group: 'security.istio.io', versions: versionsOf(SECURITY_VERSIONS), plural: 'authorizationpolicies', crd: ISTIO },
  { kind: 'PeerAuthentication', group: 'security.istio.io', versions: versionsOf(SECURITY_VERSIONS), plural: 'peerauthentications', crd: ISTIO },
  {
    kind: 'RateLimit',
    group: 'ambit.dev',
    versions: versionsOf(RATE_LIMIT_VERSIONS),
    plural: 'ratelimits',
    crd: "Ambit's RateLimit CRD (deploy/daemonset/crd-ratelimits.yaml, or the Helm chart's crds/)",
  },
];

/** The cluster-wide collection path of a resource in one version. */
export function collectionPath(resource: WatchedResource, version: string): string {
  return resource.group === '' ? `/api/${version}/${resource.plural}` : `/apis/${resource.group}/${version}/${resource.plural}`;
}

export function apiVersionOf(resource: WatchedResource, version: string): string {
  return resource.group === '' ? version : `${resource.group}/${version}`;
}

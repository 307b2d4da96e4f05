// The API resources the Kubernetes source lists and watches: exactly the kinds agent/config reads, in
// the versions it accepts. deploy/daemonset/rbac.yaml grants list and watch on these and nothing more.
//
// EndpointSlices are not watched. Service endpoints come from each Service's selector over the pods the
// agent already watches (agent/state/build.ts), the same computation local mode makes, so the same
// objects give the same snapshot whatever the source. The slices would only add endpoints for Services
// without a selector, which local mode cannot express either; the mesh leaves those Services without
// endpoints, and says so (`ambit zc services`). Watching slices cluster-wide would cost every agent a
// second copy of every pod IP for nothing the snapshot reads.

import { NETWORKING_VERSIONS, SECURITY_VERSIONS } from '../../config/istio-common.js';
import type { MeshKind } from '../../config/objects.js';

export interface WatchedResource {
  readonly kind: MeshKind;
  /** "" for the core group. */
  readonly group: string;
  /** The versions agent/config accepts, preferred first; the first one the server serves is used. */
  readonly versions: readonly string[];
  readonly plural: string;
}

const versionsOf = (apiVersions: readonly string[]): string[] => apiVersions.map((v) => v.split('/')[1]!);

export const WATCHED_RESOURCES: readonly WatchedResource[] = [
  { kind: 'Node', group: '', versions: ['v1'], plural: 'nodes' },
  { kind: 'Namespace', group: '', versions: ['v1'], plural: 'namespaces' },
  { kind: 'ServiceAccount', group: '', versions: ['v1'], plural: 'serviceaccounts' },
  { kind: 'Pod', group: '', versions: ['v1'], plural: 'pods' },
  { kind: 'Service', group: '', versions: ['v1'], plural: 'services' },
  { kind: 'VirtualService', group: 'networking.istio.io', versions: versionsOf(NETWORKING_VERSIONS), plural: 'virtualservices' },
  { kind: 'DestinationRule', group: 'networking.istio.io', versions: versionsOf(NETWORKING_VERSIONS), plural: 'destinationrules' },
  { kind: 'AuthorizationPolicy', group: 'security.istio.io', versions: versionsOf(SECURITY_VERSIONS), plural: 'authorizationpolicies' },
  { kind: 'PeerAuthentication', group: 'security.istio.io', versions: versionsOf(SECURITY_VERSIONS), plural: 'peerauthentications' },
];

/** The cluster-wide collection path of a resource in one version. */
export function collectionPath(resource: WatchedResource, version: string): string {
  return resource.group === '' ? `/api/${version}/${resource.plural}` : `/apis/${resource.group}/${version}/${resource.plural}`;
}

export function apiVersionOf(resource: WatchedResource, version: string): string {
  return resource.group === '' ? version : `${resource.group}/${version}`;
}

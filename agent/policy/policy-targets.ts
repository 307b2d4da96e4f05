// Which targetRefs policies (AuthorizationPolicy, RequestAuthentication) apply to a request. In Istio's
// ambient mode they bind to the waypoint of a Service; Ambit has no waypoint hop and applies them in the
// destination's agent to the requests for that Service: a Service or ServiceEntry named by the policy,
// or every Service that uses (label istio.io/use-waypoint, on it or on its namespace) a Gateway of class
// istio-waypoint that the policy names. A policy and its targets live in one namespace, as Istio requires.

import type { PolicyTargetReference } from '../config/istio-security.js';
import type { MeshService, MeshSnapshot } from '../state/model.js';

export const USE_WAYPOINT_LABEL = 'istio.io/use-waypoint';
export const USE_WAYPOINT_NAMESPACE_LABEL = 'istio.io/use-waypoint-namespace';

interface TargetedPolicy {
  readonly metadata: { readonly namespace: string };
  readonly spec: { readonly targetRefs: readonly PolicyTargetReference[] };
}

/** The policies of `candidates` that target the request's Service (none without a Service). */
export function policiesTargeting<P extends TargetedPolicy>(snapshot: MeshSnapshot, candidates: readonly P[], service: MeshService | undefined): P[] {
  if (!service) return [];
  const waypoint = waypointOf(snapshot, service);
  return candidates.filter((p) =>
    p.spec.targetRefs.some((ref) => {
      if (ref.kind === 'Gateway') return waypoint !== undefined && waypoint.name === ref.name && waypoint.namespace === p.metadata.namespace;
      // Service and ServiceEntry: the mesh service of that name in the policy's namespace.
      return service.namespace === p.metadata.namespace && service.name === ref.name;
    }),
  );
}

/** The waypoint a Service uses: its own label, else its namespace's; `none` opts out, as in Istio. */
export function waypointOf(snapshot: MeshSnapshot, service: MeshService): { readonly name: string; readonly namespace: string } | undefined {
  const nsLabels = snapshot.namespaces.get(service.namespace)?.labels ?? {};
  const own = service.labels[USE_WAYPOINT_LABEL];
  const labels = own !== undefined ? service.labels : nsLabels;
  const name = labels[USE_WAYPOINT_LABEL];
  if (name === undefined || name === '' || name === 'none') return undefined;
  return { name, namespace: labels[USE_WAYPOINT_NAMESPACE_LABEL] ?? service.namespace };
}

// Resolving a route's destination (host, subset, port) against the snapshot, and the weighted choice
// among a route's destinations, shared by HTTP and TCP routing.

import type { Destination } from '../config/istio-networking.js';
import type { MeshSnapshot } from '../state/model.js';
import { resolveHost } from './hosts.js';
import type { Random } from './random.js';
import type { DestinationTarget } from './route-decision.js';

/**
 * istiod's port rule: the destination's port if written, else the Service's only port when it has one,
 * else the port the request arrived on.
 */
export function resolveDestination(snapshot: MeshSnapshot, destination: Destination, resourceNamespace: string, requestPort: number): DestinationTarget {
  const host = resolveHost(destination.host, resourceNamespace, snapshot.clusterDomain);
  const service = snapshot.servicesByHostname.get(host);
  const onlyPort = service?.ports.length === 1 ? service.ports[0]!.port : undefined;
  const port = destination.port ?? onlyPort ?? requestPort;
  return { host, ...(destination.subset !== undefined ? { subset: destination.subset } : {}), port, ...(service ? { service } : {}) };
}

/** The route to a host when no VirtualService names it: the Service itself, on the request's port. */
export function defaultDestination(snapshot: MeshSnapshot, host: string, port: number): DestinationTarget {
  const service = snapshot.servicesByHostname.get(host);
  return { host, port, ...(service ? { service } : {}) };
}

/**
 * Envoy's weighted_clusters: one destination takes everything whatever its weight; several split in
 * proportion to their weights, and a zero weight receives nothing. Returns an index into `weights`.
 */
export function pickWeighted(weights: readonly number[], random: Random): number {
  if (weights.length <= 1) return 0;
  const total = weights.reduce((a, w) => a + w, 0);
  if (total <= 0) return 0;
  let r = random() * total;
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i]!;
    if (r < w) return i;
    r -= w;
  }
  // Floating-point leftovers land on the last destination that can receive traffic.
  for (let i = weights.length - 1; i >= 0; i--) if (weights[i]! > 0) return i;
  return 0;
}

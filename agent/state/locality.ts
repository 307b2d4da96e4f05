// Which of a Service's endpoints a client uses, by locality, as ztunnel applies a Service's
// load_balancing: in `strict` mode only endpoints that share every listed scope with the client (how
// istiod expresses Kubernetes' internalTrafficPolicy: Local), in `failover` mode those sharing the
// longest prefix of the list (trafficDistribution: PreferClose), the rest only when none do.
// Localities come from the nodes' well-known topology labels. Among the preferred endpoints, each
// workload's capacity weighs its share, as ztunnel's weighted choice.
//
// Before any policy, Ambit prefers the client's own cluster, then its network (docs/multicluster.md):
// reaching another network costs an east-west gateway hop and a second encryption, so another
// cluster serves only when none closer can. ztunnel balances across clusters unless told otherwise.

import type { TrafficDistribution } from '../config/kubernetes.js';
import type { MeshSnapshot, ObjectKey, Workload } from './model.js';

export type LocalityScope = 'network' | 'region' | 'zone' | 'subzone' | 'node' | 'cluster';

export interface ServiceLoadBalancing {
  readonly mode: 'strict' | 'failover';
  readonly routingPreference: readonly LocalityScope[];
}

export const REGION_LABEL = 'topology.kubernetes.io/region';
export const ZONE_LABEL = 'topology.kubernetes.io/zone';
export const SUBZONE_LABEL = 'topology.istio.io/subzone';

const CLOSE: readonly LocalityScope[] = ['network', 'region', 'zone', 'subzone'];

/** What istiod makes of a Kubernetes Service's internalTrafficPolicy and trafficDistribution. */
export function serviceLoadBalancing(internalTrafficPolicy: 'Cluster' | 'Local' | undefined, distribution: TrafficDistribution | undefined): ServiceLoadBalancing | undefined {
  if (internalTrafficPolicy === 'Local') return { mode: 'strict', routingPreference: ['node'] };
  if (distribution === 'PreferClose' || distribution === 'PreferSameZone') return { mode: 'failover', routingPreference: CLOSE };
  if (distribution === 'PreferSameNode') return { mode: 'failover', routingPreference: ['node', ...CLOSE] };
  return undefined;
}

/** An endpoint with its priority (0 is the first choice) and its weight among its level (its workload's capacity). */
export interface RankedEndpoint<E> {
  readonly endpoint: E;
  readonly priority: number;
  readonly weight: number;
}

/** However large the capacities, bestRanked lists about this many entries at most. */
const MAX_WEIGHTED_ENTRIES = 1000;

/**
 * How far a workload is from this agent's clients: in their cluster, in another cluster on their
 * network, on another network through its east-west gateway, or on another network with none (which
 * nothing can reach; it ranks last so that it is never preferred).
 */
export const ClusterTier = { OwnCluster: 0, OwnNetwork: 1, ThroughGateway: 2, Unreachable: 3 } as const;
export type ClusterTier = (typeof ClusterTier)[keyof typeof ClusterTier];

export function clusterTier(snapshot: MeshSnapshot, workload: Workload | undefined): ClusterTier {
  if (!workload) return ClusterTier.OwnCluster;
  // Absent cluster or network: the agent's own (a WorkloadEntry, a single-cluster snapshot).
  if ((workload.network ?? snapshot.ownNetwork ?? '') !== (snapshot.ownNetwork ?? '')) {
    return workload.networkGateway ? ClusterTier.ThroughGateway : ClusterTier.Unreachable;
  }
  return workload.cluster === undefined || workload.cluster === snapshot.ownCluster ? ClusterTier.OwnCluster : ClusterTier.OwnNetwork;
}

/**
 * The endpoints a client on `clientNode` prefers, each with its priority (0 is the first choice; the
 * next level serves only when no endpoint of a better one can). The client's cluster comes first, then
 * its network, then other networks (clusterTier); within each, the Service's policy ranks. Strict mode
 * leaves out endpoints that do not match every scope. Without a policy, or without a known client
 * node, all endpoints of a tier rank alike.
 */
export function rankEndpoints<E extends { readonly workload: ObjectKey }>(
  snapshot: MeshSnapshot,
  loadBalancing: ServiceLoadBalancing | undefined,
  endpoints: readonly E[],
  clientNode: string | undefined,
): RankedEndpoint<E>[] {
  const scopes = loadBalancing && clientNode !== undefined ? loadBalancing.routingPreference : [];
  const ranked = endpoints.map((endpoint) => {
    const workload = snapshot.workloads.get(endpoint.workload);
    const tier = clusterTier(snapshot, workload);
    let matched = 0;
    while (matched < scopes.length && sameScope(snapshot, scopes[matched]!, clientNode!, workload, tier)) matched++;
    // Each tier spans the policy's levels (0 .. scopes.length), so a tier always outranks the next.
    const priority = tier * (scopes.length + 1) + scopes.length - matched;
    return { endpoint, priority, weight: workload?.capacity ?? 1, strictMatch: matched === scopes.length };
  });
  const kept = loadBalancing?.mode === 'strict' && clientNode !== undefined ? ranked.filter((r) => r.strictMatch) : ranked;
  return kept.map(({ endpoint, priority, weight }) => ({ endpoint, priority, weight }));
}

/** Whether a workload shares a scope with a client on node `clientNode` of the agent's cluster and network. */
function sameScope(snapshot: MeshSnapshot, scope: LocalityScope, clientNode: string, workload: Workload | undefined, tier: ClusterTier): boolean {
  if (scope === 'cluster') return tier === ClusterTier.OwnCluster;
  if (scope === 'network') return tier <= ClusterTier.OwnNetwork;
  const a = clientNode;
  const b = workload?.node;
  if (scope === 'node') return a === b;
  const label = scope === 'region' ? REGION_LABEL : scope === 'zone' ? ZONE_LABEL : SUBZONE_LABEL;
  // As ztunnel compares localities: one nobody states (no node, no label) is the empty string on both sides.
  const of = (node: string | undefined): string => (node === undefined ? undefined : snapshot.nodes.get(node)?.labels[label]) ?? '';
  return of(a) === of(b);
}

/**
 * The best-ranked of `ranked`: the list a client picks one entry from, uniformly. Each endpoint is
 * listed in proportion to its weight (once each when all weights are equal, as they are unless istiod
 * sends capacities), so that the uniform pick is ztunnel's choice weighted by capacity; weight 0 is
 * never picked, and a level whose weights are all 0 has nothing to pick, as in ztunnel.
 */
export function bestRanked<E>(ranked: readonly RankedEndpoint<E>[]): E[] {
  const best = Math.min(...ranked.map((r) => r.priority));
  const level = ranked.filter((r) => r.priority === best);
  const first = level[0]?.weight ?? 1;
  if (first > 0 && level.every((r) => r.weight === first)) return level.map((r) => r.endpoint);
  const positive = level.filter((r) => r.weight > 0).map((r) => r.weight);
  if (positive.length === 0) return [];
  const unit = positive.reduce(gcd);
  const total = positive.reduce((sum, w) => sum + w / unit, 0);
  // Large, coprime capacities are scaled down, keeping every positive weight at least one entry.
  const scale = total > MAX_WEIGHTED_ENTRIES ? MAX_WEIGHTED_ENTRIES / total : 1;
  return level.flatMap((r) => (r.weight === 0 ? [] : Array<E>(Math.max(1, Math.round((r.weight / unit) * scale))).fill(r.endpoint)));
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

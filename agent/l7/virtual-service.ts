// Which VirtualService decides for a mesh host, as istiod picks one for a client: only VirtualServices
// bound to the mesh and exported to the client's namespace count; the most specific host wins (exact
// before wildcard); among equals, the client's private ones, then ones exported to it by name, then
// public ones, and within each the oldest (configuration order stands in for creation time).
// Istio merges VirtualServices for one host only on gateways; for the mesh the others are shadowed
// (istioctl analyze reports IST0109), and this module names them so the agent can say so.

import type { VirtualServiceObject } from '../config/istio-networking.js';
import type { MeshSnapshot } from '../state/model.js';
import { hostMatches, hostSpecificity, resolveHost, visibilityRank, visibleTo } from './hosts.js';

export interface VirtualServiceChoice {
  readonly virtualService: VirtualServiceObject;
  /** The host of the VirtualService that matched, resolved (FQDN or wildcard). */
  readonly matchedHost: string;
  /** Other VirtualServices that claim the same host as specifically and lost. */
  readonly shadowed: readonly VirtualServiceObject[];
}

/** `namespace/name`, as logs, metrics and config_dump name a VirtualService. */
export function virtualServiceName(vs: VirtualServiceObject): string {
  return `${vs.metadata.namespace}/${vs.metadata.name}`;
}

export function appliesToMesh(vs: VirtualServiceObject): boolean {
  return vs.spec.gateways.length === 0 || vs.spec.gateways.includes('mesh');
}

/** The VirtualService for `host` (an FQDN) as seen from `clientNamespace`, or undefined when none applies. */
export function selectVirtualService(snapshot: MeshSnapshot, host: string, clientNamespace: string): VirtualServiceChoice | undefined {
  const target = host.toLowerCase();
  const candidates: { vs: VirtualServiceObject; matchedHost: string; specificity: number; rank: number; order: number }[] = [];
  meshVirtualServices(snapshot).forEach(({ vs, hosts }, order) => {
    const ns = vs.metadata.namespace;
    if (!visibleTo(vs.spec.exportTo, ns, clientNamespace)) return;
    let best: string | undefined;
    for (const resolved of hosts) {
      if (hostMatches(resolved, target) && (best === undefined || hostSpecificity(resolved) > hostSpecificity(best))) best = resolved;
    }
    if (best === undefined) return;
    candidates.push({ vs, matchedHost: best, specificity: hostSpecificity(best), rank: visibilityRank(vs.spec.exportTo, ns, clientNamespace), order });
  });
  if (candidates.length === 0) return undefined;
  candidates.sort((a, b) => b.specificity - a.specificity || a.rank - b.rank || a.order - b.order);
  const winner = candidates[0]!;
  const shadowed = candidates.filter((c) => c !== winner && c.specificity === winner.specificity).map((c) => c.vs);
  return { virtualService: winner.vs, matchedHost: winner.matchedHost, shadowed };
}

// Snapshots are immutable, so the mesh-bound VirtualServices and their resolved hosts are computed once
// per snapshot rather than once per request.
const meshIndex = new WeakMap<MeshSnapshot, readonly { vs: VirtualServiceObject; hosts: readonly string[] }[]>();

function meshVirtualServices(snapshot: MeshSnapshot): readonly { vs: VirtualServiceObject; hosts: readonly string[] }[] {
  let index = meshIndex.get(snapshot);
  if (!index) {
    // Routes translated from the Gateway API come after the user's own VirtualServices, so that on a host
    // both claim (which Istio advises against) the VirtualService keeps deciding, as it did before.
    index = [...snapshot.istio.virtualServices, ...snapshot.gatewayApi.virtualServices].map((vs) => ({
      vs,
      hosts: appliesToMesh(vs) ? vs.spec.hosts.map((h) => resolveHost(h, vs.metadata.namespace, snapshot.clusterDomain)) : [],
    }));
    meshIndex.set(snapshot, index);
  }
  return index;
}

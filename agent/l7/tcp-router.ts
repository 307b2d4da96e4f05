// TCP routing for ports that do not speak HTTP: the VirtualService's tcp[] routes, first match wins,
// destinations split by weight. With no VirtualService, or no tcp route that matches, the connection
// goes to the Service it was made to, as Istio's default TCP route does.

import type { MeshSnapshot } from '../state/model.js';
import { defaultDestination, pickWeighted, resolveDestination } from './destination.js';
import { type ConnectionAttributes, l4MatchApplies } from './match.js';
import { type Random, mathRandom } from './random.js';
import type { TcpRouteDecision } from './route-decision.js';
import { selectVirtualService, virtualServiceName } from './virtual-service.js';

export interface TcpConnectionAttributes extends ConnectionAttributes {
  /** The mesh host (FQDN) of the Service the connection was made to. */
  readonly host: string;
}

export function routeTcpConnection(snapshot: MeshSnapshot, conn: TcpConnectionAttributes, random: Random = mathRandom): TcpRouteDecision {
  const choice = selectVirtualService(snapshot, conn.host, conn.source.namespace);
  const vs = choice?.virtualService;
  for (const [routeIndex, route] of (vs?.spec.tcp ?? []).entries()) {
    const matchIndex = route.match.length === 0 ? -1 : route.match.findIndex((m) => l4MatchApplies(m, conn));
    if (route.match.length > 0 && matchIndex < 0) continue;
    const chosen = route.route[pickWeighted(route.route.map((d) => d.weight), random)]!;
    return {
      kind: 'forward',
      route: { virtualService: virtualServiceName(vs!), routeIndex, matchIndex },
      destination: resolveDestination(snapshot, chosen.destination, vs!.metadata.namespace, conn.port),
    };
  }
  return { kind: 'forward', route: {}, destination: defaultDestination(snapshot, conn.host, conn.port) };
}

// The Gateway API part of a snapshot: the routes and waypoint Gateways in force, their translation into
// the L7 route model against this snapshot's Services, and warnings for what does not bind (a parent
// that does not exist, a backend that cannot be used, a use-waypoint label naming no waypoint).

import type { ServiceLookup } from '../config/gateway-api/parent-status.js';
import { translateGatewayRoutes } from '../config/gateway-api/to-virtual-service.js';
import { USE_WAYPOINT_LABEL, USE_WAYPOINT_NAMESPACE_LABEL, WAYPOINT_GATEWAY_CLASS } from '../config/gateway-api/types.js';
import type { SourceLocation } from '../config/kubernetes.js';
import type { MeshObject } from '../config/objects.js';
import { type GatewayApiResources, type MeshService, type ObjectKey, kubernetesServiceHostname, serviceKey } from './model.js';
import { speaksHttp } from './protocol.js';

type Warn = (source: SourceLocation, kind: string, namespace: string, name: string, field: string | undefined, message: string) => void;

export function gatewayApiResources(
  objects: readonly MeshObject[],
  services: ReadonlyMap<ObjectKey, MeshService>,
  clusterDomain: string,
  warn: Warn,
): GatewayApiResources {
  const httpRoutes = objects.flatMap((o) => (o.kind === 'HTTPRoute' ? [o] : []));
  const grpcRoutes = objects.flatMap((o) => (o.kind === 'GRPCRoute' ? [o] : []));
  const tcpRoutes = objects.flatMap((o) => (o.kind === 'TCPRoute' ? [o] : []));
  const waypoints = objects.flatMap((o) => (o.kind === 'Gateway' && o.spec.gatewayClassName === WAYPOINT_GATEWAY_CLASS ? [o] : []));
  const lookup: ServiceLookup = (namespace, name) => services.get(serviceKey(namespace, kubernetesServiceHostname(name, namespace, clusterDomain)));
  const { virtualServices, statuses } = translateGatewayRoutes([...grpcRoutes, ...httpRoutes, ...tcpRoutes], lookup, clusterDomain);

  for (const { route, parents } of statuses) {
    const { namespace, name } = route.metadata;
    for (const { parentRef, conditions } of parents) {
      for (const c of conditions) {
        if (c.status === 'False') warn(route.source, route.kind, namespace, name, 'spec.parentRefs', `parent Service ${parentRef.namespace}/${parentRef.name}: ${c.type} is False (${c.reason}): ${c.message}`);
      }
    }
    // A route bound to a port Ambit does not parse as HTTP never sees a request there.
    if (route.kind === 'TCPRoute') continue;
    for (const parentRef of route.spec.parentRefs) {
      const svc = lookup(parentRef.namespace, parentRef.name);
      const ports = svc?.ports.filter((p) => parentRef.port === undefined || p.port === parentRef.port) ?? [];
      if (svc && ports.length > 0 && !ports.some((p) => speaksHttp(p.protocol))) {
        warn(route.source, route.kind, namespace, name, 'spec.parentRefs', `Service ${parentRef.namespace}/${parentRef.name} has no port that speaks HTTP (name it http-*, grpc-* or set appProtocol), so this route applies to no request`);
      }
    }
  }

  // istio.io/use-waypoint asks for L7 processing through a waypoint Gateway; Ambit's agents give it with
  // no hop, so a label that names no such Gateway is only worth a warning.
  const known = new Set(waypoints.map((g) => `${g.metadata.namespace}/${g.metadata.name}`));
  const check = (labels: Readonly<Record<string, string>>, ownNamespace: string, source: SourceLocation | undefined, kind: string, name: string): void => {
    const value = labels[USE_WAYPOINT_LABEL];
    if (value === undefined || value === '#none' || value === 'none' || !source) return;
    const ref = value.includes('/') ? value : `${labels[USE_WAYPOINT_NAMESPACE_LABEL] ?? ownNamespace}/${value}`;
    if (!known.has(ref)) warn(source, kind, kind === 'Namespace' ? '' : ownNamespace, name, `metadata.labels["${USE_WAYPOINT_LABEL}"]`, `names waypoint ${ref}, but no Gateway of class ${WAYPOINT_GATEWAY_CLASS} has that name; Ambit applies L7 here anyway (no waypoint hop)`);
  };
  for (const svc of services.values()) check(svc.labels, svc.namespace, svc.source, 'Service', svc.name);
  for (const o of objects) if (o.kind === 'Namespace') check(o.metadata.labels, o.metadata.name, o.source, 'Namespace', o.metadata.name);

  return { httpRoutes, grpcRoutes, tcpRoutes, waypoints, virtualServices, statuses };
}

// Where a captured TCP connection to a Service VIP goes when a VirtualService has tcp[] routes for that
// Service: the weighted route pick (routeTcpConnection), then an endpoint of the chosen (host, subset,
// port) by its DestinationRule's balancer. Without tcp routes the caller keeps its L4 default.

import type { MeshService, MeshSnapshot, Workload } from '../../state/model.js';
import { type Random, mathRandom } from '../random.js';
import { routeTcpConnection } from '../tcp-router.js';
import type { UpstreamClusters } from '../upstream-cluster.js';
import { selectVirtualService } from '../virtual-service.js';
import type { CapturedAddress } from './http-destination.js';

export type TcpRouteTarget =
  | { readonly kind: 'workload'; readonly workload: Workload; readonly address: CapturedAddress; readonly service?: MeshService }
  | { readonly kind: 'refused'; readonly reason: string; readonly service?: MeshService };

/** undefined when no VirtualService routes this Service's TCP: the L4 default applies. */
export function tcpRouteTarget(
  snapshot: MeshSnapshot,
  clusters: UpstreamClusters,
  source: Workload,
  dst: CapturedAddress,
  random: Random = mathRandom,
): TcpRouteTarget | undefined {
  const service = snapshot.servicesByVip.get(dst.ip);
  if (!service) return undefined;
  const vs = selectVirtualService(snapshot, service.hostname, source.namespace)?.virtualService;
  if (!vs || vs.spec.tcp.length === 0) return undefined;
  const decision = routeTcpConnection(
    snapshot,
    { host: service.hostname, port: dst.port, destinationIp: dst.ip, source: { namespace: source.namespace, labels: source.labels, ...(source.ips[0] ? { ip: source.ips[0] } : {}) } },
    random,
  );
  const cluster = clusters.resolve(snapshot, decision.destination, source);
  if (!cluster.ok) return { kind: 'refused', reason: cluster.message, service };
  const choice = cluster.cluster.choose();
  if (choice.kind === 'noHealthyUpstream') return { kind: 'refused', reason: choice.message, service };
  if (choice.kind === 'passthrough') return undefined;
  const workload = snapshot.workloads.get(choice.endpoint.workload);
  if (!workload) return { kind: 'refused', reason: `endpoint ${choice.endpoint.key} of ${cluster.cluster.name} is gone`, service };
  const routed = decision.destination.service ?? service;
  return { kind: 'workload', workload, address: { ip: choice.endpoint.ip, port: choice.endpoint.port }, service: routed };
}

// Whether a captured connection's original destination speaks HTTP, by Istio's protocol rules: a
// Service VIP whose port's name or appProtocol says http, http2, grpc or h2c, or a pod IP whose
// container port with that number is named so. Such connections go to the L7 outbound proxy.

import { type AppProtocol, portProtocol, speaksHttp } from '../../state/protocol.js';
import type { MeshService, MeshSnapshot, Workload } from '../../state/model.js';

export interface CapturedAddress {
  readonly ip: string;
  readonly port: number;
}

export type HttpDestination =
  /** A Service VIP and one of its HTTP ports: routed by VirtualService, balanced by DestinationRule. */
  | { readonly kind: 'service'; readonly service: MeshService; readonly port: number; readonly protocol: AppProtocol }
  /** A pod's own address (no Service, so no routing): the request goes to that pod only. */
  | { readonly kind: 'workload'; readonly workload: Workload; readonly address: CapturedAddress; readonly protocol: AppProtocol };

export function httpDestinationOf(snapshot: MeshSnapshot, dst: CapturedAddress): HttpDestination | undefined {
  const service = snapshot.servicesByVip.get(dst.ip);
  if (service) {
    const port = service.ports.find((p) => p.port === dst.port);
    return port && speaksHttp(port.protocol) ? { kind: 'service', service, port: dst.port, protocol: port.protocol } : undefined;
  }
  const workload = snapshot.workloadsByIp.get(dst.ip);
  if (!workload) return undefined;
  for (const [name, port] of workload.namedPorts) {
    if (port !== dst.port) continue;
    const protocol = portProtocol({ name, protocol: 'TCP' });
    if (speaksHttp(protocol)) return { kind: 'workload', workload, address: dst, protocol };
  }
  return undefined;
}

/** Ports whose requests go upstream as HTTP/2 whatever the client spoke (Envoy's http2_protocol_options). */
export function upstreamSpeaksH2(protocol: AppProtocol): boolean {
  return protocol === 'HTTP2' || protocol === 'GRPC';
}

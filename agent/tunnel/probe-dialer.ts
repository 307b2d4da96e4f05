// How the agent reaches an endpoint to health-check it (l7/proxy/health-probe.ts explains why): an
// enrolled pod on another node through an HBONE tunnel opened as the source workload (its identity,
// its address, its baggage), exactly as that workload's requests travel; a pod of this node, or one
// outside the mesh, with a plain connection from the agent, whose sockets are never captured.

import type { ProbeDialer } from '../l7/proxy/health-probe.js';
import type { HbonePool } from './hbone/pool.js';
import { baggageOf, connectPlain } from './outbound.js';

export interface ProbeDialerOptions {
  readonly node: string;
  readonly hbone: HbonePool;
  readonly clusterId: string;
}

export function probeDialer(options: ProbeDialerOptions): ProbeDialer {
  return async (source, endpoint, address) => {
    if (!endpoint.enrollment.enrolled || endpoint.node === options.node) return connectPlain(address);
    const sourceIp = source.ips[0];
    if (sourceIp === undefined) return `probe source ${source.key} has no IP to send the probe from`;
    const tunnel = await options.hbone.open({
      source: { identity: source.identity, ip: sourceIp },
      bindSource: true,
      destination: { ip: address.ip },
      expectedIdentities: [endpoint.identity],
      authority: address,
      baggage: baggageOf(source, options.clusterId),
    });
    return tunnel.ok ? tunnel.value : `HBONE to ${address.ip}:${address.port} as ${source.identity}: ${tunnel.error.message}`;
  };
}

// How the agent reaches an endpoint to health-check it (l7/proxy/health-probe.ts explains why): the
// endpoint's outbound plan with the probe purpose (outbound-plan.ts), so an enrolled pod on another node
// is reached through an HBONE tunnel opened as the source workload (its identity, its address, its
// baggage), exactly as that workload's requests travel; a pod of this node, or one outside the mesh,
// with a plain connection from the agent, whose sockets are never captured.

import type { Socket } from 'node:net';
import type { ProbeDialer } from '../l7/proxy/health-probe.js';
import type { WorkloadStore } from '../state/store.js';
import type { Address } from './destination.js';
import { formatAuthority } from './hbone/connect-headers.js';
import type { HbonePool } from './hbone/pool.js';
import { OutboundOpener } from './outbound-open.js';
import { planEndpoint } from './outbound-plan.js';

export interface ProbeDialerOptions {
  readonly node: string;
  readonly store: WorkloadStore;
  readonly hbone: HbonePool;
  readonly clusterId: string;
  /** Never used by a probe's plan (probes leave from the agent's address or through HBONE); the opener needs one. */
  readonly connectAsClient: (sourceIp: string, destination: Address) => Promise<Socket | string>;
}

export function probeDialer(options: ProbeDialerOptions): ProbeDialer {
  const opener = new OutboundOpener({ hbone: options.hbone, connectAsClient: options.connectAsClient });
  return async (source, endpoint, address) => {
    const snapshot = options.store.current;
    if (!snapshot) return 'no configuration loaded';
    const plan = planEndpoint(snapshot, { workload: source, ip: source.ips[0] ?? '', port: 0 }, { workload: endpoint, address }, { node: options.node, clusterId: options.clusterId, purpose: 'probe' });
    if (plan.transport === 'refused') return `probe of ${formatAuthority(address)}: ${plan.reason}`;
    const opened = await opener.open(plan);
    if (opened.ok) return opened.stream;
    if (plan.transport === 'double-hbone') return `double HBONE to ${plan.authority} through ${formatAuthority(plan.gateway.address)} as ${source.identity}: ${opened.reason}`;
    return plan.transport === 'hbone' ? `HBONE to ${formatAuthority(address)} as ${source.identity}: ${opened.reason}` : opened.reason;
  };
}

// Where an outbound connection goes: a Service VIP becomes one of its endpoints, a pod IP is that
// workload, anything else leaves the mesh as plain TCP (ztunnel's passthrough).

import { bestRanked, rankEndpoints } from '../state/locality.js';
import type { MeshService, MeshSnapshot, SpiffeId, Workload } from '../state/model.js';

export interface Address {
  readonly ip: string;
  readonly port: number;
}

export type OutboundTarget =
  | { readonly kind: 'workload'; readonly workload: Workload; readonly address: Address; readonly service?: MeshService }
  | { readonly kind: 'passthrough'; readonly address: Address }
  /** An endpoint known by name: the connection's path resolves it, then carries it as to `workload` (or outside the mesh). */
  | { readonly kind: 'dns'; readonly hostname: string; readonly port: number; readonly workload?: Workload; readonly service: MeshService }
  | { readonly kind: 'refused'; readonly reason: string; readonly service?: MeshService };

/** Ports a mesh destination may never be asked for: the agent's own (ztunnel's "illegal ports"). */
export const AGENT_PORTS: ReadonlySet<number> = new Set([15001, 15006, 15008, 15080]);

/**
 * Where a connection to `dst` goes. A Service VIP picks one of its ready endpoints, among those its
 * locality policy prefers for a client on `clientNode` (this agent's node).
 */
export function resolveOutbound(snapshot: MeshSnapshot, dst: Address, clientNode?: string, pick: (n: number) => number = (n) => Math.floor(Math.random() * n)): OutboundTarget {
  const service = snapshot.servicesByVip.get(dst.ip);
  if (service) {
    if (!service.ports.some((p) => p.port === dst.port)) return { kind: 'refused', reason: `service ${service.hostname} has no port ${dst.port}`, service };
    // A ServiceEntry with resolution NONE names addresses, not endpoints: the connection goes where it was dialled.
    if (service.entry?.resolution === 'NONE') return { kind: 'passthrough', address: dst };
    const serving = service.endpoints.filter((e) => e.ports.has(dst.port));
    const named = (service.hostnameEndpoints ?? []).filter((e) => e.ports.has(dst.port));
    if (serving.length === 0 && named.length === 0) return { kind: 'refused', reason: `service ${service.hostname} has no ready endpoint for port ${dst.port}`, service };
    // Endpoints known by name are picked alike with those of an address (ranking by locality needs an address).
    const ready = serving.length === 0 ? [] : bestRanked(rankEndpoints(snapshot, service.loadBalancing, serving, clientNode));
    if (ready.length + named.length === 0) return { kind: 'refused', reason: `service ${service.hostname} has no ready endpoint on node ${clientNode} for port ${dst.port} (internalTrafficPolicy: Local)`, service };
    const index = pick(ready.length + named.length);
    const endpoint = ready[index];
    if (!endpoint) {
      const byName = named[index - ready.length]!;
      const workload = byName.workload === undefined ? undefined : snapshot.workloads.get(byName.workload);
      return { kind: 'dns', hostname: byName.hostname, port: byName.ports.get(dst.port)!, ...(workload ? { workload } : {}), service };
    }
    const workload = snapshot.workloads.get(endpoint.workload);
    if (!workload) return { kind: 'refused', reason: `endpoint ${endpoint.workload} of ${service.hostname} is gone`, service };
    return { kind: 'workload', workload, address: { ip: endpoint.ip, port: endpoint.ports.get(dst.port)! }, service };
  }
  const workload = snapshot.workloadsByIp.get(dst.ip);
  if (workload) {
    if (AGENT_PORTS.has(dst.port)) return { kind: 'refused', reason: `port ${dst.port} of ${workload.key} belongs to the mesh agent` };
    return { kind: 'workload', workload, address: dst };
  }
  return { kind: 'passthrough', address: dst };
}

/**
 * The identities the HBONE server of an upstream may present: the workload's own, or one the Service it
 * was reached through names in its subject_alt_names (ztunnel's workload_and_services_san).
 */
export function serverIdentities(workload: Workload, service: MeshService | undefined): SpiffeId[] {
  return [workload.identity, ...(service?.subjectAltNames ?? [])];
}

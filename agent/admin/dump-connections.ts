// The connections this node relays, per local workload, as ztunnel's in-pod admin handler dumps them
// (`workloadState`: src/inpod/admin.rs over src/proxy/connection_manager.rs), which `istioctl
// ztunnel-config connections` prints.

import type { MeshSnapshot } from '../state/model.js';
import { formatAuthority } from '../tunnel/hbone/connect-headers.js';
import { HBONE_PORT } from '../tunnel/hbone/settings.js';
import { type LiveConnection, type LocalWorkload, addressHost } from '../tunnel/live-connections.js';

/** One relayed connection in ztunnel's connection-manager shape, plus what Ambit also knows. */
export interface ConnectionDump {
  readonly src: string;
  /** Outbound: where the pod connected. Inbound: the hostname of the Service the peer asked for, when it said (HBONE). */
  readonly originalDst: string | null;
  /** Where bytes go: an HBONE peer's `<pod IP>:15008` outbound, the pod's own address inbound. */
  readonly actualDst: string;
  /** Inbound, as ztunnel: HBONE when the peer proved an identity, TCP otherwise. */
  readonly protocol: 'HBONE' | 'DOUBLEHBONE' | 'TCP';
  readonly transport: LiveConnection['transport'];
  readonly srcIdentity?: string;
  readonly dstIdentity?: string;
  readonly startedAt: string;
}

/** A workload this agent proxies for, keyed by its pod uid in `workloadState` (as ztunnel's in-pod handler). */
export interface WorkloadStateDump {
  readonly state: 'Up';
  readonly connections: { readonly inbound: readonly ConnectionDump[]; readonly outbound: readonly ConnectionDump[] };
  readonly info: { readonly name: string; readonly namespace: string; readonly trustDomain: string; readonly serviceAccount: string };
}

interface MutableState {
  readonly state: 'Up';
  readonly connections: { inbound: ConnectionDump[]; outbound: ConnectionDump[] };
  readonly info: WorkloadStateDump['info'];
}

/**
 * Every enrolled workload on this node, with the connections relayed for it: outbound ones under the
 * source pod, inbound ones under the destination pod. A connection still draining after its pod left
 * the snapshot stays under that pod, as it was when the connection opened; one whose pod was never
 * known is listed under its address, so nothing open is hidden.
 */
export function workloadStateDump(snapshot: MeshSnapshot, node: string, connections: readonly LiveConnection[]): Record<string, WorkloadStateDump> {
  const state: Record<string, MutableState> = {};
  const entryFor = (w: LocalWorkload | undefined, addr: string): MutableState => {
    const host = addressHost(addr) ?? addr;
    const key = w ? w.uid : `unknown/${host}`;
    state[key] ??= {
      state: 'Up',
      connections: { inbound: [], outbound: [] },
      info: w
        ? { name: w.name, namespace: w.namespace, trustDomain: snapshot.trustDomain, serviceAccount: w.serviceAccount }
        : { name: host, namespace: '', trustDomain: '', serviceAccount: '' },
    };
    return state[key];
  };
  for (const w of snapshot.workloads.values()) if (w.node === node && w.enrollment.enrolled) entryFor(w, w.ips[0] ?? '');
  for (const c of connections) {
    const localAddr = c.direction === 'outbound' ? c.src : c.dst;
    const host = addressHost(localAddr);
    const entry = entryFor(c.local ?? (host === undefined ? undefined : snapshot.workloadsByIp.get(host)), localAddr);
    const extra = {
      transport: c.transport,
      ...(c.srcIdentity !== undefined ? { srcIdentity: c.srcIdentity } : {}),
      ...(c.dstIdentity !== undefined ? { dstIdentity: c.dstIdentity } : {}),
      startedAt: c.startedAt.toISOString(),
    } as const;
    if (c.direction === 'outbound') {
      const hbone = c.transport === 'hbone';
      const peer = hbone ? addressHost(c.dst) : undefined;
      const actualDst = peer !== undefined ? formatAuthority({ ip: peer, port: HBONE_PORT }) : c.dst;
      // Double HBONE's dst is already its east-west gateway's HBONE address (ztunnel's DOUBLEHBONE).
      const protocol = c.transport === 'double-hbone' ? 'DOUBLEHBONE' : hbone ? 'HBONE' : 'TCP';
      entry.connections.outbound.push({ src: c.src, originalDst: c.originalDst ?? c.dst, actualDst, protocol, ...extra });
    } else {
      entry.connections.inbound.push({ src: c.src, originalDst: c.originalDst ?? null, actualDst: c.dst, protocol: c.srcIdentity ? 'HBONE' : 'TCP', ...extra });
    }
  }
  return state;
}

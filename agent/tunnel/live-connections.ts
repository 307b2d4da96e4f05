// Every relayed connection this agent holds open, for two readers: policy, which must close a live
// connection as soon as a new snapshot no longer admits it (Istio's AuthorizationPolicy applies to
// connections already open), and the admin server, which lists them (`ambit zc connections`).

import { isIP } from 'node:net';
import type { MeshSnapshot, Workload } from '../state/model.js';
import type { WorkloadStore } from '../state/store.js';
import type { Logger } from '../telemetry/log.js';
import { parseAuthority } from './hbone/connect-headers.js';
import { type InboundAttempt, admitInbound } from './inbound-admission.js';

/** The pod a connection is relayed for, as it was when the connection opened. */
export type LocalWorkload = Pick<Workload, 'uid' | 'name' | 'namespace' | 'serviceAccount'>;

export interface LiveConnection {
  readonly direction: 'inbound' | 'outbound';
  readonly src: string;
  /** Where the connection is carried: the pod's address and port. */
  readonly dst: string;
  /**
   * Outbound: what the client dialled, when it differs from `dst` (a Service VIP:port). Inbound: the
   * hostname of the Service the peer asked for (HBONE's `forwarded: host=`), as ztunnel's dest_service.
   */
  readonly originalDst?: string;
  readonly srcIdentity?: string;
  readonly dstIdentity?: string;
  /** `hbone`, `plaintext`, `same-node` or `passthrough`; `http` when the L7 proxy serves it request by request. */
  readonly transport: 'hbone' | 'double-hbone' | 'plaintext' | 'same-node' | 'passthrough' | 'http';
  readonly startedAt: Date;
  /**
   * The pod of this node the connection is relayed for (the source outbound, the destination
   * inbound). add() fills it from the snapshot when the caller does not, so that a connection still
   * draining after its pod left the snapshot is still shown under that pod.
   */
  readonly local?: LocalWorkload;
}

interface Entry {
  readonly info: LiveConnection;
  /** Checked again on every new snapshot; absent for connections no inbound policy governs. */
  readonly admission?: InboundAttempt;
  readonly close: (reason: string) => void;
}

export class LiveConnections {
  readonly #entries = new Set<Entry>();
  readonly #onEmpty: (() => void)[] = [];
  readonly #log: Logger;
  readonly #store: WorkloadStore;
  readonly #unsubscribe: () => void;

  constructor(store: WorkloadStore, log: Logger) {
    this.#log = log;
    this.#store = store;
    this.#unsubscribe = store.subscribe((next) => this.#recheck(next));
  }

  /** Tracks a connection until the returned function is called (when its relay ends). */
  add(info: LiveConnection, close: (reason: string) => void, admission?: InboundAttempt): () => void {
    const local = info.local ?? localWorkload(this.#store.current, info);
    const entry: Entry = { info: local ? { ...info, local } : info, close, ...(admission ? { admission } : {}) };
    this.#entries.add(entry);
    return () => {
      this.#entries.delete(entry);
      if (this.#entries.size === 0) this.#onEmpty.splice(0).forEach((resolve) => resolve());
    };
  }

  /** Resolves when no connection is left, or after `deadlineMs`, whichever comes first. */
  drained(deadlineMs: number): Promise<void> {
    if (this.#entries.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, deadlineMs);
      this.#onEmpty.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Closes every connection still open (the end of a drain). */
  closeAll(reason: string): void {
    for (const entry of [...this.#entries]) entry.close(reason);
  }

  list(): LiveConnection[] {
    return [...this.#entries].map((e) => e.info);
  }

  get size(): number {
    return this.#entries.size;
  }

  close(): void {
    this.#unsubscribe();
  }

  #recheck(snapshot: MeshSnapshot): void {
    for (const entry of [...this.#entries]) {
      if (!entry.admission) continue;
      const verdict = admitInbound(snapshot, entry.admission);
      if (verdict.ok) continue;
      this.#entries.delete(entry);
      this.#log.info({ src: entry.info.src, dst: entry.info.dst, direction: entry.info.direction }, `closing a live connection: ${verdict.reason}`);
      entry.close(verdict.reason);
    }
  }
}

/** The workload at the connection's local end (the source outbound, the destination inbound), if known. */
function localWorkload(snapshot: MeshSnapshot | undefined, info: LiveConnection): LocalWorkload | undefined {
  const host = addressHost(info.direction === 'outbound' ? info.src : info.dst);
  const w = host === undefined ? undefined : snapshot?.workloadsByIp.get(host);
  return w ? { uid: w.uid, name: w.name, namespace: w.namespace, serviceAccount: w.serviceAccount } : undefined;
}

/** The IP of `ip:port`, `[ipv6]:port` or an unbracketed `ipv6:port`. */
export function addressHost(addr: string): string | undefined {
  const authority = parseAuthority(addr);
  if (authority) return authority.ip;
  const host = addr.slice(0, addr.lastIndexOf(':'));
  return isIP(host) !== 0 ? host : undefined;
}

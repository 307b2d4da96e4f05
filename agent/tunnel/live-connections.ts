// Every relayed connection this agent holds open, for two readers: policy, which must close a live
// connection as soon as a new snapshot no longer admits it (Istio's AuthorizationPolicy applies to
// connections already open), and the admin server, which lists them (`ambit zc connections`).

import type { MeshSnapshot } from '../state/model.js';
import type { WorkloadStore } from '../state/store.js';
import type { Logger } from '../telemetry/log.js';
import { type InboundAttempt, admitInbound } from './inbound-admission.js';

export interface LiveConnection {
  readonly direction: 'inbound' | 'outbound';
  readonly src: string;
  /** Where the connection is carried: the pod's address and port. */
  readonly dst: string;
  /** What the client dialled, when it differs from `dst` (a Service VIP:port). */
  readonly originalDst?: string;
  readonly srcIdentity?: string;
  readonly dstIdentity?: string;
  /** `hbone`, `plaintext`, `same-node` or `passthrough`; `http` when the L7 proxy serves it request by request. */
  readonly transport: 'hbone' | 'plaintext' | 'same-node' | 'passthrough' | 'http';
  readonly startedAt: Date;
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
  readonly #unsubscribe: () => void;

  constructor(store: WorkloadStore, log: Logger) {
    this.#log = log;
    this.#unsubscribe = store.subscribe((next) => this.#recheck(next));
  }

  /** Tracks a connection until the returned function is called (when its relay ends). */
  add(info: LiveConnection, close: (reason: string) => void, admission?: InboundAttempt): () => void {
    const entry: Entry = { info, close, ...(admission ? { admission } : {}) };
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

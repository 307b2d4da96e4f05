// Which TCP metric series name which workloads, so that a workload's series leave the registry when
// the workload leaves the mesh. ztunnel keeps them forever (istio/ztunnel#1719): under pod churn every
// pod name ever seen stays in /metrics, and Prometheus scrapes grow without bound.

import type { MeshSnapshot, ObjectKey, Workload } from '../state/model.js';
import type { TcpLabels } from './metrics.js';

/** A workload a series names, as it looked when the series was written. */
export interface SeriesOwner {
  readonly key: ObjectKey;
  /** What of the workload went into the labels; a different signature means the series is stale. */
  readonly signature: string;
}

interface Series<L> {
  readonly labels: L;
  readonly owners: readonly SeriesOwner[];
  /** Connections still open under these labels: their close will count again, so removal waits. */
  open: number;
  stale: boolean;
}

/** Label sets of one family of metrics: TCP by default, HTTP requests' in agent/telemetry/requests.ts. */
export class WorkloadSeries<L extends Readonly<Record<string, string>> = TcpLabels> {
  readonly #series = new Map<string, Series<L>>();
  /** Ids of label objects already seen: callers that reuse one frozen labels object skip the sort and join. */
  readonly #ids = new WeakMap<L, string>();

  /** `remove` drops one label set from every metric of the family. */
  constructor(private readonly remove: (labels: L) => void) {}

  /**
   * Notes that `labels` were written for `owners`. For a connection still open, pass `open`: the
   * returned function must be called when it closes (after its last count), and until then the series
   * stays even if its workloads go.
   */
  record(labels: L, owners: readonly SeriesOwner[], open: boolean): () => void {
    if (owners.length === 0) return () => {};
    let id = this.#ids.get(labels);
    if (id === undefined) {
      id = seriesId(labels);
      if (Object.isFrozen(labels)) this.#ids.set(labels, id);
    }
    let series = this.#series.get(id);
    if (!series) {
      series = { labels, owners, open: 0, stale: false };
      this.#series.set(id, series);
    }
    // Written from a snapshot that has these workloads: current again.
    series.stale = false;
    if (!open) return () => {};
    series.open++;
    const held = series;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      held.open--;
      if (held.stale && held.open === 0) this.#drop(id, held);
    };
  }

  /** Marks the series whose workloads are gone or changed in `snapshot`, and removes those no connection holds. */
  sweep(snapshot: MeshSnapshot, signatureOf: (w: Workload) => string): number {
    let removed = 0;
    for (const [id, series] of this.#series) {
      if (!series.stale) {
        series.stale = series.owners.some((owner) => {
          const now = snapshot.workloads.get(owner.key);
          return now === undefined || signatureOf(now) !== owner.signature;
        });
      }
      if (series.stale && series.open === 0) {
        this.#drop(id, series);
        removed++;
      }
    }
    return removed;
  }

  /** How many label sets are tracked (for tests and debugging). */
  get size(): number {
    return this.#series.size;
  }

  #drop(id: string, series: Series<L>): void {
    if (this.#series.get(id) !== series) return;
    this.#series.delete(id);
    this.remove(series.labels);
  }
}

/** One string per label set: equal label sets give equal ids, whatever their key order. */
export function seriesId(labels: Readonly<Record<string, string>>): string {
  // Label values never hold NUL; a fixed key order makes equal label sets equal ids.
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join('\0');
}

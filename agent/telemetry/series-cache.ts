// Label sets of Istio's metrics (and the access log's per-flow loggers), built once per distinct
// combination and reused: building the 20-odd labels, their owners and their series id costs more than
// the metric updates themselves (bench/README.md), while connections and requests repeat a handful of
// combinations. Keys name workloads and Services by object identity: a changed one is a new object in a
// new snapshot, and the owners clear their cache on every snapshot anyway.

import type { ConnectionDescription } from './connections.js';
import type { SeriesOwner } from './workload-series.js';

/** A series as recorded: its frozen labels and the workloads they name. */
export interface CachedSeries<L> {
  readonly labels: L;
  readonly owners: readonly SeriesOwner[];
}

/**
 * How many distinct entries the cache holds before it starts over. Real meshes have far fewer live
 * combinations; the bound only stops a pathological spread.
 */
const LIMIT = 4096;

/** Workloads' and Services' numbers in keys, one per object for the whole process, so that one peersKey serves every cache. */
const objectIds = new WeakMap<object, number>();
let nextObjectId = 1;

export class SeriesCache<S> {
  readonly #entries = new Map<string, S>();

  /** The entry for `key`, built by `build` the first time. */
  get(key: string, build: () => S): S {
    let entry = this.#entries.get(key);
    if (entry === undefined) {
      if (this.#entries.size >= LIMIT) this.#entries.clear();
      entry = build();
      this.#entries.set(key, entry);
    }
    return entry;
  }

  clear(): void {
    this.#entries.clear();
  }
}

/** The part of a key that says who talked to whom, as the labels see it: the same string for every cache, so build it once per record. */
export function peersKey(c: ConnectionDescription): string {
  return `${c.direction} ${idOf(c.src.workload)} ${c.src.identity ?? ''} ${idOf(c.dst.service)} ${idOf(c.dst.workload)} ${c.dst.identity ?? ''} ${c.securityPolicy}`;
}

function idOf(o: object | undefined): number {
  if (!o) return 0;
  let id = objectIds.get(o);
  if (id === undefined) {
    id = nextObjectId++;
    objectIds.set(o, id);
  }
  return id;
}

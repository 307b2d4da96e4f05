// The workloads of each namespace indexed by label, so that matching every Service's selector against the
// pods costs the pods it selects rather than every pod of the mesh (2,000 Services over 10,000 pods took
// 20 million label comparisons; bench/scale-mesh.bench.ts).

import type { Labels } from '../config/kubernetes.js';
import type { Workload } from './model.js';

export class WorkloadLabelIndex {
  readonly #byNamespace = new Map<string, Workload[]>();
  readonly #byLabel = new Map<string, Map<string, Workload[]>>();

  constructor(workloads: Iterable<Workload>) {
    for (const w of workloads) {
      push(this.#byNamespace, w.namespace, w);
      let labels = this.#byLabel.get(w.namespace);
      if (!labels) this.#byLabel.set(w.namespace, (labels = new Map()));
      for (const [key, value] of Object.entries(w.labels)) push(labels, labelKey(key, value), w);
    }
  }

  /** The workloads of `namespace` whose labels hold every pair of `selector`, in the order they were given. */
  select(namespace: string, selector: Labels): Workload[] {
    const pairs = Object.entries(selector);
    if (pairs.length === 0) return this.#byNamespace.get(namespace) ?? [];
    const labels = this.#byLabel.get(namespace);
    // The narrowest pair's list, filtered by the others (Kubernetes matchLabels: all must hold).
    let narrowest: Workload[] | undefined;
    for (const [key, value] of pairs) {
      const list = labels?.get(labelKey(key, value));
      if (!list) return [];
      if (!narrowest || list.length < narrowest.length) narrowest = list;
    }
    return narrowest!.filter((w) => pairs.every(([key, value]) => w.labels[key] === value));
  }
}

const labelKey = (key: string, value: string): string => `${key}\u0000${value}`;

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

// A workload's canonical service and revision, as Istio derives them from pod labels (falling back to
// the workload name); metrics, access logs and /config_dump all name workloads this way.

import type { Workload } from './model.js';

export function canonicalName(w: Workload): string {
  return w.labels['service.istio.io/canonical-name'] ?? w.labels['app.kubernetes.io/name'] ?? w.labels['app'] ?? w.workloadName;
}

export function canonicalRevision(w: Workload): string {
  return w.labels['service.istio.io/canonical-revision'] ?? w.labels['app.kubernetes.io/version'] ?? w.labels['version'] ?? 'latest';
}

/** A workload's canonical names and namespace together, as a span or a record names the workload. */
export interface CanonicalWorkload {
  readonly canonicalService: string;
  readonly namespace: string;
  readonly canonicalRevision: string;
}

// Workloads belong to immutable snapshots, so their canonical names are derived once per object: the
// request path asks on every request, and label objects come in as many shapes as pods have label sets.
const canonicalWorkloads = new WeakMap<Workload, CanonicalWorkload>();

export function canonicalWorkload(w: Workload): CanonicalWorkload {
  let c = canonicalWorkloads.get(w);
  if (!c) canonicalWorkloads.set(w, (c = { canonicalService: canonicalName(w), namespace: w.namespace, canonicalRevision: canonicalRevision(w) }));
  return c;
}

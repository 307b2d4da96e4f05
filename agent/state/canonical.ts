// A workload's canonical service and revision, as Istio derives them from pod labels (falling back to
// the workload name); metrics, access logs and /config_dump all name workloads this way.

import type { Workload } from './model.js';

export function canonicalName(w: Workload): string {
  return w.labels['service.istio.io/canonical-name'] ?? w.labels['app.kubernetes.io/name'] ?? w.labels['app'] ?? w.workloadName;
}

export function canonicalRevision(w: Workload): string {
  return w.labels['service.istio.io/canonical-revision'] ?? w.labels['app.kubernetes.io/version'] ?? w.labels['version'] ?? 'latest';
}

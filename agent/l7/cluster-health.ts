// Active health checks for the clusters this agent routes to: every endpoint of every cluster a request
// has used is checked as its pod's readinessProbe says (pods without one are not checked and count as
// healthy), on behalf of the cluster's probe source (UpstreamCluster.probeSource). Verdicts reach the
// balancers through isHealthy, keyed by endpoint (`ip:port`): an endpoint's health is its pod's, so an
// endpoint shared by several clusters (subsets, rules) is probed once. The targets follow snapshots and
// clusters; clusters that are gone, and sources that left, stop their probes.

import type { MeshSnapshot } from '../state/model.js';
import type { Logger } from '../telemetry/log.js';
import type { Clock } from './clock.js';
import { HealthChecker, type HealthEvent, healthCheckFromProbe } from './health-check.js';
import type { EndpointProbe, EndpointProbeTarget } from './proxy/health-probe.js';
import type { UpstreamCluster } from './upstream-cluster.js';

export interface ClusterHealthOptions {
  /** This agent's node: probe sources must be enrolled pods here. */
  readonly node: string;
  readonly clock: Clock;
  readonly probe: EndpointProbe;
  readonly log: Logger;
  /** What is in force now: the snapshot and the clusters requests have used. */
  readonly view: () => { readonly snapshot: MeshSnapshot | undefined; readonly clusters: readonly UpstreamCluster[] };
  /** Once per cluster holding the endpoint, for metrics. */
  readonly onTransition?: (cluster: string, event: HealthEvent) => void;
}

export interface HealthPlan {
  readonly targets: readonly EndpointProbeTarget[];
  /** Endpoint key → the clusters it belongs to, for logs and metrics. */
  readonly clustersOf: ReadonlyMap<string, readonly string[]>;
  /** readinessProbes that cannot be used (a named port the pod lacks), one message each. */
  readonly problems: readonly string[];
}

/** The endpoints to check: those of clusters with a probe source whose pod has a usable readinessProbe. */
export function planHealthChecks(snapshot: MeshSnapshot, clusters: readonly UpstreamCluster[]): HealthPlan {
  const targets = new Map<string, EndpointProbeTarget>();
  const clustersOf = new Map<string, string[]>();
  const problems = new Set<string>();
  for (const cluster of clusters) {
    const source = cluster.probeSource;
    if (!source) continue;
    for (const e of cluster.allEndpoints()) {
      const known = clustersOf.get(e.key);
      if (known) {
        if (!known.includes(cluster.name)) known.push(cluster.name);
        continue;
      }
      const endpoint = snapshot.workloads.get(e.workload);
      if (!endpoint?.readinessProbe) continue;
      const config = healthCheckFromProbe(endpoint);
      if (!config.ok) {
        problems.add(config.reason);
        continue;
      }
      clustersOf.set(e.key, [cluster.name]);
      targets.set(e.key, { key: e.key, ip: e.ip, spec: config.spec, source, endpoint });
    }
  }
  return { targets: [...targets.values()], clustersOf, problems: [...problems] };
}

export class ClusterHealthChecks {
  readonly #checker: HealthChecker<EndpointProbeTarget>;
  #clustersOf: ReadonlyMap<string, readonly string[]> = new Map();
  readonly #reported = new Set<string>();
  #pending = false;
  #stopped = false;

  constructor(private readonly options: ClusterHealthOptions) {
    this.#checker = new HealthChecker<EndpointProbeTarget>(options.probe, options.clock, (event) => this.#transition(event));
  }

  isHealthy(key: string): boolean {
    return this.#checker.isHealthy(key);
  }

  unhealthyEndpoints(): string[] {
    return this.#checker.unhealthyEndpoints();
  }

  /**
   * Something changed (a snapshot, a cluster's endpoints or probe source): recompute the targets once,
   * after the current turn, since a new snapshot updates many clusters one request at a time.
   */
  changed(): void {
    if (this.#pending || this.#stopped) return;
    this.#pending = true;
    setImmediate(() => {
      this.#pending = false;
      if (!this.#stopped) this.refresh();
    });
  }

  /** Recomputes the targets now. */
  refresh(): void {
    const { snapshot, clusters } = this.options.view();
    if (!snapshot) return;
    for (const cluster of clusters) {
      // The pod that probes must still be an enrolled pod here; its latest version carries its identity.
      const current = cluster.probeSource && snapshot.workloads.get(cluster.probeSource.key);
      cluster.probeSource = current && current.node === this.options.node && current.enrollment.enrolled ? current : undefined;
    }
    const plan = planHealthChecks(snapshot, clusters);
    for (const problem of plan.problems) {
      if (this.#reported.has(problem)) continue;
      this.#reported.add(problem);
      this.options.log.warn({ problem }, `health check not configured: ${problem}; the endpoint counts as healthy`);
    }
    this.#clustersOf = plan.clustersOf;
    this.#checker.setTargets(plan.targets);
  }

  stop(): void {
    this.#stopped = true;
    this.#checker.stop();
  }

  #transition(event: HealthEvent): void {
    const clusters = this.#clustersOf.get(event.endpoint) ?? [];
    const fields = { endpoint: event.endpoint, clusters, ...(event.reason ? { reason: event.reason } : {}) };
    if (event.kind === 'unhealthy') this.options.log.warn(fields, `health check: ${event.endpoint} unhealthy, out of the balancing set`);
    else this.options.log.info(fields, `health check: ${event.endpoint} healthy, back in the balancing set`);
    for (const cluster of clusters) this.options.onTransition?.(cluster, event);
  }
}

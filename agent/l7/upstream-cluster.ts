// An upstream cluster (Envoy's term): the endpoints of one (host, subset, port) with the traffic policy
// in force for them and the state that policy needs across requests: the balancer, in-flight counts,
// circuit-breaker counters and the outlier detector. `UpstreamClusters` keeps one per cluster across
// snapshots, so that a config reload keeps counts and ejections of endpoints that are still there.

import type { ClientTLSSettings, ConsistentHashKey } from '../config/istio-networking.js';
import { type ServiceLoadBalancing, rankEndpoints } from '../state/locality.js';
import type { MeshService, MeshSnapshot, ServiceEndpoint, Workload } from '../state/model.js';
import type { Clock } from './clock.js';
import { CircuitBreaker, connectionPoolLimits } from './connection-pool.js';
import { type IssuedCookie, requestHash } from './consistent-hash.js';
import { type ResolvedTrafficPolicy, type RuleClient, findDestinationRule, resolveTrafficPolicy, subsetEndpoints } from './destination-rule.js';
import { ActiveRequests, type LbEndpoint, type LoadBalancer, createLoadBalancer } from './load-balancer.js';
import { OutlierDetector, type OutlierEvent, type OutlierSettings, type UpstreamResult, outlierSettings } from './outlier-detection.js';
import { type Random, mathRandom } from './random.js';
import type { HttpRequestAttributes } from './request.js';
import type { DestinationTarget } from './route-decision.js';

/** Envoy's healthy_panic_threshold when no outlierDetection sets minHealthPercent. */
const ENVOY_DEFAULT_PANIC_PERCENT = 50;

export type EndpointChoice =
  | {
      readonly kind: 'endpoint';
      readonly endpoint: LbEndpoint;
      /** A consistent-hash cookie to set on the response (httpCookie with a ttl, cookie absent). */
      readonly setCookie?: IssuedCookie;
      /** True when too few endpoints were healthy and unhealthy ones were included (Envoy's panic mode). */
      readonly panic: boolean;
    }
  /** PASSTHROUGH: connect to the original destination address. */
  | { readonly kind: 'passthrough' }
  | { readonly kind: 'noHealthyUpstream'; readonly status: 503; readonly responseFlag: 'UH'; readonly message: string };

export type ClusterResolution =
  | { readonly ok: true; readonly cluster: UpstreamCluster }
  | { readonly ok: false; readonly status: 503; readonly responseFlag: 'NC'; readonly message: string };

/** What a cluster's balancer may read from the request: enough to compute a consistent-hash key. */
export type BalancingInput = Pick<HttpRequestAttributes, 'headers' | 'path' | 'source'>;

export function clusterName(destination: Pick<DestinationTarget, 'host' | 'subset' | 'port'>): string {
  // Envoy's outbound cluster naming, which istioctl users recognize.
  return `outbound|${destination.port}|${destination.subset ?? ''}|${destination.host}`;
}

/**
 * A Service's endpoints that serve `port`, keyed by pod IP and target port, each at the priority the
 * locality policy gives it for clients on `clientNode` (all 0 without one).
 */
export function lbEndpoints(snapshot: MeshSnapshot, locality: ServiceLoadBalancing | undefined, endpoints: readonly ServiceEndpoint[], servicePort: number, clientNode?: string): LbEndpoint[] {
  return rankEndpoints(snapshot, locality, endpoints, clientNode).flatMap(({ endpoint: e, priority }) => {
    const port = e.ports.get(servicePort);
    return port === undefined ? [] : [{ key: `${e.ip}:${port}`, ip: e.ip, port, workload: e.workload, priority }];
  });
}

/**
 * A ServiceEntry's endpoints known by name (resolution DNS), their name standing for the address: the
 * upstream connection resolves it when it opens (agent/tunnel/outbound.ts), as the L4 path does.
 */
function namedEndpoints(service: MeshService, servicePort: number): LbEndpoint[] {
  return (service.hostnameEndpoints ?? []).flatMap((e) => {
    const port = e.ports.get(servicePort);
    return port === undefined ? [] : [{ key: `${e.hostname}:${port}`, ip: e.hostname, port, workload: e.workload ?? '', priority: 0 }];
  });
}

/**
 * Istio's locality load balancing for a DestinationRule: on whenever outlierDetection is set (it is
 * how unhealthy localities are found) unless localityLbSetting.enabled is false; endpoints in the
 * client's region, zone and subzone first, then the next closest.
 */
function destinationRuleLocality(policy: ResolvedTrafficPolicy): ServiceLoadBalancing | undefined {
  if (!policy.outlierDetection || policy.loadBalancer?.localityLbSetting?.enabled === false) return undefined;
  return { mode: 'failover', routingPreference: ['region', 'zone', 'subzone'] };
}

export interface ClusterDependencies {
  readonly clock: Clock;
  readonly random: Random;
  /** Active health-check verdicts (HealthChecker.isHealthy); endpoints are healthy without one. */
  readonly isHealthy: (key: string) => boolean;
  readonly onOutlierEvent?: (cluster: string, event: OutlierEvent) => void;
  /** A cluster was created, changed endpoints or got its probe source (active health checks follow). */
  readonly onChange?: () => void;
}

export class UpstreamCluster {
  /**
   * The local workload whose request first used this cluster: active health checks probe on its behalf
   * (its identity and address), so the destination's policy judges probes as it judges that traffic.
   */
  probeSource?: Workload;
  /** The Service whose endpoints it balances, as of the last snapshot that resolved it. */
  service?: MeshService;
  /** The DestinationRule's tls for these endpoints, as of the last snapshot (TLS origination, upstream-tls.ts). */
  tls?: ClientTLSSettings;
  readonly active = new ActiveRequests();
  readonly breaker: CircuitBreaker;
  private endpoints: readonly LbEndpoint[] = [];
  /** The endpoints by priority, best first: derived once per update, read by every pick. */
  private levels: readonly (readonly LbEndpoint[])[] = [];
  private balancer!: LoadBalancer;
  private balancerSignature = '';
  private hashKey?: ConsistentHashKey;
  private outlier?: OutlierDetector;
  private panicPercent = ENVOY_DEFAULT_PANIC_PERCENT;

  constructor(
    readonly name: string,
    policy: ResolvedTrafficPolicy,
    endpoints: readonly LbEndpoint[],
    private readonly deps: ClusterDependencies,
  ) {
    this.breaker = new CircuitBreaker(name, connectionPoolLimits(policy.connectionPool));
    this.update(policy, endpoints);
  }

  /** A new snapshot: endpoints and policy may change; counts and ejections of staying endpoints remain. */
  update(policy: ResolvedTrafficPolicy, endpoints: readonly LbEndpoint[]): void {
    const changed = this.endpoints.length !== endpoints.length || this.endpoints.some((e, i) => e.key !== endpoints[i]!.key || e.workload !== endpoints[i]!.workload || e.priority !== endpoints[i]!.priority);
    this.endpoints = endpoints;
    this.tls = policy.tls;
    this.levels = [...new Set(endpoints.map((e) => e.priority))].sort((a, b) => a - b).map((p) => endpoints.filter((e) => e.priority === p));
    if (changed) this.deps.onChange?.();
    this.breaker.updateLimits(connectionPoolLimits(policy.connectionPool));
    const signature = JSON.stringify(policy.loadBalancer?.algorithm ?? null);
    if (signature !== this.balancerSignature) {
      this.balancer = createLoadBalancer(policy.loadBalancer, this.active, this.deps.random);
      this.balancerSignature = signature;
    }
    const algorithm = policy.loadBalancer?.algorithm;
    this.hashKey = algorithm?.kind === 'consistentHash' ? algorithm.hashKey : undefined;
    this.updateOutlier(outlierSettings(policy.outlierDetection));
    this.outlier?.setEndpoints(endpoints.map((e) => e.key));
  }

  get algorithm(): string {
    return this.balancer.algorithm;
  }

  allEndpoints(): readonly LbEndpoint[] {
    return this.endpoints;
  }

  /**
   * Endpoints neither ejected nor failing active checks, of the best priority that has any (locality
   * failover, as Envoy's priority levels); all of that level in panic mode, when too few of it are
   * healthy; the best level whole when no level has a healthy endpoint.
   */
  balancingSet(): { readonly endpoints: readonly LbEndpoint[]; readonly panic: boolean } {
    for (const level of this.levels) {
      const healthy = level.filter((e) => this.deps.isHealthy(e.key) && !this.outlier?.isEjected(e.key));
      if (healthy.length === 0) continue;
      const panic = this.panicPercent > 0 && (100 * healthy.length) / level.length < this.panicPercent;
      return { endpoints: panic ? level : healthy, panic };
    }
    const best = this.levels[0] ?? [];
    return this.panicPercent > 0 && best.length > 0 ? { endpoints: best, panic: true } : { endpoints: [], panic: false };
  }

  /** Picks the endpoint for one try; `avoid` lists endpoints earlier tries of the same request used. */
  choose(request?: BalancingInput, avoid?: ReadonlySet<string>): EndpointChoice {
    const { endpoints, panic } = this.balancingSet();
    const hashed = this.hashKey && request ? requestHash(this.hashKey, request) : undefined;
    // One shape for every pick's context, absent values undefined.
    const pick = this.balancer.pick(endpoints, { hash: hashed?.hash, avoid });
    if (pick.kind === 'passthrough') return pick;
    if (pick.kind === 'empty') {
      const why = this.endpoints.length === 0 ? 'has no endpoints' : `has no healthy endpoint (${this.endpoints.length} ejected or failing health checks)`;
      return { kind: 'noHealthyUpstream', status: 503, responseFlag: 'UH', message: `no healthy upstream: ${this.name} ${why}` };
    }
    return { kind: 'endpoint', endpoint: pick.endpoint, setCookie: hashed?.setCookie, panic };
  }

  /** Feeds passive health: every finished try reports how it ended. */
  reportResult(endpointKey: string, result: UpstreamResult): OutlierEvent | undefined {
    return this.outlier?.report(endpointKey, result);
  }

  isEjected(endpointKey: string): boolean {
    return this.outlier?.isEjected(endpointKey) ?? false;
  }

  /** Runs the outlier detector's interval now (tests and diagnostics; it also runs on its own timer). */
  sweepOutliers(): OutlierEvent[] {
    return this.outlier?.sweep() ?? [];
  }

  close(): void {
    this.outlier?.stop();
  }

  private updateOutlier(settings: OutlierSettings | undefined): void {
    this.panicPercent = settings ? settings.minHealthPercent : ENVOY_DEFAULT_PANIC_PERCENT;
    if (!settings) {
      this.outlier?.stop();
      this.outlier = undefined;
      return;
    }
    if (this.outlier) {
      this.outlier.updateSettings(settings);
      return;
    }
    this.outlier = new OutlierDetector(settings, this.deps.clock, (event) => this.deps.onOutlierEvent?.(this.name, event));
    this.outlier.start();
  }
}

export interface UpstreamClustersOptions {
  readonly clock: Clock;
  readonly random?: Random;
  readonly isHealthy?: (key: string) => boolean;
  readonly onOutlierEvent?: (cluster: string, event: OutlierEvent) => void;
  /** See ClusterDependencies.onChange; also called when clusters are dropped. */
  readonly onChange?: () => void;
  /** This agent's node, where every client it routes for runs: Services' locality policies rank endpoints from it. */
  readonly node?: string;
}

/**
 * Every cluster the agent has routed to. Clusters are created on first use and updated when the
 * snapshot changes; `retain` drops the ones a new snapshot no longer has.
 */
export class UpstreamClusters {
  private readonly clusters = new Map<string, { cluster: UpstreamCluster; version: number; ruleKey: string }>();
  private readonly deps: ClusterDependencies;
  private readonly node: string | undefined;

  constructor(options: UpstreamClustersOptions) {
    this.node = options.node;
    this.deps = {
      clock: options.clock,
      random: options.random ?? mathRandom,
      isHealthy: options.isHealthy ?? (() => true),
      ...(options.onOutlierEvent ? { onOutlierEvent: options.onOutlierEvent } : {}),
      ...(options.onChange ? { onChange: options.onChange } : {}),
    };
  }

  /** The clusters requests have used, for active health checks. */
  inUse(): UpstreamCluster[] {
    return [...this.clusters.values()].map((e) => e.cluster);
  }

  /**
   * The cluster a routed destination lands in, for a client (DestinationRule lookup depends on it). A
   * client that is a Workload (the source pod of a request) becomes the probe source of a cluster without one.
   */
  resolve(snapshot: MeshSnapshot, destination: DestinationTarget, client: RuleClient | Workload): ClusterResolution {
    const service = destination.service ?? snapshot.servicesByHostname.get(destination.host);
    const name = clusterName(destination);
    if (!service) return { ok: false, status: 503, responseFlag: 'NC', message: `no cluster ${name}: ${destination.host} is not a service in the mesh` };
    if (!service.ports.some((p) => p.port === destination.port)) {
      return { ok: false, status: 503, responseFlag: 'NC', message: `no cluster ${name}: ${service.hostname} has no port ${destination.port}` };
    }
    const rule = findDestinationRule(snapshot, destination.host, client);
    const members = subsetEndpoints(snapshot, service, rule, destination.subset);
    if (!members.ok) return { ok: false, status: 503, responseFlag: 'NC', message: `no cluster ${name}: ${members.message}` };
    // The same cluster can be shaped by different rules for clients in different namespaces.
    const ruleKey = rule ? `${rule.namespace}:${rule.sources.join(',')}` : '';
    const key = `${name}#${ruleKey}`;
    const entry = this.clusters.get(key);
    if (entry && entry.version === snapshot.version) return this.used(entry.cluster, client);
    const policy = resolveTrafficPolicy(rule, destination.subset, destination.port);
    const endpoints = [...lbEndpoints(snapshot, service.loadBalancing ?? destinationRuleLocality(policy), members.endpoints, destination.port, this.node), ...(destination.subset ? [] : namedEndpoints(service, destination.port))];
    if (entry) {
      entry.cluster.service = service;
      entry.cluster.update(policy, endpoints);
      entry.version = snapshot.version;
      return this.used(entry.cluster, client);
    }
    const cluster = new UpstreamCluster(name, policy, endpoints, this.deps);
    cluster.service = service;
    this.clusters.set(key, { cluster, version: snapshot.version, ruleKey });
    this.deps.onChange?.();
    return this.used(cluster, client);
  }

  private used(cluster: UpstreamCluster, client: RuleClient | Workload): ClusterResolution {
    if (cluster.probeSource === undefined && 'identity' in client) {
      cluster.probeSource = client;
      this.deps.onChange?.();
    }
    return { ok: true, cluster };
  }

  /** Drops clusters whose host is no longer a service in the snapshot (stopping their timers). */
  retain(snapshot: MeshSnapshot): void {
    for (const [key, entry] of this.clusters) {
      const host = entry.cluster.name.split('|')[3] ?? '';
      if (!snapshot.servicesByHostname.has(host)) {
        entry.cluster.close();
        this.clusters.delete(key);
        this.deps.onChange?.();
      }
    }
  }

  close(): void {
    for (const entry of this.clusters.values()) entry.cluster.close();
    this.clusters.clear();
  }
}

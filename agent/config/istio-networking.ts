// Typed Istio traffic resources (networking.istio.io VirtualService and DestinationRule), as the routing and
// load-balancing code consumes them: oneofs are discriminated unions, durations are milliseconds, regular
// expressions are compiled, percentages are numbers from 0 to 100, and defaults are applied where Istio has one.

import type { PathModifier } from './gateway-api/types.js';
import type { Labels, ObjectBase } from './kubernetes.js';

/** Istio's StringMatch. A regex must match the whole value (Envoy's safe_regex semantics). */
export type StringMatch =
  | { readonly kind: 'exact'; readonly value: string }
  | { readonly kind: 'prefix'; readonly value: string }
  | { readonly kind: 'regex'; readonly value: string; readonly regex: RegExp }
  /**
   * Gateway API's PathPrefix, for routes translated from HTTPRoute: element by element, so "/abc" holds
   * for "/abc" and "/abc/d" but not "/abcd". The value has no trailing slash (except "/" itself).
   */
  | { readonly kind: 'pathPrefix'; readonly value: string };

/** Where traffic goes: a service host name (short, or fully qualified), optionally a subset and port. */
export interface Destination {
  readonly host: string;
  /** A subset name declared in a DestinationRule for this host. */
  readonly subset?: string;
  /** Required when the destination service exposes several ports. */
  readonly port?: number;
}

/** Istio's WorkloadSelector: the workloads (pods) in the resource's namespace with all these labels. */
export interface WorkloadSelector {
  readonly matchLabels: Labels;
}

/** `exportTo`: which namespaces see the resource. [] means Istio's default, which is every namespace ("*"). */
export type ExportTo = readonly string[];

// ------------------------------------------------------------------------------------- VirtualService

export interface HTTPMatchRequest {
  readonly name?: string;
  readonly uri?: StringMatch;
  readonly scheme?: StringMatch;
  readonly method?: StringMatch;
  readonly authority?: StringMatch;
  /** Keyed by lowercase header name, since HTTP header names are case-insensitive. */
  readonly headers: Readonly<Record<string, StringMatch>>;
  /** The request matches only if none of these match (a header absent from the request does not match). */
  readonly withoutHeaders: Readonly<Record<string, StringMatch>>;
  readonly queryParams: Readonly<Record<string, StringMatch>>;
  /** The service port the request was sent to. */
  readonly port?: number;
  /** Labels the source workload must have. */
  readonly sourceLabels: Labels;
  readonly sourceNamespace?: string;
  /** Gateways this match applies to; [] means the VirtualService's own gateways. */
  readonly gateways: readonly string[];
  /** Makes uri matching case-insensitive (exact and prefix). */
  readonly ignoreUriCase: boolean;
}

export interface HeaderOperations {
  readonly set: Readonly<Record<string, string>>;
  readonly add: Readonly<Record<string, string>>;
  readonly remove: readonly string[];
}

export interface HeaderManipulation {
  readonly request: HeaderOperations;
  readonly response: HeaderOperations;
}

export interface HTTPRouteDestination {
  readonly destination: Destination;
  /**
   * The relative weight, as written (0 when absent). One destination receives all traffic whatever its
   * weight; with several, traffic is split in proportion to the weights (Istio rejects an all-zero split).
   */
  readonly weight: number;
  readonly headers: HeaderManipulation;
  /**
   * A Gateway API backendRef that cannot be used (no such Service, a kind Ambit cannot route to): the
   * requests that pick it are answered with this status instead (500; 503 for gRPC, which clients read as UNAVAILABLE).
   */
  readonly unresolved?: { readonly status: number; readonly reason: string };
}

export interface HTTPRedirect {
  readonly uri?: string;
  readonly authority?: string;
  /** A fixed port, or derived from the scheme's default or the request's port (Istio's derivePort). */
  readonly port?: number | 'FROM_PROTOCOL_DEFAULT' | 'FROM_REQUEST_PORT';
  readonly scheme?: 'http' | 'https';
  /** 3xx; Istio's default is 301. */
  readonly redirectCode: number;
  /** Gateway API's path modifier (from an HTTPRoute), used instead of `uri`. */
  readonly path?: PathModifier;
}

export interface HTTPDirectResponse {
  /** 200 to 599. */
  readonly status: number;
  readonly body?: string;
}

/** What a matched HTTP route does: Istio allows exactly one of route, redirect and directResponse. */
export type HTTPRouteAction =
  | { readonly kind: 'route'; readonly destinations: readonly HTTPRouteDestination[] }
  | { readonly kind: 'redirect'; readonly redirect: HTTPRedirect }
  | { readonly kind: 'directResponse'; readonly directResponse: HTTPDirectResponse };

export interface HTTPRewrite {
  /** Replaces the matched uri prefix (or the whole path for exact/regex matches). */
  readonly uri?: string;
  readonly authority?: string;
  /**
   * Replaces every match of `regex` (compiled with the g flag, not anchored) in the path by `rewrite`.
   * `rewrite` is kept as written, in RE2 substitution syntax (`\1` for the first group).
   */
  readonly uriRegexRewrite?: { readonly match: string; readonly regex: RegExp; readonly rewrite: string };
  /** Gateway API's URLRewrite path (from an HTTPRoute), used instead of `uri`. */
  readonly path?: PathModifier;
}

export interface HTTPRetry {
  /** Retries after the first try; 0 disables retries. */
  readonly attempts: number;
  readonly perTryTimeoutMs?: number;
  /** Envoy retry conditions ("5xx", "connect-failure", ...) or status codes ("503"); [] means Istio's default. */
  readonly retryOn: readonly string[];
  readonly retryRemoteLocalities: boolean;
}

export interface HTTPFaultInjection {
  readonly delay?: { readonly fixedDelayMs: number; readonly percentage?: number };
  readonly abort?:
    | { readonly kind: 'httpStatus'; readonly httpStatus: number; readonly percentage?: number }
    | { readonly kind: 'grpcStatus'; readonly grpcStatus: string; readonly percentage?: number };
}

export interface HTTPMirrorPolicy {
  readonly destination: Destination;
  /** 0 to 100; undefined mirrors every request. */
  readonly percentage?: number;
}

export interface CorsPolicy {
  readonly allowOrigins: readonly StringMatch[];
  readonly allowMethods: readonly string[];
  readonly allowHeaders: readonly string[];
  readonly exposeHeaders: readonly string[];
  readonly maxAgeMs?: number;
  readonly allowCredentials?: boolean;
}

export interface HTTPRoute {
  readonly name?: string;
  /** Any one match selects the route; [] matches every request. */
  readonly match: readonly HTTPMatchRequest[];
  readonly action: HTTPRouteAction;
  /** Only with a `route` action (Istio rejects rewrite with redirect or directResponse). */
  readonly rewrite?: HTTPRewrite;
  readonly timeoutMs?: number;
  readonly retries?: HTTPRetry;
  readonly fault?: HTTPFaultInjection;
  /** `mirror` (with `mirrorPercentage`) and `mirrors` both end up here. */
  readonly mirrors: readonly HTTPMirrorPolicy[];
  readonly headers: HeaderManipulation;
  readonly corsPolicy?: CorsPolicy;
}

export interface L4MatchAttributes {
  readonly port?: number;
  /** IPs or CIDRs the destination address must be in. */
  readonly destinationSubnets: readonly string[];
  readonly sourceLabels: Labels;
  readonly sourceNamespace?: string;
  readonly gateways: readonly string[];
}

export interface RouteDestination {
  readonly destination: Destination;
  /** As in HTTPRouteDestination. */
  readonly weight: number;
}

export interface TCPRoute {
  readonly match: readonly L4MatchAttributes[];
  readonly route: readonly RouteDestination[];
}

export interface VirtualServiceObject extends ObjectBase<'VirtualService'> {
  readonly spec: {
    readonly hosts: readonly string[];
    /** [] means the mesh (sidecars/ztunnel); "mesh" may also be listed beside gateway names. */
    readonly gateways: readonly string[];
    readonly exportTo: ExportTo;
    /** Evaluated in order; the first matching route wins. */
    readonly http: readonly HTTPRoute[];
    readonly tcp: readonly TCPRoute[];
  };
}

// ------------------------------------------------------------------------------------ DestinationRule

export type SimpleLoadBalancer = 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'RANDOM' | 'PASSTHROUGH' | 'UNSPECIFIED';

/** What a consistent hash is computed over (Istio's hashKey oneof). */
export type ConsistentHashKey =
  | { readonly kind: 'httpHeaderName'; readonly name: string }
  | { readonly kind: 'httpCookie'; readonly name: string; readonly path?: string; readonly ttlMs?: number }
  | { readonly kind: 'useSourceIp' }
  | { readonly kind: 'httpQueryParameterName'; readonly name: string };

/** The hash ring (Istio's hashAlgorithm oneof; minimumRingSize is the deprecated spelling of ringHash). */
export type ConsistentHashAlgorithm =
  | { readonly kind: 'ringHash'; readonly minimumRingSize?: number }
  | { readonly kind: 'maglev'; readonly tableSize?: number };

/** Which endpoint gets the next request (Istio's lbPolicy oneof). */
export type LoadBalancerAlgorithm =
  | { readonly kind: 'simple'; readonly simple: SimpleLoadBalancer }
  | { readonly kind: 'consistentHash'; readonly hashKey: ConsistentHashKey; readonly hashAlgorithm: ConsistentHashAlgorithm }
  /** Neither simple nor consistentHash was given: the mesh default (LEAST_REQUEST in Istio) applies. */
  | { readonly kind: 'default' };

/**
 * Locality-aware routing. Applied: `enabled` (Istio's default failover by region, zone and subzone
 * whenever outlierDetection is set); kept as written, with a warning: distribute, failover, failoverPriority.
 */
export interface LocalityLbSetting {
  readonly enabled?: boolean;
  readonly distribute: readonly { readonly from: string; readonly to: Readonly<Record<string, number>> }[];
  readonly failover: readonly { readonly from: string; readonly to: string }[];
  readonly failoverPriority: readonly string[];
}

export interface LoadBalancerSettings {
  readonly algorithm: LoadBalancerAlgorithm;
  readonly localityLbSetting?: LocalityLbSetting;
  /** Slow start: new endpoints receive a growing share of traffic over this time. */
  readonly warmupDurationMs?: number;
}

export interface ConnectionPoolSettings {
  readonly tcp?: {
    readonly maxConnections?: number;
    readonly connectTimeoutMs?: number;
    readonly tcpKeepalive?: { readonly probes?: number; readonly timeMs?: number; readonly intervalMs?: number };
    readonly maxConnectionDurationMs?: number;
    readonly idleTimeoutMs?: number;
  };
  readonly http?: {
    readonly http1MaxPendingRequests?: number;
    readonly http2MaxRequests?: number;
    /** 0 means unlimited, 1 disables keep-alive. */
    readonly maxRequestsPerConnection?: number;
    readonly maxRetries?: number;
    readonly idleTimeoutMs?: number;
    readonly h2UpgradePolicy?: 'DEFAULT' | 'DO_NOT_UPGRADE' | 'UPGRADE';
    readonly useClientProtocol?: boolean;
    readonly maxConcurrentStreams?: number;
  };
}

export interface OutlierDetection {
  readonly consecutive5xxErrors?: number;
  readonly consecutiveGatewayErrors?: number;
  readonly consecutiveLocalOriginFailures?: number;
  readonly splitExternalLocalOriginErrors: boolean;
  /** Istio's default is 10s. */
  readonly intervalMs?: number;
  /** Istio's default is 30s. */
  readonly baseEjectionTimeMs?: number;
  /** 0 to 100; Istio's default is 10. */
  readonly maxEjectionPercent?: number;
  /** 0 to 100; Istio's default is 0. */
  readonly minHealthPercent?: number;
}

/** TLS towards the destination. In a mesh, ISTIO_MUTUAL (HBONE) is what ambient uses. */
export interface ClientTLSSettings {
  readonly mode: 'DISABLE' | 'SIMPLE' | 'MUTUAL' | 'ISTIO_MUTUAL';
  readonly clientCertificate?: string;
  readonly privateKey?: string;
  readonly caCertificates?: string;
  readonly credentialName?: string;
  readonly subjectAltNames: readonly string[];
  readonly sni?: string;
  readonly insecureSkipVerify?: boolean;
}

export interface PortTrafficPolicy {
  readonly port: number;
  readonly loadBalancer?: LoadBalancerSettings;
  readonly connectionPool?: ConnectionPoolSettings;
  readonly outlierDetection?: OutlierDetection;
  readonly tls?: ClientTLSSettings;
}

export interface TrafficPolicy {
  readonly loadBalancer?: LoadBalancerSettings;
  readonly connectionPool?: ConnectionPoolSettings;
  readonly outlierDetection?: OutlierDetection;
  readonly tls?: ClientTLSSettings;
  /** Overrides per destination port; a port's settings replace (not merge with) the policy's own. */
  readonly portLevelSettings: readonly PortTrafficPolicy[];
}

export interface Subset {
  readonly name: string;
  /** The endpoints of the host whose workloads have all these labels. */
  readonly labels: Labels;
  /** Replaces the rule-level policy, field by field, for this subset. */
  readonly trafficPolicy?: TrafficPolicy;
}

export interface DestinationRuleObject extends ObjectBase<'DestinationRule'> {
  readonly spec: {
    readonly host: string;
    readonly trafficPolicy?: TrafficPolicy;
    readonly subsets: readonly Subset[];
    readonly exportTo: ExportTo;
    /** Restricts the rule to the workloads (clients) it selects; undefined applies to all. */
    readonly workloadSelector?: WorkloadSelector;
  };
}

// Typed Gateway API resources (gateway.networking.k8s.io) as Ambit reads them for the mesh (GAMMA):
// HTTPRoute, GRPCRoute and TCPRoute bound to Services, and the waypoint Gateway. References carry
// their namespace resolved, durations are milliseconds, regular expressions are compiled.

import type { HeaderOperations, StringMatch } from '../istio-networking.js';
import type { ObjectBase } from '../kubernetes.js';

/** The apiVersions each kind is served at by the standard and experimental channels (v1.0 to v1.6). */
export const GATEWAY_API_GROUP = 'gateway.networking.k8s.io';
export const HTTP_ROUTE_VERSIONS = [`${GATEWAY_API_GROUP}/v1`, `${GATEWAY_API_GROUP}/v1beta1`] as const;
export const GRPC_ROUTE_VERSIONS = [`${GATEWAY_API_GROUP}/v1`, `${GATEWAY_API_GROUP}/v1alpha2`] as const;
export const TCP_ROUTE_VERSIONS = [`${GATEWAY_API_GROUP}/v1`, `${GATEWAY_API_GROUP}/v1alpha2`] as const;
export const GATEWAY_VERSIONS = [`${GATEWAY_API_GROUP}/v1`, `${GATEWAY_API_GROUP}/v1beta1`] as const;

/** Istio's waypoint GatewayClass: such a Gateway means "L7 for what binds to it", no proxy in Ambit. */
export const WAYPOINT_GATEWAY_CLASS = 'istio-waypoint';
/** The label (on a Service or Namespace) that binds it to a waypoint: `<name>`, `<ns>/<name>` or `#none`. */
export const USE_WAYPOINT_LABEL = 'istio.io/use-waypoint';
export const USE_WAYPOINT_NAMESPACE_LABEL = 'istio.io/use-waypoint-namespace';

/** A parentRef: for the mesh, a core Service (group "", kind Service); anything else is kept to be reported. */
export interface ParentRef {
  readonly group: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  /** Binds to this Service port only; absent: every port of the Service. */
  readonly port?: number;
  readonly sectionName?: string;
}

/** A backendRef to a Service (or another kind, which is reported as InvalidKind). */
export interface BackendRef {
  readonly group: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  readonly port?: number;
  /** Relative weight; 1 when absent, 0 receives nothing. */
  readonly weight: number;
  /** Header modifiers applied only when this backend is chosen. */
  readonly requestHeaders?: HeaderOperations;
  readonly responseHeaders?: HeaderOperations;
}

export type PathMatch =
  | { readonly type: 'Exact'; readonly value: string }
  /** Element by element; the value is kept without its trailing slash ("/" stays "/"). */
  | { readonly type: 'PathPrefix'; readonly value: string }
  | { readonly type: 'RegularExpression'; readonly value: string; readonly regex: RegExp };

/** A header or query parameter match: Exact or RegularExpression. Header names are lowercased. */
export interface NamedMatch {
  readonly name: string;
  readonly match: StringMatch;
}

export interface HttpRouteMatch {
  readonly path: PathMatch;
  readonly headers: readonly NamedMatch[];
  readonly queryParams: readonly NamedMatch[];
  readonly method?: string;
}

/** URLRewrite's and RequestRedirect's path modifier. */
export type PathModifier = { readonly type: 'ReplaceFullPath'; readonly value: string } | { readonly type: 'ReplacePrefixMatch'; readonly value: string };

export interface RequestRedirect {
  readonly scheme?: 'http' | 'https';
  readonly hostname?: string;
  readonly path?: PathModifier;
  readonly port?: number;
  /** 301 or 302; the API's default is 302. */
  readonly statusCode: number;
}

export interface RequestMirror {
  readonly backend: BackendRef;
  /** 0 to 100 (percent, or fraction turned into a percentage); absent: every request. */
  readonly percentage?: number;
}

export type HttpRouteFilter =
  | { readonly type: 'RequestHeaderModifier'; readonly modifier: HeaderOperations }
  | { readonly type: 'ResponseHeaderModifier'; readonly modifier: HeaderOperations }
  | { readonly type: 'RequestRedirect'; readonly redirect: RequestRedirect }
  | { readonly type: 'URLRewrite'; readonly hostname?: string; readonly path?: PathModifier }
  | { readonly type: 'RequestMirror'; readonly mirror: RequestMirror };

export interface HttpRouteRetry {
  /** HTTP status codes to retry on; [] means connection failures only. */
  readonly codes: readonly number[];
  readonly attempts?: number;
  readonly backoffMs?: number;
}

export interface HttpRouteRule {
  readonly name?: string;
  /** Never empty: a rule without matches gets the API's default, PathPrefix "/". */
  readonly matches: readonly HttpRouteMatch[];
  readonly filters: readonly HttpRouteFilter[];
  readonly backendRefs: readonly BackendRef[];
  /** Absent or 0: no timeout (GEP-2257's zero duration disables it). */
  readonly requestTimeoutMs?: number;
  readonly backendRequestTimeoutMs?: number;
  readonly retry?: HttpRouteRetry;
}

export interface HttpRouteObject extends ObjectBase<'HTTPRoute'> {
  readonly spec: { readonly parentRefs: readonly ParentRef[]; readonly rules: readonly HttpRouteRule[] };
}

/** GRPCRoute's method match, kept as written; the router sees it as a path match. */
export interface GrpcMethodMatch {
  readonly type: 'Exact' | 'RegularExpression';
  readonly service?: string;
  readonly method?: string;
}

export interface GrpcRouteMatch {
  readonly method?: GrpcMethodMatch;
  readonly headers: readonly NamedMatch[];
}

export type GrpcRouteFilter = Extract<HttpRouteFilter, { type: 'RequestHeaderModifier' | 'ResponseHeaderModifier' | 'RequestMirror' }>;

export interface GrpcRouteRule {
  readonly name?: string;
  /** [] matches every request. */
  readonly matches: readonly GrpcRouteMatch[];
  readonly filters: readonly GrpcRouteFilter[];
  readonly backendRefs: readonly BackendRef[];
}

export interface GrpcRouteObject extends ObjectBase<'GRPCRoute'> {
  readonly spec: { readonly parentRefs: readonly ParentRef[]; readonly rules: readonly GrpcRouteRule[] };
}

export interface TcpRouteObject extends ObjectBase<'TCPRoute'> {
  readonly spec: { readonly parentRefs: readonly ParentRef[]; readonly rules: readonly { readonly name?: string; readonly backendRefs: readonly BackendRef[] }[] };
}

/** One of a Gateway's spec.addresses: `type` is IPAddress unless given (Hostname, or an implementation's own). */
export interface GatewayAddress {
  readonly type: string;
  readonly value: string;
}

/**
 * A Gateway: class istio-waypoint marks L7 processing (see docs/istio-api.md, "Waypoints"); class
 * istio-east-west is a network's east-west gateway, reached at its addresses from other networks.
 */
export interface GatewayObject extends ObjectBase<'Gateway'> {
  readonly spec: { readonly gatewayClassName: string; readonly addresses: readonly GatewayAddress[] };
  /** The addresses its controller reports (status.addresses), which istiod reads for an east-west gateway; absent: none. */
  readonly status?: { readonly addresses: readonly GatewayAddress[] };
}

export type GatewayRouteObject = HttpRouteObject | GrpcRouteObject | TcpRouteObject;
export type GatewayApiObject = GatewayRouteObject | GatewayObject;

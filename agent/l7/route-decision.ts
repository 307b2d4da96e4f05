// The typed outcome of routing one request or connection: where it goes (or what is answered instead),
// with every per-route policy already resolved, so that the data path acts on it without reading Istio
// resources again. Response flags are Envoy's, as Istio's metrics and access logs show them.

import type { MeshService } from '../state/model.js';
import type { HeaderMutation } from './header-mutation.js';
import type { RetryPolicy } from './retry-policy.js';

/** Envoy response flags Ambit's L7 decisions can produce (Istio's `response_flags` label). */
export type ResponseFlag =
  /** No route matched (NR). */
  | 'NR'
  /** The route names a destination with no cluster: unknown host or subset (NC). */
  | 'NC'
  /** No healthy upstream endpoint (UH). */
  | 'UH'
  /** Circuit breaker overflow (UO). */
  | 'UO'
  /** Upstream connection failure (UF). */
  | 'UF'
  /** Retries exhausted on a retriable failure (URX). */
  | 'URX'
  /** Fault delay injected (DI) and fault abort injected (FI). */
  | 'DI'
  | 'FI';

/** Which configuration decided, for logs, metrics and config_dump. */
export interface RouteRef {
  /** `namespace/name`; undefined when no VirtualService applies and the default route was used. */
  readonly virtualService?: string;
  readonly routeName?: string;
  /** Index in http[] / tcp[]. */
  readonly routeIndex?: number;
  /** Index of the match block that selected the route; -1 when the route matches everything. */
  readonly matchIndex?: number;
}

/** A routing destination resolved against the snapshot (Envoy's cluster: host, subset, port). */
export interface DestinationTarget {
  /** Fully qualified, short names resolved in the VirtualService's namespace. */
  readonly host: string;
  readonly subset?: string;
  /** The Service port to reach. */
  readonly port: number;
  /** The Service behind the host; undefined when the host is not a Service in the snapshot. */
  readonly service?: MeshService;
}

/** Fault injection already sampled for this request: what to do, not what might be done. */
export interface FaultDecision {
  readonly delayMs?: number;
  readonly abort?: { readonly kind: 'httpStatus'; readonly status: number } | { readonly kind: 'grpcStatus'; readonly grpcStatus: string };
}

export type HttpRouteDecision =
  | {
      readonly kind: 'forward';
      readonly route: RouteRef;
      readonly destination: DestinationTarget;
      /** The path to send upstream, after rewrites (query string kept). */
      readonly path: string;
      /** The :authority / Host to send upstream, after rewrites. */
      readonly authority: string;
      /** Apply in order to the request headers before sending. */
      readonly requestHeaders: readonly HeaderMutation[];
      /** Apply in order to the response headers before answering. */
      readonly responseHeaders: readonly HeaderMutation[];
      /** Whole-request timeout across retries; undefined means none (Istio's default for HTTP). */
      readonly timeoutMs?: number;
      readonly retry: RetryPolicy;
      readonly fault?: FaultDecision;
      /** Shadow copies to send (fire and forget), percentages already sampled. */
      readonly mirrors: readonly DestinationTarget[];
    }
  | { readonly kind: 'redirect'; readonly route: RouteRef; readonly status: number; readonly location: string; readonly responseHeaders: readonly HeaderMutation[] }
  | { readonly kind: 'directResponse'; readonly route: RouteRef; readonly status: number; readonly body?: string; readonly responseHeaders: readonly HeaderMutation[] }
  /** A VirtualService applies but none of its routes matched: Envoy answers 404 with NR. */
  | { readonly kind: 'noRoute'; readonly route: RouteRef; readonly status: 404; readonly responseFlag: 'NR' };

export type TcpRouteDecision = { readonly kind: 'forward'; readonly route: RouteRef; readonly destination: DestinationTarget };

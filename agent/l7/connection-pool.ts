// The DestinationRule connectionPool as Envoy's circuit breakers: counters per upstream cluster that
// admit a connection, a pending request, an active request or a retry, or refuse it. A refusal is a
// value the data path turns into 503 with response flag UO, as Envoy does on overflow.

import type { ConnectionPoolSettings } from '../config/istio-networking.js';

/** Istio's defaults: every limit 2^32-1 (effectively none), connect timeout 10 s. */
const UNLIMITED = 2 ** 32 - 1;
export const ISTIO_DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

export interface ConnectionPoolLimits {
  /** tcp.maxConnections: connections to all endpoints of the cluster together. */
  readonly maxConnections: number;
  /** http.http1MaxPendingRequests: requests waiting for a connection. */
  readonly maxPendingRequests: number;
  /** http.http2MaxRequests: requests in flight to the cluster, any protocol (Envoy's max_requests). */
  readonly maxRequests: number;
  /** http.maxRetries: retries in flight to the cluster at once. */
  readonly maxRetries: number;
  /** http.maxRequestsPerConnection: 0 means unlimited; 1 disables keep-alive. */
  readonly maxRequestsPerConnection: number;
  readonly connectTimeoutMs: number;
}

export function connectionPoolLimits(pool: ConnectionPoolSettings | undefined): ConnectionPoolLimits {
  return {
    maxConnections: pool?.tcp?.maxConnections ?? UNLIMITED,
    maxPendingRequests: pool?.http?.http1MaxPendingRequests ?? UNLIMITED,
    maxRequests: pool?.http?.http2MaxRequests ?? UNLIMITED,
    maxRetries: pool?.http?.maxRetries ?? UNLIMITED,
    maxRequestsPerConnection: pool?.http?.maxRequestsPerConnection ?? 0,
    connectTimeoutMs: pool?.tcp?.connectTimeoutMs ?? ISTIO_DEFAULT_CONNECT_TIMEOUT_MS,
  };
}

export type PoolResource = 'connections' | 'pending' | 'requests' | 'retries';

/** A granted slot; release it exactly once when the connection closes or the request ends (extra calls are ignored). */
export interface PoolLease {
  readonly admitted: true;
  release(): void;
}

export interface PoolOverflow {
  readonly admitted: false;
  readonly resource: PoolResource;
  readonly status: 503;
  readonly responseFlag: 'UO';
  readonly message: string;
}

export type Admission = PoolLease | PoolOverflow;

/** What a request without an idle connection does: open one, wait for one, or fail with 503 UO. */
export type PoolDecision =
  | { readonly kind: 'connect'; readonly lease: PoolLease }
  | { readonly kind: 'queue'; readonly lease: PoolLease }
  | ({ readonly kind: 'overflow' } & PoolOverflow);

const LIMIT_NAME: Record<PoolResource, string> = {
  connections: 'tcp.maxConnections',
  pending: 'http.http1MaxPendingRequests',
  requests: 'http.http2MaxRequests',
  retries: 'http.maxRetries',
};

export class CircuitBreaker {
  private readonly inUse: Record<PoolResource, number> = { connections: 0, pending: 0, requests: 0, retries: 0 };
  private readonly overflows: Record<PoolResource, number> = { connections: 0, pending: 0, requests: 0, retries: 0 };

  constructor(
    /** `host|subset|port`, for messages. */
    readonly cluster: string,
    private limits: ConnectionPoolLimits,
  ) {}

  /** A new snapshot may change the limits; slots already granted stay granted. */
  updateLimits(limits: ConnectionPoolLimits): void {
    this.limits = limits;
  }

  get currentLimits(): ConnectionPoolLimits {
    return this.limits;
  }

  /** Before opening a connection (TCP, or a new HTTP/1 connection, or an HBONE stream for TCP). */
  acquireConnection(): Admission {
    return this.acquire('connections', this.limits.maxConnections);
  }

  /** Before queueing a request that found every allowed connection busy. */
  acquirePending(): Admission {
    return this.acquire('pending', this.limits.maxPendingRequests);
  }

  /** Before sending any request upstream (first try and retries alike). */
  acquireRequest(): Admission {
    return this.acquire('requests', this.limits.maxRequests);
  }

  /** Before each retry; an overflow ends the retrying, and Envoy answers with the last failure. */
  acquireRetry(): Admission {
    return this.acquire('retries', this.limits.maxRetries);
  }

  /**
   * Envoy's HTTP/1 pool decision for a request that found no idle connection: open another one while
   * maxConnections allows, otherwise wait as pending while http1MaxPendingRequests allows, else overflow.
   */
  admitWithoutIdleConnection(): PoolDecision {
    const connection = this.acquireConnection();
    if (connection.admitted) return { kind: 'connect', lease: connection };
    const pending = this.acquirePending();
    return pending.admitted ? { kind: 'queue', lease: pending } : { kind: 'overflow', ...pending };
  }

  /** Whether a connection that has served `served` requests must be closed rather than reused. */
  connectionExhausted(served: number): boolean {
    return this.limits.maxRequestsPerConnection > 0 && served >= this.limits.maxRequestsPerConnection;
  }

  usage(): Readonly<Record<PoolResource, number>> {
    return { ...this.inUse };
  }

  /** Overflows so far per resource (Envoy's upstream_cx_overflow, upstream_rq_pending_overflow, ...). */
  overflowCounts(): Readonly<Record<PoolResource, number>> {
    return { ...this.overflows };
  }

  private acquire(resource: PoolResource, limit: number): Admission {
    if (this.inUse[resource] >= limit) {
      this.overflows[resource]++;
      return {
        admitted: false,
        resource,
        status: 503,
        responseFlag: 'UO',
        message: `upstream overflow: ${this.cluster} is at its ${LIMIT_NAME[resource]} limit of ${limit}`,
      };
    }
    this.inUse[resource]++;
    let released = false;
    return {
      admitted: true,
      release: () => {
        if (released) return;
        released = true;
        this.inUse[resource]--;
      },
    };
  }
}

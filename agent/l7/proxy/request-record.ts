// What the outbound HTTP proxy knows about one finished request: every input Istio's request metrics
// (istio_requests_total, istio_request_duration_milliseconds, istio_request_bytes,
// istio_response_bytes), the per-request access log and a span need. The proxy calls one hook with it;
// request telemetry (agent/telemetry/requests.ts) turns it into series and records.

import type { MeshService, Workload } from '../../state/model.js';
import type { RequestTelemetry } from '../../telemetry/requests.js';
import type { RouteRef } from '../route-decision.js';

/** Envoy's response flags as the proxy sets them, beside what the decision engine decides. */
export type RequestFlag = 'NR' | 'NC' | 'UH' | 'UO' | 'UF' | 'URX' | 'UT' | 'UC' | 'DC' | 'DI' | 'FI';

export interface CompletedRequest {
  readonly reporter: 'source';
  readonly source: Workload;
  readonly sourceAddress: string;
  /** The Service the client addressed (undefined when it dialled a pod IP). */
  readonly destinationService?: MeshService;
  /** The workload of the endpoint that answered last, when one was reached. */
  readonly destinationWorkload?: Workload;
  /** `ip:port` of that endpoint. */
  readonly upstreamHost?: string;
  /** Envoy's cluster name (`outbound|port|subset|host`). */
  readonly upstreamCluster?: string;
  /** HBONE-carried (mutual_tls) or plain ("unknown"), as connection_security_policy. */
  readonly securityPolicy: 'mutual_tls' | 'unknown';
  readonly route: RouteRef;
  /** `http` or `grpc`, as Istio's request_protocol. */
  readonly protocol: 'http' | 'grpc';
  /** `HTTP/1.1` or `HTTP/2`, the client's protocol, for the access log. */
  readonly httpVersion: string;
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  readonly requestId: string;
  readonly traceparent?: string;
  readonly userAgent?: string;
  /** The status the client got; 0 when the client went away before any. */
  readonly status: number;
  readonly grpcStatus?: number;
  /** Empty when none. */
  readonly flags: readonly RequestFlag[];
  /** Upstream tries made (1 without retries). */
  readonly attempts: number;
  readonly requestBytes: number;
  readonly responseBytes: number;
  readonly startedAt: Date;
  readonly durationMs: number;
  /** Why a locally answered request failed, for the log. */
  readonly detail?: string;
}

export type RequestCompleteHook = (request: CompletedRequest) => void;

/** Istio's response_flags label value: the flags joined by ",", or "-". */
export function formatFlags(flags: readonly RequestFlag[]): string {
  return flags.length === 0 ? '-' : flags.join(',');
}

/**
 * The hook that feeds Istio's request metrics and the per-request access log (reporter="source"). Its
 * description and outcome have one shape each (absent values undefined): they are read on every request.
 */
export function requestTelemetryHook(telemetry: RequestTelemetry): RequestCompleteHook {
  return (r) => {
    const dstWorkload = r.destinationWorkload;
    telemetry.record(
      {
        connection: {
          direction: 'outbound',
          src: { addr: r.sourceAddress, workload: r.source, identity: r.source.identity },
          dst: {
            addr: r.upstreamHost ?? 'unknown',
            workload: dstWorkload,
            service: r.destinationService,
            identity: dstWorkload && r.securityPolicy === 'mutual_tls' ? dstWorkload.identity : undefined,
          },
          securityPolicy: r.securityPolicy,
        },
        protocol: r.protocol,
        method: r.method,
        path: r.path,
        authority: r.authority,
        httpVersion: r.httpVersion,
        requestId: r.requestId,
        traceId: r.traceparent ? (r.traceparent.split('-')[1] ?? '') : undefined,
        userAgent: r.userAgent || undefined,
      },
      {
        responseCode: r.status,
        grpcStatus: r.grpcStatus,
        flags: r.flags,
        requestBytes: r.requestBytes,
        responseBytes: r.responseBytes,
        upstreamHost: r.upstreamHost || undefined,
        routeName: r.route.routeName || undefined,
        responseCodeDetails: r.detail || undefined,
      },
      r.durationMs,
    );
  };
}

// Header handling between the downstream and upstream hops: hop-by-hop headers stay on their hop (RFC
// 9110 §7.6.1, and HTTP/2 forbids them), the headers Envoy adds as a sidecar would (x-forwarded-proto,
// x-request-id, x-envoy-attempt-count), the span context put upstream, and conversion between header
// maps and Node's header objects.

import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { GrpcStatus } from '../../identity/grpc-runtime.js';
import { TRACE_HEADER_NAMES } from '../../telemetry/trace-context.js';
import type { RequestSpan } from '../../telemetry/tracing.js';

/** Lowercase name → values, as the decision engine's header mutations work on them. */
export type HeaderMap = Map<string, string[]>;

const HOP_BY_HOP: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'http2-settings']);

/** Removes hop-by-hop headers, and those the Connection header names. */
export function withoutHopByHop(headers: ReadonlyMap<string, readonly string[]>): HeaderMap {
  const connection = headers.get('connection');
  const named = connection === undefined ? undefined : connectionNamed(connection);
  const out: HeaderMap = new Map();
  for (const [name, values] of headers) {
    if (HOP_BY_HOP.has(name) || named?.has(name) || name.startsWith(':')) continue;
    out.set(name, [...values]);
  }
  return out;
}

/** A Node header object (a response's, or HTTP/2's) as a header map; pseudo-headers are left out. */
export function headerMapOf(headers: IncomingHttpHeaders): HeaderMap {
  const out: HeaderMap = new Map();
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name.startsWith(':')) continue;
    out.set(name.toLowerCase(), Array.isArray(value) ? [...value] : [String(value)]);
  }
  return out;
}

/**
 * An upstream response's headers as the header map the client's response starts from: headerMapOf and
 * withoutHopByHop in one pass, since this runs for every response.
 */
export function responseHeaderMap(headers: IncomingHttpHeaders): HeaderMap {
  const connection = headers.connection;
  const named = connection === undefined ? undefined : connectionNamed([connection]);
  const out: HeaderMap = new Map();
  for (const [raw, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    const name = raw.toLowerCase();
    if (HOP_BY_HOP.has(name) || named?.has(name) || name.startsWith(':')) continue;
    out.set(name, Array.isArray(value) ? [...value] : [String(value)]);
  }
  return out;
}

/** The header names a Connection header's values list, lowercased. */
function connectionNamed(values: readonly string[]): ReadonlySet<string> {
  const named = new Set<string>();
  for (const value of values) for (const token of value.split(',')) named.add(token.trim().toLowerCase());
  return named;
}

/**
 * A header map as Node's outgoing headers. Repeated values stay separate lines, except Cookie over
 * HTTP/1.1, which must be one line joined by "; " (RFC 6265 §5.4).
 */
export function outgoingHeaders(headers: ReadonlyMap<string, readonly string[]>): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, values] of headers) {
    if (values.length === 0) continue;
    out[name] = name === 'cookie' ? values.join('; ') : values.length === 1 ? values[0]! : [...values];
  }
  return out;
}

/**
 * The headers Envoy adds to a request it forwards from a mesh client: the scheme the client used, and a
 * request id for correlation (kept when the client sent one, as Istio's sidecars do). traceparent,
 * tracestate and b3 headers pass unchanged: the client's trace continues across the hop.
 */
export function addForwardingHeaders(headers: HeaderMap): string {
  if (!headers.has('x-forwarded-proto')) headers.set('x-forwarded-proto', ['http']);
  let requestId = headers.get('x-request-id')?.[0];
  if (requestId === undefined) {
    requestId = randomUUID();
    headers.set('x-request-id', [requestId]);
  }
  return requestId;
}

/** A gRPC status as fault.abort.grpcStatus is written (a name such as UNAVAILABLE, or its number) as its code; UNKNOWN otherwise. */
export function grpcCode(name: string): number {
  const byName = (GrpcStatus as Readonly<Record<string, number>>)[name.toUpperCase()];
  if (byName !== undefined) return byName;
  const n = Number(name);
  return Number.isInteger(n) && n >= 0 && n <= GrpcStatus.UNAUTHENTICATED ? n : GrpcStatus.UNKNOWN;
}

/** Whether a request is gRPC (content-type application/grpc, with or without a +suffix). */
export function isGrpc(headers: ReadonlyMap<string, readonly string[]>): boolean {
  return /^application\/grpc(\+|;|$)/.test(headers.get('content-type')?.[0] ?? '');
}

/** grpc-status of a trailers-only response or of trailers, when present. */
export function grpcStatusOf(headers: IncomingHttpHeaders | undefined): number | undefined {
  const value = headers?.['grpc-status'];
  if (value === undefined) return undefined;
  const n = Number(Array.isArray(value) ? value[0] : value);
  return Number.isInteger(n) ? n : undefined;
}

/**
 * Puts a span's context on an upstream request in place of what the client sent. A span of a disabled
 * tracer has nothing to put there: the client's trace headers then pass through unchanged.
 */
export function setSpanContext(headers: HeaderMap, span: RequestSpan): void {
  if (Object.keys(span.upstreamHeaders).length === 0) return;
  for (const name of TRACE_HEADER_NAMES) headers.delete(name);
  for (const [name, value] of Object.entries(span.upstreamHeaders)) headers.set(name, [value]);
}

// Trace context on the wire: W3C traceparent/tracestate and Zipkin's B3 (single header or X-B3-*), read
// from a request and written onto the one sent upstream. Pure header work; spans are tracing.ts's.

import type { RequestHeaders } from '../l7/request.js';

/** One position in a trace, as the headers carry it. */
export interface TraceContext {
  /** 32 lowercase hex digits, not all zero. */
  readonly traceId: string;
  /** The sender's span: 16 lowercase hex digits, not all zero. */
  readonly spanId: string;
  readonly sampled: boolean;
  /** W3C tracestate, passed on as received (several headers joined by ","). */
  readonly traceState?: string;
}

/** Which headers a request's context came in: the agent answers in the same ones (plus traceparent). */
export type TraceFormat = 'w3c' | 'b3' | 'b3multi';

export interface ExtractedTrace {
  readonly context: TraceContext;
  readonly format: TraceFormat;
}

const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;
const ZEROS = /^0+$/;

/** W3C traceparent: `00-<trace-id>-<parent-id>-<flags>`; later versions may append fields. */
export function parseTraceparent(value: string): TraceContext | undefined {
  const parts = value.trim().split('-');
  if (parts.length < 4) return undefined;
  const [version, traceId, spanId, flags] = parts as [string, string, string, string];
  if (!/^[0-9a-f]{2}$/.test(version) || version === 'ff') return undefined;
  if (version === '00' && parts.length !== 4) return undefined;
  if (!HEX32.test(traceId) || ZEROS.test(traceId) || !HEX16.test(spanId) || ZEROS.test(spanId) || !/^[0-9a-f]{2}$/.test(flags)) return undefined;
  return { traceId, spanId, sampled: (parseInt(flags, 16) & 1) === 1 };
}

export function formatTraceparent(ctx: TraceContext): string {
  return `00-${ctx.traceId}-${ctx.spanId}-${ctx.sampled ? '01' : '00'}`;
}

/** B3 single header: `<trace-id>-<span-id>[-<sampled>[-<parent-span-id>]]`; a bare `0`/`1`/`d` carries no ids and is ignored. */
export function parseB3Single(value: string): TraceContext | undefined {
  const [traceId, spanId, sampling] = value.trim().toLowerCase().split('-');
  if (traceId === undefined || spanId === undefined) return undefined;
  const ids = b3Ids(traceId, spanId);
  if (!ids) return undefined;
  // Absent sampling means "defer": Envoy and Istio then sample as for a new trace; 1 or d (debug) samples.
  return { ...ids, sampled: sampling === '1' || sampling === 'd' };
}

/** B3 multi headers: X-B3-TraceId, X-B3-SpanId, X-B3-Sampled, X-B3-Flags (1 = debug, sampled). */
export function parseB3Multi(headers: RequestHeaders): TraceContext | undefined {
  const first = (name: string): string | undefined => headers.get(name)?.[0]?.trim().toLowerCase();
  const traceId = first('x-b3-traceid');
  const spanId = first('x-b3-spanid');
  if (traceId === undefined || spanId === undefined) return undefined;
  const ids = b3Ids(traceId, spanId);
  if (!ids) return undefined;
  const sampled = first('x-b3-sampled');
  return { ...ids, sampled: sampled === '1' || sampled === 'true' || first('x-b3-flags') === '1' };
}

/** B3 trace ids may be 64-bit: left-padded to 128, as OpenTelemetry's B3 propagator does. */
function b3Ids(traceId: string, spanId: string): { traceId: string; spanId: string } | undefined {
  const padded = traceId.length === 16 ? traceId.padStart(32, '0') : traceId;
  if (!HEX32.test(padded) || ZEROS.test(padded) || !HEX16.test(spanId) || ZEROS.test(spanId)) return undefined;
  return { traceId: padded, spanId };
}

/** The request's trace context: traceparent first (W3C wins when both are sent), then b3, then X-B3-*. */
export function extractTrace(headers: RequestHeaders): ExtractedTrace | undefined {
  const traceparent = headers.get('traceparent');
  // Two traceparent headers are invalid (W3C §3.2.1): the request starts a new trace.
  if (traceparent?.length === 1) {
    const ctx = parseTraceparent(traceparent[0]!);
    const state = headers.get('tracestate')?.join(',');
    if (ctx) return { context: state ? { ...ctx, traceState: state } : ctx, format: 'w3c' };
  }
  const b3 = headers.get('b3')?.[0];
  const single = b3 !== undefined ? parseB3Single(b3) : undefined;
  if (single) return { context: single, format: 'b3' };
  const multi = parseB3Multi(headers);
  return multi ? { context: multi, format: 'b3multi' } : undefined;
}

/** Every header a trace context travels in: a forwarded request loses its own before traceHeaders() adds ours. */
export const TRACE_HEADER_NAMES: readonly string[] = ['traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled', 'x-b3-flags'];

/**
 * The trace headers to send upstream for `ctx` (whose spanId is the sender's span, i.e. ours): always
 * traceparent (and tracestate when there is one), and B3 too in the format the request used. Callers
 * remove the request's own trace headers first (`TRACE_HEADER_NAMES`), so old and new never mix.
 */
export function traceHeaders(ctx: TraceContext, format: TraceFormat, parentSpanId?: string): Record<string, string> {
  const out: Record<string, string> = { traceparent: formatTraceparent(ctx) };
  if (ctx.traceState) out['tracestate'] = ctx.traceState;
  if (format === 'b3') out['b3'] = `${ctx.traceId}-${ctx.spanId}-${ctx.sampled ? '1' : '0'}${parentSpanId ? `-${parentSpanId}` : ''}`;
  if (format === 'b3multi') {
    out['x-b3-traceid'] = ctx.traceId;
    out['x-b3-spanid'] = ctx.spanId;
    out['x-b3-sampled'] = ctx.sampled ? '1' : '0';
    if (parentSpanId) out['x-b3-parentspanid'] = parentSpanId;
  }
  return out;
}

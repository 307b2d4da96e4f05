// Request traces: W3C trace context (and Zipkin's B3, single or multi header) read from each request and
// written onward, one span per request on each side (CLIENT on the source agent, SERVER on the
// destination agent, so a request crossing two nodes shows as a parent/child pair), exported with
// OpenTelemetry over OTLP/HTTP (JSON) to a collector. Sampling is parent-based with a ratio for new
// traces, as Istio's `sampling` percentage. Without a collector the agent still propagates the trace
// context unchanged: applications' own traces never break because of the mesh. The headers' formats
// are trace-context.ts's.

import {
  type Attributes,
  type Context,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  createTraceState,
  trace,
} from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  type SpanExporter,
  type SpanProcessor,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base';
import type { RequestHeaders } from '../l7/request.js';
import type { MeshService, Workload } from '../state/model.js';
import type { WorkloadStore } from '../state/store.js';
import { type EffectiveTelemetry, TelemetryPolicies, customTagValues } from './telemetry-policy.js';
import { type ExtractedTrace, type TraceContext, extractTrace, traceHeaders } from './trace-context.js';

type TracingSettings = EffectiveTelemetry['tracing'];

// ------------------------------------------------------------------------------------------ options

export interface TracingConfig {
  /** The collector's OTLP/HTTP traces URL, e.g. http://otel-collector.observability:4318/v1/traces. */
  readonly endpoint: string;
  /** New traces sampled, in percent (Istio's meshConfig tracing `sampling`); a request's parent decides otherwise. */
  readonly samplingPercent: number;
}

/** Istio's default sampling percentage. */
export const DEFAULT_SAMPLING_PERCENT = 1;

/** node:util parseArgs definitions for `ambit run`: spread them into its options. */
export const TRACING_FLAGS = {
  'otlp-endpoint': { type: 'string' },
  'trace-sampling': { type: 'string' },
} as const;

export const TRACING_USAGE = `  --otlp-endpoint <url>        export request spans over OTLP/HTTP to this collector (a base URL
                               gets /v1/traces; default: $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else
                               $OTEL_EXPORTER_OTLP_ENDPOINT; none: no spans, trace headers still pass)
  --trace-sampling <percent>   new traces sampled, 0 to 100; a request's parent decides otherwise
                               (default: ${DEFAULT_SAMPLING_PERCENT}, Istio's)
`;

export type TracingFlagsResult = { readonly ok: true; readonly tracing?: TracingConfig } | { readonly ok: false; readonly message: string };

/** Reads --otlp-endpoint and --trace-sampling (and OTel's environment variables); undefined tracing means off. */
export function parseTracingFlags(values: { readonly 'otlp-endpoint'?: string | undefined; readonly 'trace-sampling'?: string | undefined }, env: NodeJS.ProcessEnv = process.env): TracingFlagsResult {
  const sampling = values['trace-sampling'];
  const samplingPercent = sampling === undefined ? DEFAULT_SAMPLING_PERCENT : Number(sampling);
  if (sampling !== undefined && (sampling.trim() === '' || !Number.isFinite(samplingPercent) || samplingPercent < 0 || samplingPercent > 100)) {
    return { ok: false, message: `--trace-sampling ${JSON.stringify(sampling)}: expected a percentage from 0 to 100, such as 1 or 12.5` };
  }
  const flag = values['otlp-endpoint'];
  const fromEnv = env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'] ?? (env['OTEL_EXPORTER_OTLP_ENDPOINT'] ? withTracesPath(env['OTEL_EXPORTER_OTLP_ENDPOINT']) : undefined);
  const raw = flag !== undefined ? withTracesPath(flag) : fromEnv;
  if (raw === undefined) {
    if (sampling !== undefined) return { ok: false, message: '--trace-sampling needs a collector: pass --otlp-endpoint <url> too' };
    return { ok: true };
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, message: `--otlp-endpoint ${JSON.stringify(flag ?? raw)}: expected an http:// or https:// URL such as http://otel-collector:4318/v1/traces` };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return { ok: false, message: `--otlp-endpoint ${JSON.stringify(flag ?? raw)}: expected an http:// or https:// URL (OTLP/HTTP), got ${url.protocol}` };
  }
  return { ok: true, tracing: { endpoint: url.toString(), samplingPercent } };
}

/** OTel's rule for a base endpoint: the traces signal lives at /v1/traces. */
function withTracesPath(value: string): string {
  try {
    const url = new URL(value);
    if (url.pathname === '/' || url.pathname === '') url.pathname = '/v1/traces';
    return url.toString();
  } catch {
    return value;
  }
}

// ------------------------------------------------------------------------------------------- spans

/** What a span says about the request when it starts. */
export interface SpanRequest {
  readonly headers: RequestHeaders;
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  /** "HTTP/1.1" or "HTTP/2". */
  readonly httpVersion: string;
  /** The workload whose proxy this span stands for: the client on the source side, the server on the destination. */
  readonly workload?: { readonly canonicalService: string; readonly namespace: string; readonly canonicalRevision?: string };
  /** Names the span, as Envoy's decorator: default `<authority>/*`. */
  readonly operation?: string;
  readonly requestId?: string;
  readonly peerAddress?: string;
  /** The Service host the request is for (Envoy's upstream_cluster). */
  readonly upstreamCluster?: string;
  /** The proxied workload and the Service it serves, whose Telemetry tracing settings apply. */
  readonly proxied?: { readonly workload: Workload; readonly service?: MeshService };
}

/** How the request ended, for the span's attributes and status. */
export interface SpanOutcome {
  readonly statusCode: number;
  readonly grpcStatus?: number;
  readonly responseFlags?: string;
  readonly upstreamHost?: string;
  readonly requestBytes?: number;
  readonly responseBytes?: number;
}

export interface RequestSpan {
  /** The trace this request belongs to (for the access log); undefined when tracing is off and none came in. */
  readonly traceId: string | undefined;
  readonly sampled: boolean;
  /** Headers to set on the upstream request, after removing TRACE_HEADER_NAMES from it. */
  readonly upstreamHeaders: Readonly<Record<string, string>>;
  /** Ends the span (once; later calls are ignored). */
  end(outcome: SpanOutcome): void;
}

/** The node-wide tracer: one span per request, exported in batches. */
export class RequestTracer {
  readonly #processor: SpanProcessor | undefined;
  readonly #sampler: ParentBasedSampler | undefined;
  readonly #tracers = new Map<string, Tracer>();
  readonly #node: string;
  #policies: TelemetryPolicies | undefined;

  private constructor(node: string, processor?: SpanProcessor, sampler?: ParentBasedSampler) {
    this.#node = node;
    this.#processor = processor;
    this.#sampler = sampler;
  }

  /** Tracing off: contexts pass through unchanged and nothing is exported. */
  static disabled(node = 'unknown'): RequestTracer {
    return new RequestTracer(node);
  }

  /** Spans exported over OTLP/HTTP JSON to `config.endpoint`. `exporter` replaces it (tests). */
  static create(config: TracingConfig, node: string, exporter?: SpanExporter): RequestTracer {
    const spanExporter = exporter ?? new OTLPTraceExporter({ url: config.endpoint, timeoutMillis: 10_000 });
    // Bounded queue: when the collector is slow, spans are dropped, never the agent's memory.
    const processor = new BatchSpanProcessor(spanExporter, { maxQueueSize: 2048, maxExportBatchSize: 512, scheduledDelayMillis: 1000 });
    const sampler = new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.samplingPercent / 100) });
    return new RequestTracer(node, processor, sampler);
  }

  /** Applies Telemetry tracing settings (sampling, span reporting, custom tags) from the store's snapshots. */
  followTelemetry(store: WorkloadStore): void {
    this.#policies = new TelemetryPolicies(store);
  }

  get enabled(): boolean {
    return this.#processor !== undefined;
  }

  /**
   * Starts the span of one request: CLIENT on the source agent (before routing upstream), SERVER on the
   * destination agent (before the application). Its parent is the request's incoming context.
   */
  startSpan(kind: 'client' | 'server', request: SpanRequest): RequestSpan {
    const incoming = extractTrace(request.headers);
    const format = incoming?.format ?? 'w3c';
    if (!this.#processor) return passThrough(incoming);

    const parent = incoming ? remoteParent(incoming.context) : ROOT_CONTEXT;
    // Merged once per workload and snapshot (agent/telemetry/telemetry-policy.ts).
    const policy = request.proxied && this.#policies?.forWorkload(request.proxied.workload, kind === 'client' ? 'CLIENT' : 'SERVER', request.proxied.service).tracing;
    const span = this.#tracer(request.workload, policy || undefined).startSpan(request.operation ?? `${request.authority}/*`, { kind: kind === 'client' ? SpanKind.CLIENT : SpanKind.SERVER }, parent);
    // Tags only for a span that is exported: an unsampled one still carries its context upstream, nothing else.
    if (span.isRecording()) {
      span.setAttributes(startAttributes(request, this.#node));
      if (policy && policy.customTags.length > 0) span.setAttributes(customTagValues(policy.customTags, request.headers));
    }
    const sc = span.spanContext();
    const ctx: TraceContext = { traceId: sc.traceId, spanId: sc.spanId, sampled: (sc.traceFlags & 1) === 1, ...(incoming?.context.traceState ? { traceState: incoming.context.traceState } : {}) };
    let ended = false;
    return {
      traceId: ctx.traceId,
      sampled: ctx.sampled,
      upstreamHeaders: traceHeaders(ctx, format, incoming?.context.spanId),
      end: (outcome) => {
        if (ended) return;
        ended = true;
        if (span.isRecording()) endSpan(span, outcome);
      },
    };
  }

  /** Exports what is queued (tests, and before the agent exits). */
  async flush(): Promise<void> {
    await this.#processor?.forceFlush();
  }

  async shutdown(): Promise<void> {
    await this.#processor?.shutdown();
  }

  /**
   * One provider per proxied workload, so spans carry its service.name as Istio's do (`<service>.<namespace>`),
   * and per Telemetry tracing settings: its own root sampling percentage, and no processor when span
   * reporting is disabled (the span still gives the request its context, as Istio documents).
   */
  #tracer(workload: SpanRequest['workload'], policy?: TracingSettings): Tracer {
    const serviceName = workload ? `${workload.canonicalService}.${workload.namespace}` : 'ambit';
    const sampling = policy?.randomSamplingPercentage;
    const reporting = !policy?.disableSpanReporting;
    const key = policy ? `${serviceName}|${sampling ?? ''}|${reporting}` : serviceName;
    let tracer = this.#tracers.get(key);
    if (!tracer) {
      // A bounded cache: past it, the oldest workload's tracer is rebuilt on its next request.
      if (this.#tracers.size >= 1024) this.#tracers.delete(this.#tracers.keys().next().value!);
      const provider = new BasicTracerProvider({
        resource: resourceFromAttributes({ 'service.name': serviceName, 'service.namespace': workload?.namespace ?? 'unknown', 'host.name': this.#node }),
        sampler: sampling === undefined ? this.#sampler! : new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(sampling / 100) }),
        spanProcessors: reporting ? [this.#processor!] : [],
      });
      tracer = provider.getTracer('ambit');
      this.#tracers.set(key, tracer);
    }
    return tracer;
  }
}

function passThrough(incoming: ExtractedTrace | undefined): RequestSpan {
  return {
    traceId: incoming?.context.traceId,
    sampled: incoming?.context.sampled ?? false,
    // The incoming headers stay on the request as they are: nothing to replace.
    upstreamHeaders: {},
    end: () => {},
  };
}

function remoteParent(ctx: TraceContext): Context {
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: ctx.traceId,
    spanId: ctx.spanId,
    traceFlags: ctx.sampled ? 1 : 0,
    isRemote: true,
    ...(ctx.traceState ? { traceState: createTraceState(ctx.traceState) } : {}),
  });
}

/** Envoy's and Istio's span tags, so trace UIs show what a sidecar's span would. */
function startAttributes(r: SpanRequest, node: string): Attributes {
  const attributes: Attributes = {
    component: 'proxy',
    node_id: node,
    'http.method': r.method,
    'http.url': `http://${r.authority}${r.path}`,
    'http.protocol': r.httpVersion,
    user_agent: r.headers.get('user-agent')?.[0] ?? '-',
  };
  if (r.requestId) attributes['guid:x-request-id'] = r.requestId;
  if (r.peerAddress) attributes['peer.address'] = r.peerAddress;
  if (r.upstreamCluster) attributes['upstream_cluster'] = r.upstreamCluster;
  if (r.workload) {
    attributes['istio.canonical_service'] = r.workload.canonicalService;
    attributes['istio.namespace'] = r.workload.namespace;
    if (r.workload.canonicalRevision) attributes['istio.canonical_revision'] = r.workload.canonicalRevision;
  }
  return attributes;
}

function endSpan(span: Span, o: SpanOutcome): void {
  span.setAttribute('http.status_code', o.statusCode);
  span.setAttribute('response_flags', o.responseFlags ?? '-');
  if (o.grpcStatus !== undefined) span.setAttribute('grpc.status_code', o.grpcStatus);
  if (o.upstreamHost) span.setAttribute('upstream_host', o.upstreamHost);
  if (o.requestBytes !== undefined) span.setAttribute('request_size', o.requestBytes);
  if (o.responseBytes !== undefined) span.setAttribute('response_size', o.responseBytes);
  // Envoy marks a span as an error for 5xx, for no response at all, and for a failing gRPC status.
  const failed = o.statusCode >= 500 || o.statusCode === 0 || (o.grpcStatus !== undefined && o.grpcStatus !== 0);
  if (failed) span.setStatus({ code: SpanStatusCode.ERROR });
  span.end();
}

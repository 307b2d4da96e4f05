// The exporting half of request tracing (tracing.ts): OpenTelemetry's tracer providers, sampler and
// batch processor, and the OTLP/HTTP exporter. Only RequestTracer.create imports this module, at run
// time, so that an agent started without a collector never loads OpenTelemetry (docs/reliability.md,
// "Crashes": its modules are ~0.1 s of a restarted agent's CPU).

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
import type { WorkloadStore } from '../state/store.js';
import { type EffectiveTelemetry, TelemetryPolicies, customTagValues } from './telemetry-policy.js';
import { type ExtractedTrace, type TraceContext, traceHeaders } from './trace-context.js';
import type { RequestSpan, SpanOutcome, SpanRequest, TracingConfig } from './tracing.js';

type TracingSettings = EffectiveTelemetry['tracing'];

/** Spans of one node, batched to one collector. */
export class SpanExport {
  readonly #processor: SpanProcessor;
  readonly #sampler: ParentBasedSampler;
  readonly #tracers = new Map<string, Tracer>();
  readonly #node: string;
  #policies: TelemetryPolicies | undefined;

  constructor(config: TracingConfig, node: string, exporter?: SpanExporter) {
    const spanExporter = exporter ?? new OTLPTraceExporter({ url: config.endpoint, timeoutMillis: 10_000 });
    // Bounded queue: when the collector is slow, spans are dropped, never the agent's memory.
    this.#processor = new BatchSpanProcessor(spanExporter, { maxQueueSize: 2048, maxExportBatchSize: 512, scheduledDelayMillis: 1000 });
    this.#sampler = new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.samplingPercent / 100) });
    this.#node = node;
  }

  followTelemetry(store: WorkloadStore): void {
    this.#policies = new TelemetryPolicies(store);
  }

  /** The span of one request whose incoming context (if any) is `incoming`. */
  startSpan(kind: 'client' | 'server', request: SpanRequest, incoming: ExtractedTrace | undefined): RequestSpan {
    const format = incoming?.format ?? 'w3c';
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

  async flush(): Promise<void> {
    await this.#processor.forceFlush();
  }

  async shutdown(): Promise<void> {
    await this.#processor.shutdown();
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
        sampler: sampling === undefined ? this.#sampler : new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(sampling / 100) }),
        spanProcessors: reporting ? [this.#processor] : [],
      });
      tracer = provider.getTracer('ambit');
      this.#tracers.set(key, tracer);
    }
    return tracer;
  }
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

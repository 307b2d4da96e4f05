// Request traces: W3C trace context (and Zipkin's B3, single or multi header) read from each request and
// written onward, one span per request on each side (CLIENT on the source agent, SERVER on the
// destination agent, so a request crossing two nodes shows as a parent/child pair), exported with
// OpenTelemetry over OTLP/HTTP (JSON) to a collector by otlp-spans.ts, which loads only when a collector
// is set: its ~250 modules are start-up CPU that a restarted agent without one need not spend. Sampling
// is parent-based with a ratio for new traces, as Istio's `sampling` percentage. Without a collector the
// agent still propagates the trace context unchanged: applications' own traces never break because of
// the mesh. The headers' formats are trace-context.ts's.

import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { RequestHeaders } from '../l7/request.js';
import type { MeshService, Workload } from '../state/model.js';
import type { WorkloadStore } from '../state/store.js';
import { messageOf } from '../identity/errors.js';
import type { SpanExport } from './otlp-spans.js';
import { type ExtractedTrace, extractTrace } from './trace-context.js';

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
  readonly #export: SpanExport | undefined;

  private constructor(spanExport?: SpanExport) {
    this.#export = spanExport;
  }

  /** Tracing off: contexts pass through unchanged and nothing is exported. */
  static disabled(): RequestTracer {
    return new RequestTracer();
  }

  /**
   * Spans exported over OTLP/HTTP JSON to `config.endpoint`. `exporter` replaces it (tests). Loads
   * OpenTelemetry now, so that an agent without a collector never does.
   */
  static async create(config: TracingConfig, node: string, exporter?: SpanExporter): Promise<RequestTracer> {
    let otlp: typeof import('./otlp-spans.js');
    try {
      otlp = await import('./otlp-spans.js');
    } catch (err) {
      throw new Error(
        `--otlp-endpoint ${config.endpoint}: cannot load OpenTelemetry (agent/telemetry/otlp-spans.ts and its @opentelemetry packages): ${messageOf(err)}; ` +
          "reinstall Ambit's dependencies (npm ci), or run without --otlp-endpoint",
      );
    }
    return new RequestTracer(new otlp.SpanExport(config, node, exporter));
  }

  /** Applies Telemetry tracing settings (sampling, span reporting, custom tags) from the store's snapshots. */
  followTelemetry(store: WorkloadStore): void {
    this.#export?.followTelemetry(store);
  }

  get enabled(): boolean {
    return this.#export !== undefined;
  }

  /**
   * Starts the span of one request: CLIENT on the source agent (before routing upstream), SERVER on the
   * destination agent (before the application). Its parent is the request's incoming context.
   */
  startSpan(kind: 'client' | 'server', request: SpanRequest): RequestSpan {
    const incoming = extractTrace(request.headers);
    return this.#export ? this.#export.startSpan(kind, request, incoming) : passThrough(incoming);
  }

  /** Exports what is queued (tests, and before the agent exits). */
  async flush(): Promise<void> {
    await this.#export?.flush();
  }

  async shutdown(): Promise<void> {
    await this.#export?.shutdown();
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

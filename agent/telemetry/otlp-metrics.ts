// Pushes the agent's Prometheus registry to an OpenTelemetry collector over OTLP/HTTP with the JSON
// encoding (ExportMetricsServiceRequest, opentelemetry-proto metrics/v1), for clusters that collect
// metrics by push rather than by scraping :15020. The same series, names and labels as the scrape:
// counters become cumulative monotonic sums, gauges gauges, histograms explicit-bucket histograms
// (Prometheus' cumulative buckets turned into per-bucket counts), summaries summaries. Cumulative
// temporality means a lost push loses resolution, never counts, so there is no retry queue.
//
// Written here rather than with @opentelemetry/sdk-metrics: prom-client already owns the instruments,
// and bridging them into the SDK would mean a second copy of every series; the encoding is small.

import type { Registry } from 'prom-client';
import type { Logger } from './log.js';

export interface OtlpMetricsConfig {
  /** The collector's OTLP/HTTP metrics URL, e.g. http://otel-collector.observability:4318/v1/metrics. */
  readonly endpoint: string;
  readonly intervalMs: number;
}

export const DEFAULT_OTLP_METRICS_INTERVAL_MS = 30_000;
const PUSH_TIMEOUT_MS = 10_000;

/** node:util parseArgs definitions for `ambit run`: spread them into its options. */
export const OTLP_METRICS_FLAGS = {
  'otlp-metrics-endpoint': { type: 'string' },
  'otlp-metrics-interval': { type: 'string' },
} as const;

export const OTLP_METRICS_USAGE = `  --otlp-metrics-endpoint <url> also push the metrics of :15020 over OTLP/HTTP (JSON) to this
                               collector (a base URL gets /v1/metrics; default:
                               $OTEL_EXPORTER_OTLP_METRICS_ENDPOINT; none: scrape only)
  --otlp-metrics-interval <duration> how often to push (default: 30s)
`;

export type OtlpMetricsFlagsResult = { readonly ok: true; readonly otlpMetrics?: OtlpMetricsConfig } | { readonly ok: false; readonly message: string };

/** Reads --otlp-metrics-endpoint and --otlp-metrics-interval; undefined otlpMetrics means no push. */
export function parseOtlpMetricsFlags(
  values: { readonly 'otlp-metrics-endpoint'?: string | undefined; readonly 'otlp-metrics-interval'?: string | undefined },
  parseDurationMs: (flag: string, value: string) => number,
  env: NodeJS.ProcessEnv = process.env,
): OtlpMetricsFlagsResult {
  const flag = values['otlp-metrics-endpoint'];
  const raw = flag ?? env['OTEL_EXPORTER_OTLP_METRICS_ENDPOINT'];
  const interval = values['otlp-metrics-interval'];
  if (raw === undefined || raw === '') {
    if (interval !== undefined) return { ok: false, message: '--otlp-metrics-interval needs a collector: pass --otlp-metrics-endpoint <url> too' };
    return { ok: true };
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, message: `--otlp-metrics-endpoint ${JSON.stringify(raw)}: expected an http:// or https:// URL such as http://otel-collector:4318/v1/metrics` };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return { ok: false, message: `--otlp-metrics-endpoint ${JSON.stringify(raw)}: expected an http:// or https:// URL (OTLP/HTTP), got ${url.protocol}` };
  }
  // OTel's rule for a base endpoint: the metrics signal lives at /v1/metrics.
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/v1/metrics';
  const intervalMs = interval === undefined ? DEFAULT_OTLP_METRICS_INTERVAL_MS : parseDurationMs('--otlp-metrics-interval', interval);
  if (intervalMs < 1000) return { ok: false, message: `--otlp-metrics-interval ${interval}: at least 1s` };
  return { ok: true, otlpMetrics: { endpoint: url.toString(), intervalMs } };
}

// ----------------------------------------------------------------------------------------- encoding

/** What the encoder reads of prom-client's `getMetricsAsJSON()`. */
export interface PromMetric {
  readonly name: string;
  readonly help: string;
  readonly type: string;
  readonly values: readonly { readonly value: number; readonly labels: Readonly<Record<string, string | number>>; readonly metricName?: string }[];
}

type AnyValue = { stringValue: string };
interface KeyValue {
  key: string;
  value: AnyValue;
}
interface NumberPoint {
  attributes: KeyValue[];
  startTimeUnixNano: string;
  timeUnixNano: string;
  asDouble: number;
}
interface HistogramPoint {
  attributes: KeyValue[];
  startTimeUnixNano: string;
  timeUnixNano: string;
  count: string;
  sum: number;
  bucketCounts: string[];
  explicitBounds: number[];
}
interface SummaryPoint {
  attributes: KeyValue[];
  startTimeUnixNano: string;
  timeUnixNano: string;
  count: string;
  sum: number;
  quantileValues: { quantile: number; value: number }[];
}
export interface OtlpMetric {
  name: string;
  description: string;
  unit: string;
  sum?: { dataPoints: NumberPoint[]; aggregationTemporality: number; isMonotonic: boolean };
  gauge?: { dataPoints: NumberPoint[] };
  histogram?: { dataPoints: HistogramPoint[]; aggregationTemporality: number };
  summary?: { dataPoints: SummaryPoint[] };
}
export interface ExportMetricsServiceRequest {
  resourceMetrics: {
    resource: { attributes: KeyValue[] };
    scopeMetrics: { scope: { name: string; version: string }; metrics: OtlpMetric[] }[];
  }[];
}

/** AGGREGATION_TEMPORALITY_CUMULATIVE: Prometheus counters count from the process start. */
const CUMULATIVE = 2;

export interface EncodeContext {
  /** service.name, service.version, k8s.node.name … on the resource. */
  readonly resource: Readonly<Record<string, string>>;
  readonly version: string;
  readonly startTimeMs: number;
  readonly nowMs: number;
}

/** One OTLP request holding every series of the registry. */
export function encodeMetrics(metrics: readonly PromMetric[], ctx: EncodeContext): ExportMetricsServiceRequest {
  const times = { startTimeUnixNano: nanos(ctx.startTimeMs), timeUnixNano: nanos(ctx.nowMs) };
  const out: OtlpMetric[] = [];
  for (const metric of metrics) {
    const base = { name: metric.name, description: metric.help, unit: '' };
    switch (metric.type) {
      case 'counter':
        out.push({ ...base, sum: { dataPoints: numberPoints(metric, times), aggregationTemporality: CUMULATIVE, isMonotonic: true } });
        break;
      case 'gauge':
        out.push({ ...base, gauge: { dataPoints: numberPoints(metric, times) } });
        break;
      case 'histogram':
        out.push({ ...base, histogram: { dataPoints: histogramPoints(metric, times), aggregationTemporality: CUMULATIVE } });
        break;
      case 'summary':
        out.push({ ...base, summary: { dataPoints: summaryPoints(metric, times) } });
        break;
      default:
        // prom-client has no other types; an unknown one is skipped rather than mis-typed.
        break;
    }
  }
  return {
    resourceMetrics: [
      {
        resource: { attributes: attributes(ctx.resource) },
        scopeMetrics: [{ scope: { name: 'ambit', version: ctx.version }, metrics: out.filter((m) => pointsOf(m) > 0) }],
      },
    ],
  };
}

function pointsOf(m: OtlpMetric): number {
  return (m.sum?.dataPoints.length ?? 0) + (m.gauge?.dataPoints.length ?? 0) + (m.histogram?.dataPoints.length ?? 0) + (m.summary?.dataPoints.length ?? 0);
}

/** OTLP/JSON writes 64-bit integers as decimal strings. */
function nanos(ms: number): string {
  return (BigInt(Math.round(ms)) * 1_000_000n).toString();
}

function attributes(labels: Readonly<Record<string, string | number>>): KeyValue[] {
  return Object.entries(labels).map(([key, value]) => ({ key, value: { stringValue: String(value) } }));
}

type Times = { readonly startTimeUnixNano: string; readonly timeUnixNano: string };

function numberPoints(metric: PromMetric, times: Times): NumberPoint[] {
  // JSON has no NaN or Infinity: such a sample (a gauge nobody set) is left out.
  return metric.values.filter((v) => Number.isFinite(v.value)).map((v) => ({ attributes: attributes(v.labels), ...times, asDouble: v.value }));
}

/** Groups a histogram's _bucket/_sum/_count samples by their labels (less `le`). */
function histogramPoints(metric: PromMetric, times: Times): HistogramPoint[] {
  const series = new Map<string, { labels: Record<string, string | number>; buckets: { le: number; count: number }[]; sum: number; count: number }>();
  for (const v of metric.values) {
    const { le, ...labels } = v.labels;
    const key = JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)));
    let s = series.get(key);
    if (!s) series.set(key, (s = { labels, buckets: [], sum: 0, count: 0 }));
    if (v.metricName?.endsWith('_bucket')) s.buckets.push({ le: le === '+Inf' ? Infinity : Number(le), count: v.value });
    else if (v.metricName?.endsWith('_sum')) s.sum = v.value;
    else if (v.metricName?.endsWith('_count')) s.count = v.value;
  }
  return [...series.values()].map((s) => {
    const buckets = s.buckets.sort((a, b) => a.le - b.le);
    const finite = buckets.filter((b) => Number.isFinite(b.le));
    // Prometheus buckets are cumulative (count of observations <= le); OTLP's count each bucket alone,
    // with one more bucket than bounds for what lies above the last bound.
    const bucketCounts: string[] = [];
    let previous = 0;
    for (const b of finite) {
      bucketCounts.push(String(Math.max(0, b.count - previous)));
      previous = b.count;
    }
    bucketCounts.push(String(Math.max(0, s.count - previous)));
    return { attributes: attributes(s.labels), ...times, count: String(s.count), sum: s.sum, bucketCounts, explicitBounds: finite.map((b) => b.le) };
  });
}

function summaryPoints(metric: PromMetric, times: Times): SummaryPoint[] {
  const series = new Map<string, SummaryPoint & { labels: Record<string, string | number> }>();
  for (const v of metric.values) {
    const { quantile, ...labels } = v.labels;
    const key = JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)));
    let s = series.get(key);
    if (!s) series.set(key, (s = { labels, attributes: attributes(labels), ...times, count: '0', sum: 0, quantileValues: [] }));
    if (v.metricName?.endsWith('_sum')) s.sum = v.value;
    else if (v.metricName?.endsWith('_count')) s.count = String(v.value);
    else if (quantile !== undefined && Number.isFinite(v.value)) s.quantileValues.push({ quantile: Number(quantile), value: v.value });
  }
  return [...series.values()].map(({ labels: _labels, ...point }) => point);
}

// ---------------------------------------------------------------------------------------------- push

/** Pushes the registry every interval until `close()`, which makes one last push. */
export class OtlpMetricsPusher {
  readonly #registry: Registry;
  readonly #config: OtlpMetricsConfig;
  readonly #resource: Readonly<Record<string, string>>;
  readonly #version: string;
  readonly #log: Logger;
  readonly #startTimeMs = Date.now();
  #timer: NodeJS.Timeout | undefined;
  #pushing: Promise<void> = Promise.resolve();
  #failing = false;

  constructor(registry: Registry, config: OtlpMetricsConfig, identity: { readonly resource: Readonly<Record<string, string>>; readonly version: string }, log: Logger) {
    this.#registry = registry;
    this.#config = config;
    this.#resource = identity.resource;
    this.#version = identity.version;
    this.#log = log;
  }

  start(): void {
    this.#log.info({ endpoint: this.#config.endpoint, intervalMs: this.#config.intervalMs }, `pushing metrics over OTLP/HTTP to ${this.#config.endpoint} every ${this.#config.intervalMs / 1000} s`);
    this.#timer = setInterval(() => void this.push(), this.#config.intervalMs);
    this.#timer.unref();
  }

  /** One push; pushes never overlap (a slow collector delays the next one instead). */
  push(): Promise<void> {
    this.#pushing = this.#pushing.then(() => this.#pushOnce());
    return this.#pushing;
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    // The last counts since the previous push, so a rollout does not lose its final interval.
    await this.push();
  }

  async #pushOnce(): Promise<void> {
    let body: string;
    try {
      const metrics = (await this.#registry.getMetricsAsJSON()) as unknown as PromMetric[];
      body = JSON.stringify(encodeMetrics(metrics, { resource: this.#resource, version: this.#version, startTimeMs: this.#startTimeMs, nowMs: Date.now() }));
    } catch (err) {
      this.#log.error({ err }, `collecting metrics for the OTLP push failed: ${(err as Error).message}`);
      return;
    }
    try {
      const res = await fetch(this.#config.endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        signal: AbortSignal.timeout(PUSH_TIMEOUT_MS),
      });
      const answer = await res.text().catch(() => '');
      if (!res.ok) throw new Error(`HTTP ${res.status}${answer ? `: ${answer.slice(0, 200)}` : ''}`);
      if (this.#failing) this.#log.info({ endpoint: this.#config.endpoint }, `OTLP metrics push to ${this.#config.endpoint} works again`);
      this.#failing = false;
    } catch (err) {
      // One warning per outage; the metrics are cumulative, so the next push that gets through loses nothing.
      const message = `OTLP metrics push to ${this.#config.endpoint} failed: ${(err as Error).message}; trying again in ${this.#config.intervalMs / 1000} s`;
      if (this.#failing) this.#log.debug({ endpoint: this.#config.endpoint }, message);
      else this.#log.warn({ endpoint: this.#config.endpoint }, message);
      this.#failing = true;
    }
  }
}

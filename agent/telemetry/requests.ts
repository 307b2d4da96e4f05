// Per-request telemetry for the ports Ambit handles at L7: Istio's standard HTTP metrics
// (istio_requests_total and the duration and size histograms) with Istio's labels, and one access-log
// record per request with Envoy's fields next to ztunnel's src./dst. ones. The source agent reports
// reporter="source", the destination agent reporter="destination", as a sidecar pair would.

import type { Registry } from 'prom-client';
import type { WorkloadStore } from '../state/store.js';
import { type ConnectionDescription, DEFAULT_CLUSTER_ID, type TrafficLabels, flowLogFields, seriesOwners, trafficLabels, workloadSignature } from './connections.js';
import { AccessLog, type SerializedFields, numberField, optionalStringField, stringField } from './access-log.js';
import type { Logger } from './log.js';
import { type MeshMetrics, PEER_LABELS } from './metrics.js';
import { type CachedSeries, SeriesCache, peersKey } from './series-cache.js';
import { type CounterHandle, type HistogramHandle, SeriesCounter, SeriesHistogram } from './series-metrics.js';
import { type EffectiveTelemetry, TelemetryPolicies, applyTagOverrides, requestAttributes, shouldLog } from './telemetry-policy.js';
import { WorkloadSeries } from './workload-series.js';
import { type FlowLogging, requestFlowRecord } from './flow-log.js';

/**
 * Envoy's response flags that Ambit's HTTP path can raise. UO overflow (circuit breaker), UF upstream
 * connect failure, URX retries or connect attempts exhausted, DI delayed by fault, FI aborted by fault,
 * RL rate limited (local or global), NR no route, UH no healthy upstream, NC no cluster, UT upstream timeout, UC
 * upstream connection terminated, DC downstream connection terminated, UAEX external authorization
 * denied, RLSE rate limit service error (failureMode deny). Several flags join with "," as Envoy prints them; none is "-".
 */
export type HttpResponseFlag = 'UO' | 'UF' | 'URX' | 'DI' | 'FI' | 'RL' | 'NR' | 'UH' | 'NC' | 'UT' | 'UC' | 'DC' | 'UAEX' | 'RLSE';

/** Istio's HTTP label set, in Istio's order. */
export const REQUEST_LABELS = [...PEER_LABELS, 'request_protocol', 'response_code', 'grpc_response_status', 'response_flags', 'connection_security_policy'] as const;

export type RequestLabelName = (typeof REQUEST_LABELS)[number];
export type RequestLabels = Readonly<Record<RequestLabelName, string>>;

/** Envoy's default histogram buckets, which Istio's request histograms use (milliseconds and bytes alike). */
export const ISTIO_HISTOGRAM_BUCKETS: readonly number[] = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];

export interface RequestDescription {
  /** Who sent it to whom: the same description the connection's TCP telemetry uses. */
  readonly connection: ConnectionDescription;
  /** request_protocol: "grpc" when content-type is application/grpc, else "http". */
  readonly protocol: 'http' | 'grpc';
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  /** "HTTP/1.1" or "HTTP/2", as Envoy's %PROTOCOL%. */
  readonly httpVersion: string;
  readonly requestId?: string;
  readonly traceId?: string;
  readonly userAgent?: string;
}

export interface RequestOutcome {
  /** The status sent to the client; 0 when none was (the client went away first). */
  readonly responseCode: number;
  /** grpc-status of a gRPC response (trailers, or trailers-only). */
  readonly grpcStatus?: number;
  readonly flags?: readonly HttpResponseFlag[];
  /** Request and response body bytes (Istio's istio_request_bytes / istio_response_bytes). */
  readonly requestBytes: number;
  readonly responseBytes: number;
  /** The endpoint that answered, `ip:port` (Envoy's %UPSTREAM_HOST%). */
  readonly upstreamHost?: string;
  /** The VirtualService route that matched (its `name`), or the rate-limit route. */
  readonly routeName?: string;
  /** Envoy's %RESPONSE_CODE_DETAILS%, e.g. rbac_access_denied_matched_policy[ns/name]. */
  readonly responseCodeDetails?: string;
}

export interface RequestTelemetryOptions {
  /** When given, a workload's request series leave /metrics when it leaves the store (or changes labels). */
  readonly store?: WorkloadStore;
  readonly clusterId?: string;
  /** Milliseconds for durations; tests pass a fake. */
  readonly now?: () => number;
  /** The flow log (`--flow-log`): one record per request. */
  readonly flows?: FlowLogging;
}

/** The four request metrics, registered once per registry. */
interface RequestMetrics {
  readonly total: SeriesCounter;
  readonly duration: SeriesHistogram;
  readonly requestBytes: SeriesHistogram;
  readonly responseBytes: SeriesHistogram;
}

/** One label set's handles in the four metrics, resolved when the set is first built. */
interface RequestSeriesHandles {
  readonly total: CounterHandle;
  readonly duration: HistogramHandle;
  readonly requestBytes: HistogramHandle;
  readonly responseBytes: HistogramHandle;
}

type RequestSeries = CachedSeries<RequestLabels> & { readonly handles: RequestSeriesHandles; readonly labelSets: readonly RequestLabels[] };

/** A series under Telemetry metric overrides: a disabled metric has no handle, each metric its own labels. */
type OverriddenSeries = CachedSeries<RequestLabels> & { readonly handles: Partial<RequestSeriesHandles>; readonly labelSets: readonly Readonly<Record<string, string>>[] };

export function requestLabels(d: RequestDescription, o: RequestOutcome, clusterId = DEFAULT_CLUSTER_ID): RequestLabels {
  // prom-client prints labels in the object's order: Istio's, connection_security_policy last.
  const { connection_security_policy, ...peers }: TrafficLabels = trafficLabels(d.connection, clusterId);
  return {
    ...peers,
    request_protocol: d.protocol,
    response_code: String(o.responseCode),
    // Istio leaves it empty for plain HTTP.
    grpc_response_status: d.protocol === 'grpc' && o.grpcStatus !== undefined ? String(o.grpcStatus) : '',
    response_flags: formatFlags(o.flags),
    connection_security_policy,
  };
}

/** Envoy's %RESPONSE_FLAGS%: "-" for none, else the flags once each, joined by ",". */
export function formatFlags(flags: readonly HttpResponseFlag[] | undefined): string {
  // Most requests have no flag and the rest one: neither needs a set built per request.
  if (flags === undefined || flags.length === 0) return '-';
  if (flags.length === 1) return flags[0]!;
  return [...new Set(flags)].join(',');
}

export class RequestTelemetry {
  readonly #metrics: RequestMetrics;
  readonly #cache = new SeriesCache<RequestSeries>();
  readonly #clusterId: string;
  readonly #now: () => number;
  readonly #series: WorkloadSeries<Readonly<Record<string, string>>>;
  readonly #policies: TelemetryPolicies;
  readonly #overridden = new SeriesCache<OverriddenSeries>();
  readonly #accessLog: AccessLog;
  /** One flow's src./dst. fields, serialized once per flow: they lead each of its requests' records. */
  readonly #flowFields = new SeriesCache<SerializedFields>();
  readonly #unsubscribe: () => void;
  readonly #flows: FlowLogging | undefined;

  constructor(
    metrics: MeshMetrics,
    accessLog: Logger,
    options: RequestTelemetryOptions = {},
  ) {
    this.#accessLog = new AccessLog(accessLog);
    this.#metrics = requestMetrics(metrics.registry);
    this.#clusterId = options.clusterId ?? DEFAULT_CLUSTER_ID;
    this.#now = options.now ?? (() => performance.now());
    this.#flows = options.flows;
    const m = this.#metrics;
    this.#policies = new TelemetryPolicies(options.store);
    this.#series = new WorkloadSeries<Readonly<Record<string, string>>>((labels) => {
      for (const metric of [m.total, m.duration, m.requestBytes, m.responseBytes]) metric.remove(labels);
    });
    this.#unsubscribe =
      options.store?.subscribe((next) => {
        this.#cache.clear();
        this.#overridden.clear();
        this.#flowFields.clear();
        this.#series.sweep(next, (w) => workloadSignature(w, this.#clusterId));
      }) ?? (() => {});
  }

  /** Starts the clock for one request; `completed` records it once (later calls are ignored). */
  started(d: RequestDescription): { completed: (o: RequestOutcome) => void } {
    const start = this.#now();
    let done = false;
    return {
      completed: (o) => {
        if (done) return;
        done = true;
        this.record(d, o, this.#now() - start);
      },
    };
  }

  /** Counts one finished request and writes its access-log record. */
  record(d: RequestDescription, o: RequestOutcome, durationMs: number): void {
    // The Telemetry in force, merged once per workload and snapshot; none keeps the cached path.
    const policy = this.#policies.of(d.connection);
    // Who talked to whom, as every cache below keys it: built once per record.
    const peers = peersKey(d.connection);
    const { labelSets, owners, handles } = policy.isDefault ? this.#seriesOf(peers, d, o) : this.#overriddenSeriesOf(peers, d, o, policy);
    handles.total?.inc();
    handles.duration?.observe(durationMs);
    handles.requestBytes?.observe(o.requestBytes);
    handles.responseBytes?.observe(o.responseBytes);
    for (const labels of labelSets) this.#series.record(labels, owners, false);
    if (this.#flows) {
      const flow = { method: d.method, authority: d.authority, path: d.path, protocol: d.httpVersion, code: o.responseCode, durationMs };
      this.#flows.sink.write(requestFlowRecord(this.#flows.node, d.connection, flow));
    }
    if (!policy.isDefault && !shouldLog(policy, requestAttributes(d, o))) return;
    // As Envoy and ztunnel: failures the proxy caused stand out; an application's 5xx is still info.
    const level = o.flags && o.flags.length > 0 ? 'warn' : 'info';
    if (!this.#accessLog.enabled(level)) return;
    this.#accessLog.write(level, this.#flowFieldsOf(peers, d.connection) + requestLogFields(d, o, durationMs), 'request complete');
  }

  /** Stops following the store. */
  close(): void {
    this.#unsubscribe();
  }

  /** The src./dst. fields of one flow (a client connection to one endpoint), serialized when its first request is logged. */
  #flowFieldsOf(peers: string, c: ConnectionDescription): SerializedFields {
    return this.#flowFields.get(`${c.src.addr} ${c.dst.addr} ${peers}`, () => flowLogFields(c, 'without'));
  }

  /** The labels and owners of a request's series: the key holds everything the labels are made of. */
  #seriesOf(peers: string, d: RequestDescription, o: RequestOutcome): RequestSeries {
    const c = d.connection;
    const grpcStatus = d.protocol === 'grpc' ? (o.grpcStatus ?? '') : '';
    const key = `${peers} ${d.protocol} ${o.responseCode} ${grpcStatus} ${o.flags?.join(',') ?? ''}`;
    return this.#cache.get(key, () => {
      const labels = Object.freeze(requestLabels(d, o, this.#clusterId));
      const m = this.#metrics;
      const handles = { total: m.total.labels(labels), duration: m.duration.labels(labels), requestBytes: m.requestBytes.labels(labels), responseBytes: m.responseBytes.labels(labels) };
      return { labels, labelSets: [labels], owners: seriesOwners(c, this.#clusterId), handles };
    });
  }

  /** As #seriesOf, with each metric's plan applied; upserted values that read the request are part of the key. */
  #overriddenSeriesOf(peers: string, d: RequestDescription, o: RequestOutcome, policy: EffectiveTelemetry): OverriddenSeries {
    const c = d.connection;
    const plans = { total: policy.metrics.REQUEST_COUNT, duration: policy.metrics.REQUEST_DURATION, requestBytes: policy.metrics.REQUEST_SIZE, responseBytes: policy.metrics.RESPONSE_SIZE };
    const attributes = requestAttributes(d, o);
    const perMetric = Object.entries(plans).map(([name, plan]) => [name, plan.enabled ? applyTagOverrides({}, plan, attributes) : undefined] as const);
    const grpcStatus = d.protocol === 'grpc' ? (o.grpcStatus ?? '') : '';
    const key = `${peers} ${d.protocol} ${o.responseCode} ${grpcStatus} ${o.flags?.join(',') ?? ''} ${policy.id} ${JSON.stringify(perMetric)}`;
    return this.#overridden.get(key, () => {
      const labels = Object.freeze(requestLabels(d, o, this.#clusterId));
      const m = this.#metrics;
      const handles: { -readonly [K in keyof RequestSeriesHandles]?: RequestSeriesHandles[K] } = {};
      const labelSets: Readonly<Record<string, string>>[] = [];
      for (const [name, plan] of Object.entries(plans) as [keyof RequestSeriesHandles, EffectiveTelemetry['metrics']['REQUEST_COUNT']][]) {
        if (!plan.enabled) continue;
        const own = Object.freeze(applyTagOverrides(labels, plan, attributes));
        labelSets.push(own);
        if (name === 'total') handles.total = m.total.labels(own);
        else handles[name] = m[name].labels(own);
      }
      return { labels, labelSets, owners: seriesOwners(c, this.#clusterId), handles };
    });
  }
}

/** What a request's record says of the request itself, in Envoy's names. */
function requestLogFields(d: RequestDescription, o: RequestOutcome, durationMs: number): SerializedFields {
  return (
    stringField('method', d.method) +
    stringField('path', d.path) +
    stringField('protocol', d.httpVersion) +
    stringField('authority', d.authority) +
    numberField('response_code', o.responseCode) +
    (d.protocol === 'grpc' && o.grpcStatus !== undefined ? numberField('grpc_status', o.grpcStatus) : '') +
    stringField('response_flags', formatFlags(o.flags)) +
    optionalStringField('response_code_details', o.responseCodeDetails) +
    stringField('duration', `${Math.round(durationMs)}ms`) +
    numberField('bytes_received', o.requestBytes) +
    numberField('bytes_sent', o.responseBytes) +
    optionalStringField('upstream_host', o.upstreamHost) +
    optionalStringField('route_name', o.routeName) +
    optionalStringField('x_request_id', d.requestId) +
    optionalStringField('trace_id', d.traceId) +
    optionalStringField('user_agent', d.userAgent)
  );
}

function requestMetrics(registry: Registry): RequestMetrics {
  // One set per registry: a second RequestTelemetry on the same agent (or test) shares them.
  const existing = <T>(name: string): T | undefined => registry.getSingleMetric(name) as T | undefined;
  const histogram = (name: string, help: string): SeriesHistogram => existing<SeriesHistogram>(name) ?? new SeriesHistogram(name, help, registry, ISTIO_HISTOGRAM_BUCKETS);
  return {
    total: existing<SeriesCounter>('istio_requests_total') ?? new SeriesCounter('istio_requests_total', 'The total number of requests', registry),
    duration: histogram('istio_request_duration_milliseconds', 'The duration of requests, in milliseconds'),
    requestBytes: histogram('istio_request_bytes', 'The size of HTTP request bodies, in bytes'),
    responseBytes: histogram('istio_response_bytes', 'The size of HTTP response bodies, in bytes'),
  };
}

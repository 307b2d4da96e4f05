// Per-connection telemetry: Istio's TCP metrics and one access-log record per connection, with
// ztunnel's field names (`src.addr`, `dst.workload`, `direction`, ...) so existing queries keep working.

import type { DenialRecorder } from '../explain/denials.js';
import { canonicalName, canonicalRevision } from '../state/canonical.js';
import type { MeshService, SpiffeId, Workload } from '../state/model.js';
import type { WorkloadStore } from '../state/store.js';
import { AccessLog, type SerializedFields, numberField, optionalStringField, stringField } from './access-log.js';
import type { Logger } from './log.js';
import type { MeshMetrics, TcpLabels } from './metrics.js';
import { type CachedSeries, SeriesCache, peersKey } from './series-cache.js';
import { TelemetryPolicies, connectionAttributes, shouldLog } from './telemetry-policy.js';
import { type SeriesOwner, WorkloadSeries } from './workload-series.js';
import { type FlowLogging, connectionFlowRecord } from './flow-log.js';

/**
 * Why a connection ended badly, as ztunnel's `response_flags`; DNS_RESOLUTION_FAILED is Envoy's `DF`
 * long name (an endpoint's host name did not resolve), which ztunnel has no flag for.
 */
export type ResponseFlag = '-' | 'DENY' | 'CONNECT' | 'TLS_FAILURE' | 'H2_HANDSHAKE_FAILURE' | 'IDENTITY_ERROR' | 'NO_ROUTE' | 'DNS_RESOLUTION_FAILED';

export interface ConnectionDescription {
  readonly direction: 'outbound' | 'inbound';
  readonly src: { readonly addr: string; readonly workload?: Workload; readonly identity?: string };
  readonly dst: { readonly addr: string; readonly hboneAddr?: string; readonly workload?: Workload; readonly service?: MeshService; readonly identity?: string };
  readonly securityPolicy: 'mutual_tls' | 'unknown';
}

/** How a relayed connection ended (the tunnel's relay result has this shape). */
export interface ConnectionOutcome {
  readonly bytesSent: number;
  readonly bytesReceived: number;
  /** `reason` 'idle-timeout': closed by the relay's idle timeout, not by either side failing. */
  readonly error?: { readonly side: string; readonly message: string; readonly reason?: 'idle-timeout' };
}

const UNKNOWN = 'unknown';

/** The cluster id Istio uses when none is configured (istiod's CLUSTER_ID default). */
export const DEFAULT_CLUSTER_ID = 'Kubernetes';

/** The labels a workload contributes to one side (source_ or destination_) of a TCP series. */
interface PeerLabels {
  readonly workload: string;
  readonly canonicalService: string;
  readonly canonicalRevision: string;
  readonly namespace: string;
  readonly app: string;
  readonly version: string;
  readonly cluster: string;
}

// As ztunnel (src/proxy/metrics.rs): app and canonical_service are the canonical name, version the
// canonical revision, cluster the workload's cluster id; what is not known is "unknown".
function peerLabels(w: Workload | undefined, clusterId: string): PeerLabels {
  if (!w) return { workload: UNKNOWN, canonicalService: UNKNOWN, canonicalRevision: UNKNOWN, namespace: UNKNOWN, app: UNKNOWN, version: UNKNOWN, cluster: UNKNOWN };
  const name = canonicalName(w);
  const revision = canonicalRevision(w);
  return { workload: w.labels['app'] ?? w.name, canonicalService: name, canonicalRevision: revision, namespace: w.namespace, app: name, version: revision, cluster: clusterId };
}

/** What of a workload its series carry: when this changes (or the workload goes), its old series are stale. */
export function workloadSignature(w: Workload, clusterId: string): string {
  const p = peerLabels(w, clusterId);
  return [w.uid, p.workload, p.canonicalService, p.canonicalRevision, p.namespace].join('\0');
}

/** The labels Istio's TCP and HTTP metrics share: everything but request_protocol, response_flags and the HTTP codes. */
export type TrafficLabels = Omit<TcpLabels, 'request_protocol' | 'response_flags'>;

export function tcpLabels(c: ConnectionDescription, flag: ResponseFlag, clusterId = DEFAULT_CLUSTER_ID): TcpLabels {
  // prom-client prints labels in the object's order: keep ztunnel's, connection_security_policy last.
  const { connection_security_policy, ...peers } = trafficLabels(c, clusterId);
  return { ...peers, request_protocol: 'tcp', response_flags: flag, connection_security_policy };
}

/** Who talked to whom, as every Istio standard metric labels it (agent/telemetry/requests.ts reuses it). */
export function trafficLabels(c: ConnectionDescription, clusterId = DEFAULT_CLUSTER_ID): TrafficLabels {
  const src = peerLabels(c.src.workload, clusterId);
  const dst = peerLabels(c.dst.workload, clusterId);
  return {
    reporter: c.direction === 'outbound' ? 'source' : 'destination',
    source_workload: src.workload,
    source_canonical_service: src.canonicalService,
    source_canonical_revision: src.canonicalRevision,
    source_workload_namespace: src.namespace,
    // Only what the peer proved with its certificate counts as a principal.
    source_principal: c.src.identity ?? UNKNOWN,
    source_app: src.app,
    source_version: src.version,
    source_cluster: src.cluster,
    destination_service: c.dst.service?.hostname ?? UNKNOWN,
    destination_service_namespace: c.dst.service?.namespace ?? UNKNOWN,
    destination_service_name: c.dst.service?.name ?? UNKNOWN,
    destination_workload: dst.workload,
    destination_canonical_service: dst.canonicalService,
    destination_canonical_revision: dst.canonicalRevision,
    destination_workload_namespace: dst.namespace,
    destination_principal: c.dst.identity ?? UNKNOWN,
    destination_app: dst.app,
    destination_version: dst.version,
    destination_cluster: dst.cluster,
    connection_security_policy: c.securityPolicy,
  };
}

/** The workloads a connection's (or request's) series names, as they look now. */
export function seriesOwners(c: ConnectionDescription, clusterId: string): SeriesOwner[] {
  return [c.src.workload, c.dst.workload]
    .filter((w): w is Workload => w !== undefined)
    .map((w) => ({ key: w.key, signature: workloadSignature(w, clusterId) }));
}

/**
 * The access-log fields ztunnel writes, in its order: a connection's record and, without the HBONE
 * address (the tunnel is the connection's business), each of its requests' records.
 */
export function flowLogFields(c: ConnectionDescription, hboneAddr: 'with-hbone-addr' | 'without'): SerializedFields {
  return (
    stringField('src.addr', c.src.addr) +
    optionalStringField('src.workload', c.src.workload?.name) +
    optionalStringField('src.namespace', c.src.workload?.namespace) +
    optionalStringField('src.identity', c.src.identity) +
    stringField('dst.addr', c.dst.addr) +
    (hboneAddr === 'with-hbone-addr' ? optionalStringField('dst.hbone_addr', c.dst.hboneAddr) : '') +
    optionalStringField('dst.service', c.dst.service?.hostname) +
    optionalStringField('dst.workload', c.dst.workload?.name) +
    optionalStringField('dst.namespace', c.dst.workload?.namespace) +
    optionalStringField('dst.identity', c.dst.identity) +
    stringField('direction', c.direction)
  );
}

export interface ConnectionTelemetryOptions {
  /** When given, the series of a workload that leaves the store (or changes its labels) are removed. */
  readonly store?: WorkloadStore;
  /** The `*_cluster` label of known workloads. Default "Kubernetes", as Istio. */
  readonly clusterId?: string;
  /** Told of every connection an inbound side denied (flag DENY), for `ambit explain --last-denied`. */
  readonly denials?: DenialRecorder;
  /** The flow log (`--flow-log`): one record per connection, relayed or refused. */
  readonly flows?: FlowLogging;
}

export class ConnectionTelemetry {
  readonly #clusterId: string;
  readonly #series: WorkloadSeries;
  readonly #cache = new SeriesCache<CachedSeries<TcpLabels>>();
  readonly #unsubscribe: () => void;
  readonly #denials: DenialRecorder | undefined;
  readonly #policies: TelemetryPolicies;
  readonly #flows: FlowLogging | undefined;
  readonly #accessLog: AccessLog;

  constructor(
    private readonly metrics: MeshMetrics,
    accessLog: Logger,
    options: ConnectionTelemetryOptions = {},
  ) {
    this.#accessLog = new AccessLog(accessLog);
    this.#clusterId = options.clusterId ?? DEFAULT_CLUSTER_ID;
    this.#denials = options.denials;
    this.#flows = options.flows;
    this.#policies = new TelemetryPolicies(options.store);
    this.#series = new WorkloadSeries((labels) => metrics.removeTcpSeries(labels));
    this.#unsubscribe =
      options.store?.subscribe((next) => {
        this.#cache.clear();
        this.#series.sweep(next, (w) => workloadSignature(w, this.#clusterId));
      }) ?? (() => {});
  }

  /** Counts a connection as opened; call `closed` on the result when its relay ends. */
  opened(c: ConnectionDescription): { closed: (result: ConnectionOutcome) => void } {
    const started = Date.now();
    const { labels, owners } = this.#seriesOf(c, '-');
    const reporter = labels.reporter;
    // The Telemetry in force for the reporting workload (merged once per workload and snapshot).
    const policy = this.#policies.of(c);
    const enabled = policy.metrics;
    const logged = policy.isDefault || shouldLog(policy, connectionAttributes(c));
    if (enabled.TCP_OPENED_CONNECTIONS.enabled) this.metrics.tcpOpened.inc(labels);
    this.metrics.socketsOpen.inc({ reporter });
    const release = this.#series.record(labels, owners, true);
    // Built only when asked for: most agents log at info, and this runs for every connection.
    if (logged && this.#accessLog.enabled('debug')) this.#accessLog.write('debug', flowLogFields(c, 'with-hbone-addr'), 'connection opened');
    return {
      closed: (result) => {
        this.metrics.socketsOpen.dec({ reporter });
        if (enabled.TCP_CLOSED_CONNECTIONS.enabled) this.metrics.tcpClosed.inc(labels);
        if (enabled.TCP_RECEIVED_BYTES.enabled) this.metrics.tcpReceivedBytes.inc(labels, result.bytesSent);
        if (enabled.TCP_SENT_BYTES.enabled) this.metrics.tcpSentBytes.inc(labels, result.bytesReceived);
        release();
        if (this.#flows) this.#flows.sink.write(connectionFlowRecord(this.#flows.node, c, { kind: 'closed', outcome: result }));
        if (!logged) return;
        // An idle timeout is the agent's decision, not a fault: flagged for queries, logged at info.
        const idle = result.error?.reason === 'idle-timeout';
        const level = result.error && !idle ? 'error' : 'info';
        if (!this.#accessLog.enabled(level)) return;
        let fields = flowLogFields(c, 'with-hbone-addr') + numberField('bytes_sent', result.bytesSent) + numberField('bytes_recv', result.bytesReceived);
        fields += stringField('duration', `${Date.now() - started}ms`);
        if (result.error && idle) fields += stringField('error', result.error.message) + stringField('reason', 'idle_timeout');
        else if (result.error) fields += stringField('error', `${result.error.side}: ${result.error.message}`);
        this.#accessLog.write(level, fields, 'connection complete');
      },
    };
  }

  /** A connection that never got as far as a relay: counted, and logged with why. */
  failed(c: ConnectionDescription, flag: ResponseFlag, error: string): void {
    const { labels, owners } = this.#seriesOf(c, flag);
    this.metrics.tcpFailed.inc(labels);
    this.#series.record(labels, owners, false);
    if (this.#flows) this.#flows.sink.write(connectionFlowRecord(this.#flows.node, c, { kind: 'failed', flag, error }));
    const policy = this.#policies.of(c);
    if ((policy.isDefault || shouldLog(policy, connectionAttributes(c))) && this.#accessLog.enabled('warn')) {
      this.#accessLog.write('warn', flowLogFields(c, 'with-hbone-addr') + stringField('error', error) + stringField('response_flags', flag), 'connection failed');
    }
    // Every inbound path (HBONE, plaintext, same node) reports its policy refusals here, with flag DENY.
    if (flag === 'DENY' && c.direction === 'inbound' && this.#denials) recordDenial(this.#denials, c, error);
  }

  /** Stops following the store. */
  close(): void {
    this.#unsubscribe();
  }

  /** Frozen, so WorkloadSeries computes each label set's id once too. */
  #seriesOf(c: ConnectionDescription, flag: ResponseFlag): CachedSeries<TcpLabels> {
    return this.#cache.get(`${peersKey(c)} ${flag}`, () => ({ labels: Object.freeze(tcpLabels(c, flag, this.#clusterId)), owners: seriesOwners(c, this.#clusterId) }));
  }
}

/** The destination side's view of a denied connection: who (address, proven identity) reached which pod port. */
function recordDenial(denials: DenialRecorder, c: ConnectionDescription, reason: string): void {
  const source = splitAddress(c.src.addr);
  const destination = splitAddress(c.dst.addr);
  if (!source || !destination) return;
  denials.record({
    path: 'connection',
    sourceIp: source.ip,
    ...(c.src.identity ? { sourceIdentity: c.src.identity as SpiffeId } : {}),
    destination,
    reason,
  });
}

/** `10.1.0.5:8080` or `[fd00::5]:8080`. */
function splitAddress(addr: string): { ip: string; port: number } | undefined {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(addr);
  return m ? { ip: m[1]!, port: Number(m[2]) } : undefined;
}

// Per-connection telemetry: Istio's TCP metrics and one access-log record per connection, with
// ztunnel's field names (`src.addr`, `dst.workload`, `direction`, ...) so existing queries keep working.

import { canonicalName, canonicalRevision } from '../state/canonical.js';
import type { MeshService, Workload } from '../state/model.js';
import type { Logger } from './log.js';
import type { MeshMetrics, TcpLabels } from './metrics.js';

/** Why a connection ended badly, as ztunnel's `response_flags`. */
export type ResponseFlag = '-' | 'DENY' | 'CONNECT' | 'TLS_FAILURE' | 'H2_HANDSHAKE_FAILURE' | 'IDENTITY_ERROR' | 'NO_ROUTE';

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
  readonly error?: { readonly side: string; readonly message: string };
}

const UNKNOWN = 'unknown';


export function tcpLabels(c: ConnectionDescription, flag: ResponseFlag): TcpLabels {
  const { src, dst } = c;
  return {
    reporter: c.direction === 'outbound' ? 'source' : 'destination',
    source_workload: src.workload?.labels['app'] ?? src.workload?.name ?? UNKNOWN,
    source_canonical_service: src.workload ? canonicalName(src.workload) : UNKNOWN,
    source_canonical_revision: src.workload ? canonicalRevision(src.workload) : UNKNOWN,
    source_workload_namespace: src.workload?.namespace ?? UNKNOWN,
    // Only what the peer proved with its certificate counts as a principal.
    source_principal: src.identity ?? UNKNOWN,
    source_app: src.workload?.labels['app'] ?? UNKNOWN,
    source_version: src.workload?.labels['version'] ?? UNKNOWN,
    source_cluster: src.workload ? 'Kubernetes' : UNKNOWN,
    destination_service: dst.service?.hostname ?? UNKNOWN,
    destination_service_namespace: dst.service?.namespace ?? UNKNOWN,
    destination_service_name: dst.service?.name ?? UNKNOWN,
    destination_workload: dst.workload?.labels['app'] ?? dst.workload?.name ?? UNKNOWN,
    destination_canonical_service: dst.workload ? canonicalName(dst.workload) : UNKNOWN,
    destination_canonical_revision: dst.workload ? canonicalRevision(dst.workload) : UNKNOWN,
    destination_workload_namespace: dst.workload?.namespace ?? UNKNOWN,
    destination_principal: dst.identity ?? UNKNOWN,
    destination_app: dst.workload?.labels['app'] ?? UNKNOWN,
    destination_version: dst.workload?.labels['version'] ?? UNKNOWN,
    destination_cluster: dst.workload ? 'Kubernetes' : UNKNOWN,
    request_protocol: 'tcp',
    response_flags: flag,
    connection_security_policy: c.securityPolicy,
  };
}

/** The access-log fields ztunnel writes, in its order. */
function logFields(c: ConnectionDescription): Record<string, string | undefined> {
  return {
    'src.addr': c.src.addr,
    'src.workload': c.src.workload?.name,
    'src.namespace': c.src.workload?.namespace,
    'src.identity': c.src.identity,
    'dst.addr': c.dst.addr,
    'dst.hbone_addr': c.dst.hboneAddr,
    'dst.service': c.dst.service?.hostname,
    'dst.workload': c.dst.workload?.name,
    'dst.namespace': c.dst.workload?.namespace,
    'dst.identity': c.dst.identity,
    direction: c.direction,
  };
}

export class ConnectionTelemetry {
  constructor(
    private readonly metrics: MeshMetrics,
    private readonly accessLog: Logger,
  ) {}

  /** Counts a connection as opened; call `closed` on the result when its relay ends. */
  opened(c: ConnectionDescription): { closed: (result: ConnectionOutcome) => void } {
    const started = Date.now();
    const labels = tcpLabels(c, '-');
    const reporter = labels.reporter;
    this.metrics.tcpOpened.inc(labels);
    this.metrics.socketsOpen.inc({ reporter });
    this.accessLog.debug(logFields(c), 'connection opened');
    return {
      closed: (result) => {
        this.metrics.socketsOpen.dec({ reporter });
        this.metrics.tcpClosed.inc(labels);
        this.metrics.tcpReceivedBytes.inc(labels, result.bytesSent);
        this.metrics.tcpSentBytes.inc(labels, result.bytesReceived);
        const fields = { ...logFields(c), bytes_sent: result.bytesSent, bytes_recv: result.bytesReceived, duration: `${Date.now() - started}ms` };
        if (result.error) this.accessLog.error({ ...fields, error: `${result.error.side}: ${result.error.message}` }, 'connection complete');
        else this.accessLog.info(fields, 'connection complete');
      },
    };
  }

  /** A connection that never got as far as a relay: counted, and logged with why. */
  failed(c: ConnectionDescription, flag: ResponseFlag, error: string): void {
    this.metrics.tcpFailed.inc(tcpLabels(c, flag));
    this.accessLog.warn({ ...logFields(c), error, response_flags: flag }, 'connection failed');
  }
}

// The node console's traffic graph: workloads and the edges between them, read in-process from the
// agent's own Istio metrics (istio_requests_total, istio_tcp_*), as totals the page turns into rates.

import type { Registry } from 'prom-client';

/** One workload of the graph: `namespace/name`, or `unknown` for a peer the agent could not name. */
export interface GraphWorkload {
  readonly id: string;
  readonly namespace: string;
  readonly name: string;
}

/** What flowed from one workload to another since the agent started (totals; the page derives rates). */
export interface GraphEdge {
  readonly source: string;
  readonly destination: string;
  readonly requests: number;
  /** Requests answered 4xx or 5xx (policy denials among them). */
  readonly errors: number;
  readonly tcpConnections: number;
  /** Bytes sent towards the destination and received from it: TCP bytes, plus HTTP request and response bodies. */
  readonly bytesSent: number;
  readonly bytesReceived: number;
  /** Every series of the edge was mutual TLS; false when any of it went in the clear. */
  readonly mtls: boolean;
}

export interface TrafficGraph {
  /** Milliseconds since the epoch when the totals were read. */
  readonly at: number;
  readonly workloads: readonly GraphWorkload[];
  readonly edges: readonly GraphEdge[];
}

type Totals = { requests: number; errors: number; tcpConnections: number; bytesSent: number; bytesReceived: number; mtls: boolean };
type Field = 'requests' | 'errors' | 'tcpConnections' | 'bytesSent' | 'bytesReceived';

interface Sample {
  readonly labels: Readonly<Record<string, string | number | undefined>>;
  readonly value: number;
  /** A histogram's samples name their part (`_bucket`, `_sum`, `_count`); a counter's do not. */
  readonly metricName?: string;
}

/** The metrics read, and which total each adds to. */
const SOURCES: readonly { readonly metric: string; readonly field: Field }[] = [
  { metric: 'istio_requests_total', field: 'requests' },
  { metric: 'istio_tcp_connections_opened_total', field: 'tcpConnections' },
  { metric: 'istio_tcp_sent_bytes_total', field: 'bytesSent' },
  { metric: 'istio_tcp_received_bytes_total', field: 'bytesReceived' },
  // HTTP bodies (the L7 path counts no TCP bytes): each histogram's _sum.
  { metric: 'istio_request_bytes', field: 'bytesSent' },
  { metric: 'istio_response_bytes', field: 'bytesReceived' },
];

/**
 * Reads the graph from `registry`. Both ends of a same-node connection report it (reporter source and
 * destination), so each edge's totals are summed per reporter and the larger reporter's kept: the
 * same traffic is never counted twice.
 */
export async function readTrafficGraph(registry: Registry, now: () => number = Date.now): Promise<TrafficGraph> {
  // edge key → reporter → totals
  const byEdge = new Map<string, Map<string, Totals>>();
  const workloads = new Map<string, GraphWorkload>();
  for (const { metric, field } of SOURCES) {
    const found = registry.getSingleMetric(metric);
    if (!found) continue;
    const { values } = (await found.get()) as { values: readonly Sample[] };
    for (const sample of values) {
      if (sample.metricName !== undefined && !sample.metricName.endsWith('_sum')) continue;
      const source = workloadOf(sample.labels, 'source', workloads);
      const destination = workloadOf(sample.labels, 'destination', workloads);
      const key = `${source}\u0000${destination}`;
      const reporters = byEdge.get(key) ?? new Map<string, Totals>();
      byEdge.set(key, reporters);
      const reporter = String(sample.labels['reporter'] ?? 'unknown');
      const totals = reporters.get(reporter) ?? { requests: 0, errors: 0, tcpConnections: 0, bytesSent: 0, bytesReceived: 0, mtls: true };
      reporters.set(reporter, totals);
      totals[field] += sample.value;
      if (field === 'requests' && Number(sample.labels['response_code']) >= 400) totals.errors += sample.value;
      if (sample.labels['connection_security_policy'] !== 'mutual_tls' && sample.value > 0) totals.mtls = false;
    }
  }
  const edges: GraphEdge[] = [];
  for (const [key, reporters] of byEdge) {
    const [source = '', destination = ''] = key.split('\u0000');
    const kept = [...reporters.values()].reduce((a, b) => (b.requests + b.tcpConnections > a.requests + a.tcpConnections ? b : a));
    if (kept.requests + kept.tcpConnections + kept.bytesSent + kept.bytesReceived === 0) continue;
    edges.push({ source, destination, ...kept });
  }
  edges.sort((a, b) => (a.source === b.source ? compare(a.destination, b.destination) : compare(a.source, b.source)));
  const used = new Set(edges.flatMap((e) => [e.source, e.destination]));
  return { at: now(), workloads: [...workloads.values()].filter((w) => used.has(w.id)).sort((a, b) => compare(a.id, b.id)), edges };
}

function workloadOf(labels: Sample['labels'], side: 'source' | 'destination', into: Map<string, GraphWorkload>): string {
  const name = String(labels[`${side}_workload`] ?? 'unknown');
  const namespace = String(labels[`${side}_workload_namespace`] ?? 'unknown');
  const id = name === 'unknown' ? 'unknown' : `${namespace}/${name}`;
  if (!into.has(id)) into.set(id, { id, namespace: id === 'unknown' ? '' : namespace, name });
  return id;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

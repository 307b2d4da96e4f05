// The node console's graph read from the agent's own metric types (MeshMetrics' TCP counters, the
// request metrics' SeriesCounter and SeriesHistogram): traffic both reporters of this node counted is
// shown once, HTTP bodies count as bytes, errors are 4xx/5xx, and one plaintext series clears mTLS.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readTrafficGraph } from '../../agent/console/traffic-graph.js';
import { MeshMetrics, TCP_LABELS, type TcpLabels } from '../../agent/telemetry/metrics.js';
import { SeriesCounter, SeriesHistogram } from '../../agent/telemetry/series-metrics.js';

function tcpLabels(reporter: string, source: string, destination: string, security: string): TcpLabels {
  const labels = Object.fromEntries(TCP_LABELS.map((name) => [name, 'unknown'])) as Record<string, string>;
  Object.assign(labels, { reporter, source_workload: source, source_workload_namespace: 'shop', destination_workload: destination, destination_workload_namespace: 'shop', connection_security_policy: security });
  return labels as TcpLabels;
}

test('each edge once, from the reporter that counted most; bodies as bytes; errors and mTLS per edge', async () => {
  const metrics = new MeshMetrics('test');
  // web → db on this node: the source and the destination reporter both count the same 3 connections.
  for (const reporter of ['source', 'destination']) {
    const labels = tcpLabels(reporter, 'web', 'db', 'mutual_tls');
    metrics.tcpOpened.inc(labels, 3);
    metrics.tcpSentBytes.inc(labels, 300);
    metrics.tcpReceivedBytes.inc(labels, 120);
  }
  // legacy → db: plaintext, seen by the destination only.
  metrics.tcpOpened.inc(tcpLabels('destination', 'legacy', 'db', 'none'), 1);
  // client → web over HTTP: 4 answered 200, 1 answered 403; 50-byte requests, 1,000-byte answers.
  const requests = new SeriesCounter('istio_requests_total', 'The total number of requests', metrics.registry);
  const requestBytes = new SeriesHistogram('istio_request_bytes', 'request bodies', metrics.registry, [10, 100, 1000]);
  const responseBytes = new SeriesHistogram('istio_response_bytes', 'response bodies', metrics.registry, [10, 100, 1000]);
  for (const code of ['200', '200', '200', '200', '403']) {
    const labels = { reporter: 'destination', source_workload: 'client', source_workload_namespace: 'shop', destination_workload: 'web', destination_workload_namespace: 'shop', response_code: code, connection_security_policy: 'mutual_tls' };
    requests.labels(labels).inc();
    requestBytes.labels(labels).observe(50);
    responseBytes.labels(labels).observe(1000);
  }

  const graph = await readTrafficGraph(metrics.registry, () => 42);
  assert.equal(graph.at, 42);
  assert.deepEqual(graph.workloads.map((w) => w.id), ['shop/client', 'shop/db', 'shop/legacy', 'shop/web']);
  assert.deepEqual(graph.edges, [
    { source: 'shop/client', destination: 'shop/web', requests: 5, errors: 1, tcpConnections: 0, bytesSent: 250, bytesReceived: 5000, mtls: true },
    { source: 'shop/legacy', destination: 'shop/db', requests: 0, errors: 0, tcpConnections: 1, bytesSent: 0, bytesReceived: 0, mtls: false },
    { source: 'shop/web', destination: 'shop/db', requests: 0, errors: 0, tcpConnections: 3, bytesSent: 300, bytesReceived: 120, mtls: true },
  ]);
});

// Istio's HTTP request metrics as /metrics serves them (real prom-client text), with the labels shared
// with the TCP metrics, the HTTP ones (response_code, grpc_response_status, request_protocol,
// response_flags), Envoy's buckets, series removal with the workload, and the access-log record.

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { parseConfigFile } from '../../agent/config/load.js';
import { buildSnapshot } from '../../agent/state/build.js';
import type { MeshSnapshot, SpiffeId } from '../../agent/state/model.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { type ConnectionDescription, tcpLabels } from '../../agent/telemetry/connections.js';
import { MeshMetrics } from '../../agent/telemetry/metrics.js';
import { ISTIO_HISTOGRAM_BUCKETS, REQUEST_LABELS, type RequestDescription, RequestTelemetry, formatFlags, requestLabels } from '../../agent/telemetry/requests.js';
import { parsePrometheusText, samplesOf } from './helpers/prometheus-text.js';

const MESH = `
apiVersion: v1
kind: Pod
metadata: { name: productpage-v1-abc, namespace: bookinfo, labels: { app: productpage, version: v1 } }
spec: { serviceAccountName: bookinfo-productpage, containers: [{ name: c, command: [x] }] }
status: { podIP: 10.1.0.1 }
---
apiVersion: v1
kind: Pod
metadata: { name: reviews-v2-xyz, namespace: bookinfo, labels: { app: reviews, version: v2 } }
spec: { serviceAccountName: bookinfo-reviews, containers: [{ name: c, command: [x] }] }
status: { podIP: 10.1.0.2 }
---
apiVersion: v1
kind: Service
metadata: { name: reviews, namespace: bookinfo }
spec: { clusterIP: 10.96.0.21, selector: { app: reviews }, ports: [{ name: http, port: 9080, targetPort: 9080 }] }
`;

function snapshot(yaml = MESH, version = 1): MeshSnapshot {
  const parsed = parseConfigFile(yaml, 'mesh.yaml');
  return buildSnapshot(parsed.objects, { version, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
}

function capture(): { logger: pino.Logger; records: Record<string, unknown>[] } {
  const records: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) records.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), records };
}

function connection(s: MeshSnapshot, direction: 'inbound' | 'outbound'): ConnectionDescription {
  return {
    direction,
    src: { addr: '10.1.0.1:40000', workload: s.workloads.get('bookinfo/productpage-v1-abc')!, identity: 'spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage' as SpiffeId },
    dst: { addr: '10.1.0.2:9080', workload: s.workloads.get('bookinfo/reviews-v2-xyz')!, service: s.services.get('bookinfo/reviews.bookinfo.svc.cluster.local')!, identity: 'spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews' as SpiffeId },
    securityPolicy: 'mutual_tls',
  };
}

function describeRequest(s: MeshSnapshot, overrides: Partial<RequestDescription> = {}): RequestDescription {
  return { connection: connection(s, 'inbound'), protocol: 'http', method: 'GET', path: '/reviews/0', authority: 'reviews:9080', httpVersion: 'HTTP/1.1', ...overrides };
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

test('istio_requests_total and the three histograms carry Istio\'s labels, shared with the TCP metrics', async () => {
  const s = snapshot();
  const metrics = new MeshMetrics('test');
  let now = 1000;
  const telemetry = new RequestTelemetry(metrics, pino({ level: 'silent' }), { now: () => now });
  const req = telemetry.started(describeRequest(s, { traceId: 'abc' }));
  now += 12;
  req.completed({ responseCode: 200, requestBytes: 0, responseBytes: 358, upstreamHost: '10.1.0.2:9080' });
  req.completed({ responseCode: 500, requestBytes: 0, responseBytes: 0 }); // ignored: one record per request
  telemetry.record(describeRequest(s, { method: 'POST' }), { responseCode: 429, flags: ['RL'], requestBytes: 20, responseBytes: 18 }, 0.2);
  telemetry.record(
    describeRequest(s, { protocol: 'grpc', httpVersion: 'HTTP/2', connection: connection(s, 'outbound') }),
    { responseCode: 200, grpcStatus: 14, flags: ['URX', 'UF', 'URX'], requestBytes: 5, responseBytes: 0 },
    3000,
  );

  const samples = parsePrometheusText(await metrics.registry.metrics());
  const total = samplesOf(samples, 'istio_requests_total');
  assert.equal(total.length, 3);
  const ok = samplesOf(samples, 'istio_requests_total', { response_code: '200', reporter: 'destination' })[0]!;
  assert.deepEqual(Object.keys(ok.labels), [...REQUEST_LABELS]);
  assert.deepEqual(ok.labels, {
    ...tcpLabels(connection(s, 'inbound'), '-'),
    request_protocol: 'http',
    response_code: '200',
    grpc_response_status: '',
    response_flags: '-',
  });
  assert.equal(ok.labels.source_workload, 'productpage');
  assert.equal(ok.labels.destination_service, 'reviews.bookinfo.svc.cluster.local');
  assert.equal(ok.labels.source_principal, 'spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage');
  assert.equal(samplesOf(samples, 'istio_requests_total', { response_code: '429', response_flags: 'RL' })[0]?.value, 1);
  const grpc = samplesOf(samples, 'istio_requests_total', { request_protocol: 'grpc' })[0]!;
  assert.deepEqual([grpc.labels.reporter, grpc.labels.grpc_response_status, grpc.labels.response_flags], ['source', '14', 'URX,UF']);

  // The duration histogram: Envoy's buckets, the 12 ms request in le=25 and above, not in le=10.
  const buckets = samplesOf(samples, 'istio_request_duration_milliseconds_bucket', { response_code: '200', reporter: 'destination' });
  assert.deepEqual(buckets.map((b) => b.labels.le), [...ISTIO_HISTOGRAM_BUCKETS.map(String), '+Inf']);
  assert.equal(buckets.find((b) => b.labels.le === '10')?.value, 0);
  assert.equal(buckets.find((b) => b.labels.le === '25')?.value, 1);
  assert.equal(samplesOf(samples, 'istio_request_duration_milliseconds_sum', { response_code: '200' })[0]?.value, 12);
  assert.equal(samplesOf(samples, 'istio_response_bytes_sum', { response_code: '200' })[0]?.value, 358);
  assert.equal(samplesOf(samples, 'istio_request_bytes_sum', { response_code: '429' })[0]?.value, 20);
  // A second telemetry on the same registry shares the metrics rather than failing to register them.
  assert.doesNotThrow(() => new RequestTelemetry(metrics, pino({ level: 'silent' })));
});

test('one access-log record per request with Envoy\'s fields next to ztunnel\'s', async () => {
  const s = snapshot();
  const { logger, records } = capture();
  const telemetry = new RequestTelemetry(new MeshMetrics('test'), logger);
  telemetry.record(
    describeRequest(s, { requestId: 'req-1', traceId: '4bf92f3577b34da6a3ce929d0e0e4736', userAgent: 'curl/7.88' }),
    { responseCode: 403, requestBytes: 0, responseBytes: 19, routeName: 'reviews-v2', responseCodeDetails: 'rbac_access_denied_matched_policy[bookinfo/deny]' },
    1.4,
  );
  telemetry.record(describeRequest(s), { responseCode: 503, flags: ['UO'], requestBytes: 0, responseBytes: 81 }, 0);
  await flush();
  assert.equal(records.length, 2);
  const first = records[0]!;
  assert.equal(first.msg, 'request complete');
  assert.equal(first.level, 30);
  for (const [k, v] of Object.entries({
    'src.addr': '10.1.0.1:40000',
    'src.workload': 'productpage-v1-abc',
    'src.identity': 'spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage',
    'dst.service': 'reviews.bookinfo.svc.cluster.local',
    'dst.workload': 'reviews-v2-xyz',
    direction: 'inbound',
    method: 'GET',
    path: '/reviews/0',
    protocol: 'HTTP/1.1',
    authority: 'reviews:9080',
    response_code: 403,
    response_flags: '-',
    response_code_details: 'rbac_access_denied_matched_policy[bookinfo/deny]',
    duration: '1ms',
    bytes_received: 0,
    bytes_sent: 19,
    route_name: 'reviews-v2',
    x_request_id: 'req-1',
    trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
    user_agent: 'curl/7.88',
  })) {
    assert.deepEqual(first[k], v, k);
  }
  assert.equal(records[1]!.level, 40, 'a request the proxy failed (a flag) is a warning');
  assert.equal(records[1]!.response_flags, 'UO');
});

test('the access-log record has docs/observability.md\'s fields in its order, each request of a flow its own', async () => {
  const s = snapshot();
  const { logger, records } = capture();
  const store = new WorkloadStore();
  store.replace(s);
  const telemetry = new RequestTelemetry(new MeshMetrics('test'), logger, { store });
  const grpc = { protocol: 'grpc' as const, requestId: 'req-1', traceId: 'abc', userAgent: 'grpc-go/1.60' };
  const outcome = { responseCode: 200, grpcStatus: 0, requestBytes: 5, responseBytes: 7, upstreamHost: '10.1.0.2:9080', routeName: 'r', responseCodeDetails: 'via_upstream' };
  telemetry.record(describeRequest(s, grpc), outcome, 3);
  // The same peers from another client port and to another endpoint: a flow of its own.
  const other = connection(s, 'inbound');
  const otherFlow = { ...other, src: { ...other.src, addr: '10.1.0.1:40001' }, dst: { ...other.dst, addr: '10.1.0.3:9080' } };
  telemetry.record(describeRequest(s, { connection: otherFlow, path: '/other' }), { responseCode: 404, requestBytes: 0, responseBytes: 0 }, 1);
  telemetry.record(describeRequest(s, { path: '/again' }), { responseCode: 200, requestBytes: 0, responseBytes: 0 }, 1);
  // A changed workload is a new object (in a new snapshot): the record names it as it is now.
  const next = snapshot(MESH, 2);
  store.replace(next);
  const renamed = connection(next, 'inbound');
  const movedWorkload = { ...renamed.dst.workload!, name: 'reviews-v2-new' };
  telemetry.record(describeRequest(next, { connection: { ...renamed, dst: { ...renamed.dst, workload: movedWorkload } } }), { responseCode: 200, requestBytes: 0, responseBytes: 0 }, 1);
  await flush();
  const documented = [
    'src.addr', 'src.workload', 'src.namespace', 'src.identity', 'dst.addr', 'dst.service', 'dst.workload', 'dst.namespace', 'dst.identity', 'direction',
    'method', 'path', 'protocol', 'authority', 'response_code', 'grpc_status', 'response_flags', 'response_code_details', 'duration', 'bytes_received', 'bytes_sent',
    'upstream_host', 'route_name', 'x_request_id', 'trace_id', 'user_agent',
  ];
  const own = (r: Record<string, unknown>) => Object.keys(r).filter((k) => !['level', 'time', 'pid', 'hostname', 'msg'].includes(k));
  assert.deepEqual(own(records[0]!), documented);
  assert.deepEqual(records.map((r) => [r['src.addr'], r['dst.addr'], r.path]), [
    ['10.1.0.1:40000', '10.1.0.2:9080', '/reviews/0'],
    ['10.1.0.1:40001', '10.1.0.3:9080', '/other'],
    ['10.1.0.1:40000', '10.1.0.2:9080', '/again'],
    ['10.1.0.1:40000', '10.1.0.2:9080', '/reviews/0'],
  ]);
  assert.equal(records[3]!['dst.workload'], 'reviews-v2-new');
  // Fields a request does not have are left out, not written empty; the flow's fields come once.
  assert.deepEqual(own(records[1]!), documented.filter((k) => !['grpc_status', 'response_code_details', 'upstream_host', 'route_name', 'x_request_id', 'trace_id', 'user_agent'].includes(k)));
  telemetry.close();
});

test('a workload that leaves the mesh takes its request series with it', async () => {
  const store = new WorkloadStore();
  const s = snapshot();
  store.replace(s);
  const metrics = new MeshMetrics('test');
  const telemetry = new RequestTelemetry(metrics, pino({ level: 'silent' }), { store });
  telemetry.record(describeRequest(s), { responseCode: 200, requestBytes: 0, responseBytes: 1 }, 1);
  assert.equal(samplesOf(parsePrometheusText(await metrics.registry.metrics()), 'istio_requests_total').length, 1);
  store.replace(snapshot(MESH.replace(/apiVersion: v1\nkind: Pod\nmetadata: \{ name: reviews-v2-xyz[^]*?---\n/, ''), 2));
  const after = parsePrometheusText(await metrics.registry.metrics());
  assert.equal(samplesOf(after, 'istio_requests_total').length, 0);
  assert.equal(samplesOf(after, 'istio_request_duration_milliseconds_count').length, 0);
  telemetry.close();
});

test('response flags print as Envoy prints them', () => {
  assert.equal(formatFlags(undefined), '-');
  assert.equal(formatFlags([]), '-');
  assert.equal(formatFlags(['DI', 'FI']), 'DI,FI');
  const s = snapshot();
  assert.equal(requestLabels(describeRequest(s, { protocol: 'grpc' }), { responseCode: 200, requestBytes: 0, responseBytes: 0 }).grpc_response_status, '');
  assert.equal(requestLabels(describeRequest(s), { responseCode: 0, flags: ['DC'], requestBytes: 0, responseBytes: 0 }).response_code, '0');
});

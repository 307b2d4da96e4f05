// Istio's Telemetry resource as a user writes it: parsed (and refused where Ambit cannot honour it),
// merged mesh -> namespace -> workload, and observed where it acts: /metrics without a disabled metric
// or a removed label, with an upserted one, and access-log records kept or dropped by disabled and filter.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { parseConfigFile } from '../../agent/config/load.js';
import { buildSnapshot } from '../../agent/state/build.js';
import type { MeshSnapshot, SpiffeId } from '../../agent/state/model.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { type ConnectionDescription, ConnectionTelemetry } from '../../agent/telemetry/connections.js';
import { MeshMetrics } from '../../agent/telemetry/metrics.js';
import { type RequestDescription, RequestTelemetry } from '../../agent/telemetry/requests.js';
import { DEFAULT_TELEMETRY, TelemetryPolicies } from '../../agent/telemetry/telemetry-policy.js';
import { captureLog } from './helpers/log-capture.js';
import { BOOKINFO } from './helpers/l7-mesh.js';
import { parsePrometheusText, samplesOf } from './helpers/prometheus-text.js';

function snapshot(telemetry: string, version = 1): MeshSnapshot {
  const parsed = parseConfigFile(`${BOOKINFO}\n---\n${telemetry}`, 'mesh.yaml');
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error'), []);
  return buildSnapshot(parsed.objects, { version, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
}

function storeWith(telemetry: string): { store: WorkloadStore; s: MeshSnapshot } {
  const store = new WorkloadStore();
  const s = snapshot(telemetry);
  store.replace(s);
  return { store, s };
}

function connection(s: MeshSnapshot, direction: 'inbound' | 'outbound'): ConnectionDescription {
  return {
    direction,
    src: { addr: '10.244.1.10:40000', workload: s.workloads.get('bookinfo/productpage-v1')!, identity: 'spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage' as SpiffeId },
    dst: { addr: '10.244.1.21:9080', workload: s.workloads.get('bookinfo/reviews-v1')!, service: s.services.get('bookinfo/reviews.bookinfo.svc.cluster.local')!, identity: 'spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews' as SpiffeId },
    securityPolicy: 'mutual_tls',
  };
}

function request(s: MeshSnapshot, direction: 'inbound' | 'outbound', method = 'GET'): RequestDescription {
  return { connection: connection(s, direction), protocol: 'http', method, path: '/reviews/0', authority: 'reviews:9080', httpVersion: 'HTTP/1.1' };
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

const telemetry = (namespace: string, name: string, spec: string) => `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: ${name}, namespace: ${namespace} }
spec:
${spec}`;

test('a Telemetry is read at v1 and v1alpha1; filters and tag values Ambit cannot evaluate are refused with why', () => {
  const ok = parseConfigFile(telemetry('istio-system', 'mesh', '  accessLogging: [{ filter: { expression: "response.code >= 400 || connection.mtls && request.url_path == \'/v1\'" } }]').replace('/v1\n', '/v1alpha1\n'), 't.yaml');
  assert.equal(ok.objects.length, 1);
  const bad = parseConfigFile(telemetry('foo', 'bad', '  accessLogging: [{ filter: { expression: "response.headers[\'x\'] == \'y\'" } }]'), 't.yaml');
  assert.equal(bad.objects.length, 0);
  const message = bad.diagnostics.find((d) => d.severity === 'error')?.message ?? '';
  assert.match(message, /cannot use filter .*Ambit supports comparisons/);
  const badTag = parseConfigFile(telemetry('foo', 'bad', '  metrics: [{ overrides: [{ tagOverrides: { request_host: { value: "request.headers[\'host\']" } } }] }]'), 't.yaml');
  assert.equal(badTag.objects.length, 0);
  assert.match(badTag.diagnostics.find((d) => d.severity === 'error')?.message ?? '', /tag request_host: cannot use value/);
  const notBool = parseConfigFile(telemetry('foo', 'bad', '  accessLogging: [{ filter: { expression: "response.code" } }]'), 't.yaml');
  assert.match(notBool.diagnostics.find((d) => d.severity === 'error')?.message ?? '', /expected a condition/);
});

test('mesh, then namespace, then workload: the more specific value wins, metric overrides apply in order', () => {
  const yaml = [
    telemetry('istio-system', 'mesh', '  tracing: [{ randomSamplingPercentage: 10, customTags: { cluster: { literal: { value: east } } } }]\n  accessLogging: [{ disabled: true }]\n  metrics: [{ overrides: [{ match: { metric: ALL_METRICS, mode: SERVER }, disabled: true }] }]'),
    telemetry('bookinfo', 'ns', '  tracing: [{ randomSamplingPercentage: 50 }]\n  metrics: [{ overrides: [{ match: { metric: REQUEST_COUNT }, disabled: false }] }]'),
    telemetry('bookinfo', 'reviews', '  selector: { matchLabels: { app: reviews } }\n  tracing: [{ customTags: { team: { header: { name: X-Team, defaultValue: none } } } }]\n  accessLogging: [{ disabled: false }]'),
  ].join('\n---\n');
  const { store, s } = storeWith(yaml);
  const policies = new TelemetryPolicies(store);
  const server = policies.of(connection(s, 'inbound'));
  assert.equal(server.tracing.randomSamplingPercentage, 50, 'the namespace overrides the mesh');
  assert.deepEqual(server.tracing.customTags, [['team', { kind: 'header', name: 'x-team', defaultValue: 'none' }]], 'written customTags replace the parent map');
  assert.equal(server.accessLog.enabled, true, 'the workload turns back on what the mesh turned off');
  assert.equal(server.metrics.REQUEST_COUNT.enabled, true, 'a later override re-enables one metric');
  assert.equal(server.metrics.REQUEST_DURATION.enabled, false);
  assert.equal(server.metrics.TCP_OPENED_CONNECTIONS.enabled, false);
  assert.equal(policies.of(connection(s, 'inbound')), server, 'computed once per workload and snapshot');
  const client = policies.of(connection(s, 'outbound'));
  assert.equal(client.accessLog.enabled, false, 'productpage has no workload Telemetry: the mesh\'s disabled holds');
  assert.equal(client.metrics.REQUEST_DURATION.enabled, true, 'mode SERVER leaves the client side alone');
  assert.deepEqual(client.tracing.customTags, [['cluster', { kind: 'literal', value: 'east' }]]);
  assert.equal(new TelemetryPolicies(storeWith('').store).of(connection(s, 'inbound')), DEFAULT_TELEMETRY);
});

test('targetRefs bind the serving side of a Service\'s traffic', () => {
  const yaml = telemetry('bookinfo', 'by-service', '  targetRefs: [{ kind: Service, group: "", name: reviews }]\n  accessLogging: [{ disabled: true }]');
  const { store, s } = storeWith(yaml);
  const policies = new TelemetryPolicies(store);
  assert.equal(policies.of(connection(s, 'inbound')).accessLog.enabled, false);
  assert.equal(policies.of(connection(s, 'outbound')).accessLog.enabled, true);
});

test('/metrics: a disabled metric is absent, a removed label is gone, an upserted one is set, only where the Telemetry applies', async () => {
  const yaml = telemetry(
    'bookinfo',
    'reviews',
    `  selector: { matchLabels: { app: reviews } }
  metrics:
  - overrides:
    - match: { metric: REQUEST_DURATION }
      disabled: true
    - match: { metric: REQUEST_COUNT, mode: SERVER }
      tagOverrides:
        response_code: { operation: REMOVE }
        request_method: { value: request.method }
        port: { value: string(destination.port) }
        team: { value: "'reviews-team'" }`,
  );
  const { store, s } = storeWith(yaml);
  const metrics = new MeshMetrics('test');
  const t = new RequestTelemetry(metrics, pino({ level: 'silent' }), { store });
  t.record(request(s, 'inbound'), { responseCode: 200, requestBytes: 0, responseBytes: 1 }, 3);
  t.record(request(s, 'inbound', 'POST'), { responseCode: 201, requestBytes: 0, responseBytes: 1 }, 3);
  t.record(request(s, 'outbound'), { responseCode: 200, requestBytes: 0, responseBytes: 1 }, 3);
  const samples = parsePrometheusText(await metrics.registry.metrics());
  const server = samplesOf(samples, 'istio_requests_total', { reporter: 'destination' });
  assert.equal(server.length, 2);
  for (const sample of server) {
    assert.equal(sample.labels.response_code, undefined, 'response_code removed');
    assert.equal(sample.labels.team, 'reviews-team');
    assert.equal(sample.labels.port, '9080');
  }
  assert.deepEqual(server.map((x) => x.labels.request_method).sort(), ['GET', 'POST']);
  assert.equal(samplesOf(samples, 'istio_request_duration_milliseconds_count', { reporter: 'destination' }).length, 0, 'REQUEST_DURATION disabled');
  assert.equal(samplesOf(samples, 'istio_request_bytes_count', { reporter: 'destination' }).length, 2, 'REQUEST_SIZE still reported');
  const client = samplesOf(samples, 'istio_requests_total', { reporter: 'source' });
  assert.equal(client[0]?.labels.response_code, '200', 'the client side (productpage) keeps Istio\'s labels');
  assert.equal(samplesOf(samples, 'istio_request_duration_milliseconds_count', { reporter: 'source' }).length, 1);
  t.close();
});

test('access log: disabled drops every record, a filter keeps only matching requests and connections', async () => {
  const yaml = [
    telemetry('istio-system', 'mesh', '  accessLogging: [{ filter: { expression: "response.code >= 400 && request.method != \'HEAD\'" } }]'),
    telemetry('bookinfo', 'quiet', '  selector: { matchLabels: { app: productpage } }\n  accessLogging: [{ disabled: true }]'),
  ].join('\n---\n');
  const { store, s } = storeWith(yaml);
  const { logger, records } = captureLog();
  const metrics = new MeshMetrics('test');
  const t = new RequestTelemetry(metrics, logger, { store });
  t.record(request(s, 'inbound'), { responseCode: 200, requestBytes: 0, responseBytes: 1 }, 1);
  t.record(request(s, 'inbound'), { responseCode: 503, requestBytes: 0, responseBytes: 1 }, 1);
  t.record(request(s, 'inbound', 'HEAD'), { responseCode: 404, requestBytes: 0, responseBytes: 0 }, 1);
  t.record(request(s, 'outbound'), { responseCode: 503, requestBytes: 0, responseBytes: 1 }, 1);
  // Connections have no response.code: a filter over it is not true, so they are not logged either.
  const connections = new ConnectionTelemetry(metrics, logger, { store });
  connections.opened(connection(s, 'inbound')).closed({ bytesSent: 1, bytesReceived: 1 });
  await flush();
  assert.deepEqual(records.map((r) => [r.direction, r.response_code, r.method]), [['inbound', 503, 'GET']]);
  assert.equal(samplesOf(parsePrometheusText(await metrics.registry.metrics()), 'istio_requests_total').length, 4, 'metrics do not depend on the access log');
  t.close();
  connections.close();
});

test('TCP metrics: a disabled TCP metric is not counted, the others are', async () => {
  const yaml = telemetry('bookinfo', 'tcp', '  metrics: [{ overrides: [{ match: { metric: TCP_OPENED_CONNECTIONS }, disabled: true }, { match: { metric: TCP_SENT_BYTES, mode: CLIENT }, disabled: true }] }]');
  const { store, s } = storeWith(yaml);
  const metrics = new MeshMetrics('test');
  const connections = new ConnectionTelemetry(metrics, pino({ level: 'silent' }), { store });
  connections.opened(connection(s, 'inbound')).closed({ bytesSent: 5, bytesReceived: 7 });
  connections.opened(connection(s, 'outbound')).closed({ bytesSent: 5, bytesReceived: 7 });
  const samples = parsePrometheusText(await metrics.registry.metrics());
  assert.equal(samplesOf(samples, 'istio_tcp_connections_opened_total').length, 0);
  assert.equal(samplesOf(samples, 'istio_tcp_connections_closed_total').length, 2);
  assert.deepEqual(samplesOf(samples, 'istio_tcp_sent_bytes_total').map((x) => x.labels.reporter), ['destination']);
  connections.close();
});

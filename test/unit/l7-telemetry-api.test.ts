// Telemetry resources through the real L7 proxies (test/security/helpers/l7-proxies.ts): real HTTP
// requests from productpage through the source agent's proxy and the destination's to a pod, /metrics as
// prom-client prints it, the destination's access log as the agent writes it, and both agents' spans at a
// test OTLP collector. Each Telemetry is applied by replacing the store's snapshot, as a watch does.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';
import { MeshMetrics } from '../../agent/telemetry/metrics.js';
import { RequestTracer } from '../../agent/telemetry/tracing.js';
import { OtlpCollector } from '../fixtures/otlp/collector.js';
import { type L7Proxies, startL7Proxies } from '../security/helpers/l7-proxies.js';
import { captureLog } from './helpers/log-capture.js';
import { parsePrometheusText, samplesOf } from './helpers/prometheus-text.js';
import { mesh } from './helpers/l7-mesh.js';

const namespaceTelemetry = (spec: string) => `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: bookinfo, namespace: bookinfo}
spec:
${spec}`;

const reviewsTelemetry = (spec: string) => `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: reviews, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
${spec}`;

const metrics = new MeshMetrics('test');
const { logger: accessLog, records } = captureLog();
let collector: OtlpCollector;
let tracer: RequestTracer;
let proxies: L7Proxies;
let version = 1;
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

/** Applies a Telemetry (with the harness's mesh) as a watch would: a new snapshot in the store. */
function apply(telemetryYaml: string): void {
  proxies.store.replace({ ...mesh(telemetryYaml), version: ++version });
}

before(async () => {
  collector = await OtlpCollector.start();
  // The mesh default samples every new trace; Telemetry overrides it per workload.
  tracer = await RequestTracer.create({ endpoint: collector.url, samplingPercent: 100 }, 'node-b');
  proxies = await startL7Proxies({ metrics, accessLog, tracer });
  tracer.followTelemetry(proxies.store);
});

after(async () => {
  agent.destroy();
  await proxies.close();
  await tracer.shutdown();
  await collector.close();
});

/** A request from productpage to reviews through the source agent's proxy, then the destination's. */
function get(path: string, headers: http.OutgoingHttpHeaders = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: proxies.outboundPort, path, agent, headers: { host: 'reviews:9080', ...headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.once('error', reject);
    req.end();
  });
}

const requestRecords = () => records.filter((r) => r.msg === 'request complete');

test('metrics overrides: a disabled metric is absent from /metrics, a removed label is gone, an upserted one set', async () => {
  apply(
    reviewsTelemetry(`  metrics:
  - overrides:
    - match: {metric: REQUEST_DURATION, mode: SERVER}
      disabled: true
    - match: {metric: REQUEST_COUNT}
      tagOverrides:
        response_code: {operation: REMOVE}
        request_method: {value: request.method}`),
  );
  assert.equal(await get('/reviews/1'), 200);
  const samples = parsePrometheusText(await metrics.registry.metrics());
  const total = samplesOf(samples, 'istio_requests_total', { reporter: 'destination', destination_workload: 'reviews' });
  assert.equal(total.length, 1);
  assert.equal(total[0]!.labels.response_code, undefined);
  assert.equal(total[0]!.labels.request_method, 'GET');
  assert.equal(samplesOf(samples, 'istio_request_duration_milliseconds_count').length, 0, 'REQUEST_DURATION disabled');
  assert.equal(samplesOf(samples, 'istio_response_bytes_count').length, 1, 'RESPONSE_SIZE still reported');
});

test('access log filter: only requests the expression accepts are logged', async () => {
  apply(reviewsTelemetry(`  accessLogging: [{filter: {expression: "request.url_path == '/logged' || response.code >= 500"}}]`));
  const before = requestRecords().length;
  assert.equal(await get('/reviews/2'), 200);
  assert.equal(await get('/logged?x=1'), 200);
  await new Promise((r) => setImmediate(r));
  const logged = requestRecords().slice(before);
  assert.deepEqual(logged.map((r) => [r.path, r.response_code]), [['/logged?x=1', 200]]);
});

test('tracing: 0 % sampling exports nothing, 100 % with custom tags exports both agents\' spans with the tags, disableSpanReporting none', async () => {
  // The earlier tests' spans (sampled by the mesh default) leave the queue first.
  await tracer.flush();
  const start = collector.spans.length;
  apply(namespaceTelemetry('  tracing: [{randomSamplingPercentage: 0}]'));
  assert.equal(await get('/reviews/unsampled'), 200);
  apply(namespaceTelemetry('  tracing: [{disableSpanReporting: true}]'));
  assert.equal(await get('/reviews/unreported'), 200);
  apply(namespaceTelemetry(`  tracing:
  - randomSamplingPercentage: 100
    customTags:
      team: {literal: {value: bookinfo-team}}
      user: {header: {name: x-user, defaultValue: nobody}}
      from_env: {environment: {name: AMBIT_TEST_UNSET_VARIABLE, defaultValue: fallback}}`));
  assert.equal(await get('/reviews/sampled', { 'x-user': 'jason' }), 200);
  await tracer.flush();
  await collector.waitForSpans(start + 2);
  const spans = collector.spans.slice(start);
  // Batches export in order: after the flush, the earlier requests' spans would be here if they had been exported.
  assert.deepEqual(spans.map((s) => s.attributes['http.url']), ['http://reviews:9080/reviews/sampled', 'http://reviews:9080/reviews/sampled']);
  assert.deepEqual(spans.map((s) => s.kind).sort(), [2, 3], 'the destination\'s SERVER span and the source\'s CLIENT span');
  for (const span of spans) {
    assert.equal(span.attributes['team'], 'bookinfo-team');
    assert.equal(span.attributes['user'], 'jason');
    assert.equal(span.attributes['from_env'], 'fallback');
  }
});

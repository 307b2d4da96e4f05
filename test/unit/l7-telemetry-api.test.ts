// Telemetry resources through the real inbound L7 proxy: real HTTP requests from a client, a pod behind
// the proxy, /metrics as prom-client prints it, the access log as the agent writes it, and spans at a
// test OTLP collector. Each Telemetry is applied by replacing the store's snapshot, as a watch does.

import assert from 'node:assert/strict';
import http from 'node:http';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { InboundHttpProxy, type InboundHttpTunnel } from '../../agent/l7/proxy/inbound-http.js';
import { LocalRateLimiter } from '../../agent/policy/rate-limit.js';
import type { SpiffeId } from '../../agent/state/model.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { MeshMetrics } from '../../agent/telemetry/metrics.js';
import { RequestTelemetry } from '../../agent/telemetry/requests.js';
import { RequestTracer } from '../../agent/telemetry/tracing.js';
import { relay } from '../../agent/tunnel/relay.js';
import { OtlpCollector } from '../fixtures/otlp/collector.js';
import { parsePrometheusText, samplesOf } from './helpers/prometheus-text.js';
import { mesh } from './helpers/l7-mesh.js';

const PRODUCTPAGE = 'spiffe://cluster.local/ns/bookinfo/sa/default' as SpiffeId;

const reviewsTelemetry = (spec: string) => `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: reviews, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
${spec}`;

const store = new WorkloadStore();
const metrics = new MeshMetrics('test');
const records: Record<string, unknown>[] = [];
const accessLog = pino(
  { level: 'info' },
  new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) records.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  }),
);
let collector: OtlpCollector;
let tracer: RequestTracer;
let proxy: InboundHttpProxy;
let pod: http.Server;
let front: Server;
let frontPort = 0;
let version = 1;
const sockets = new Set<Socket>();
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function apply(telemetryYaml: string): void {
  const s = mesh(telemetryYaml);
  store.replace({ ...s, version: version++ });
}

before(async () => {
  apply('');
  collector = await OtlpCollector.start();
  // The mesh default samples every new trace; Telemetry overrides it per workload.
  tracer = RequestTracer.create({ endpoint: collector.url, samplingPercent: 100 }, 'node-b');
  tracer.followTelemetry(store);
  proxy = new InboundHttpProxy({ store, log: pino({ level: 'silent' }), rateLimiter: new LocalRateLimiter({ registry: metrics.registry }), telemetry: new RequestTelemetry(metrics, accessLog, { store }), tracer });
  pod = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(req.url === '/missing' ? 404 : 200).end('ok'));
  });
  await new Promise<void>((r) => pod.listen(0, '127.0.0.1', r));
  front = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    const snapshot = store.current!;
    const workload = snapshot.workloads.get('bookinfo/reviews-v1')!;
    const source = snapshot.workloads.get('bookinfo/productpage-v1')!;
    const tunnel: InboundHttpTunnel = {
      connection: {
        direction: 'inbound',
        src: { addr: `${source.ips[0]}:${socket.remotePort}`, workload: source, identity: PRODUCTPAGE },
        dst: { addr: '10.244.1.21:9080', workload, identity: workload.identity },
        securityPolicy: 'mutual_tls',
      },
      sourceIp: source.ips[0]!,
      sourcePort: socket.remotePort ?? 0,
      sourceIdentity: PRODUCTPAGE,
      destination: { ip: '10.244.1.21', port: 9080 },
      workload,
      protocol: 'HTTP',
      connect: () =>
        new Promise((resolve) => {
          const s = connect((pod.address() as AddressInfo).port, '127.0.0.1', () => resolve(s));
          s.once('error', (err) => resolve(err.message));
        }),
    };
    void relay(socket, proxy.open(tunnel));
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  frontPort = (front.address() as AddressInfo).port;
});

after(async () => {
  agent.destroy();
  for (const s of sockets) s.destroy();
  front.close();
  pod.closeAllConnections();
  pod.close();
  await tracer.shutdown();
  await collector.close();
});

function get(path: string, headers: http.OutgoingHttpHeaders = {}): Promise<{ status: number; traceparent: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: frontPort, path, agent, headers: { host: 'reviews:9080', ...headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, traceparent: undefined }));
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
  assert.equal((await get('/reviews/1')).status, 200);
  const samples = parsePrometheusText(await metrics.registry.metrics());
  const total = samplesOf(samples, 'istio_requests_total', { reporter: 'destination', destination_workload: 'reviews' });
  assert.equal(total.length, 1);
  assert.equal(total[0]!.labels.response_code, undefined);
  assert.equal(total[0]!.labels.request_method, 'GET');
  assert.equal(samplesOf(samples, 'istio_request_duration_milliseconds_count').length, 0, 'REQUEST_DURATION disabled');
  assert.equal(samplesOf(samples, 'istio_response_bytes_count').length, 1, 'RESPONSE_SIZE still reported');
});

test('access log filter: only requests the expression accepts are logged', async () => {
  apply(reviewsTelemetry('  accessLogging: [{filter: {expression: "response.code >= 400"}}]'));
  const before = requestRecords().length;
  assert.equal((await get('/reviews/2')).status, 200);
  assert.equal((await get('/missing')).status, 404);
  await new Promise((r) => setImmediate(r));
  const logged = requestRecords().slice(before);
  assert.deepEqual(logged.map((r) => [r.path, r.response_code]), [['/missing', 404]]);
});

test('tracing: 0 % sampling exports nothing, 100 % with custom tags exports the span with its tags, disableSpanReporting none', async () => {
  // The earlier tests' spans (sampled by the mesh default) leave the queue first.
  await tracer.flush();
  const start = collector.spans.length;
  apply(reviewsTelemetry('  tracing: [{randomSamplingPercentage: 0}]'));
  assert.equal((await get('/reviews/unsampled')).status, 200);
  apply(reviewsTelemetry('  tracing: [{disableSpanReporting: true}]'));
  assert.equal((await get('/reviews/unreported')).status, 200);
  apply(reviewsTelemetry(`  tracing:
  - randomSamplingPercentage: 100
    customTags:
      team: {literal: {value: bookinfo-team}}
      user: {header: {name: x-user, defaultValue: nobody}}
      from_env: {environment: {name: AMBIT_TEST_UNSET_VARIABLE, defaultValue: fallback}}`));
  assert.equal((await get('/reviews/sampled', { 'x-user': 'jason' })).status, 200);
  await tracer.flush();
  await collector.waitForSpans(start + 1);
  const spans = collector.spans.slice(start);
  // Batches export in order: after the flush, the earlier requests' spans would be here if they had been exported.
  assert.deepEqual(spans.map((s) => s.attributes['http.url']), ['http://reviews:9080/reviews/sampled']);
  assert.equal(spans[0]!.attributes['team'], 'bookinfo-team');
  assert.equal(spans[0]!.attributes['user'], 'jason');
  assert.equal(spans[0]!.attributes['from_env'], 'fallback');
});

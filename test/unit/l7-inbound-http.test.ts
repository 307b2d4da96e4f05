// The destination-side HTTP proxy in-process: real Node clients (HTTP/1.1 keep-alive and h2c prior
// knowledge) on loopback, whose connections stand for admitted tunnels (relayed to InboundHttpProxy as
// the tunnel code relays them), and a real Node server as the pod. Per request: 400, 403 "RBAC: access
// denied" by path, method and header (a header sent twice too), 429 with x-ratelimit-* (and gRPC's 14),
// 200 with the normalized path and trace context, Istio's metrics with reporter="destination", spans
// at a real OTLP collector.

import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { InboundHttpProxy, type InboundHttpTunnel } from '../../agent/l7/proxy/inbound-http.js';
import { RateLimiter } from '../../agent/policy/rate-limit.js';
import type { SpiffeId } from '../../agent/state/model.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { MeshMetrics } from '../../agent/telemetry/metrics.js';
import { RequestTelemetry } from '../../agent/telemetry/requests.js';
import { RequestTracer } from '../../agent/telemetry/tracing.js';
import { relay } from '../../agent/tunnel/relay.js';
import { OtlpCollector } from '../fixtures/otlp/collector.js';
import { parsePrometheusText, samplesOf } from './helpers/prometheus-text.js';
import { mesh } from './helpers/l7-mesh.js';

const POLICIES = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-allow, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/bookinfo/sa/default"]}}]
    to: [{operation: {methods: ["GET", "POST"], paths: ["/reviews/*", "/limited", "/echo", "/admin/*", "/grpc.*"]}}]
    when: [{key: "request.headers[x-user]", notValues: ["blocked"]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin/*"]}}]
---
apiVersion: ambit.dev/v1alpha1
kind: RateLimit
metadata: {name: reviews, namespace: bookinfo}
spec:
  targetRef: {kind: Service, name: reviews}
  routes:
  - name: limited
    match: [{path: {prefix: /limited}}]
    tokenBucket: {maxTokens: 2, fillInterval: 1h}
  - name: grpc
    match: [{path: {prefix: /grpc.Limited}}]
    tokenBucket: {maxTokens: 1, fillInterval: 1h}
`;

const PRODUCTPAGE = 'spiffe://cluster.local/ns/bookinfo/sa/default' as SpiffeId;
const SLEEP = 'spiffe://cluster.local/ns/other/sa/default' as SpiffeId;

const store = new WorkloadStore();
const metrics = new MeshMetrics('test');
let collector: OtlpCollector;
let tracer: RequestTracer;
let proxy: InboundHttpProxy;
let pod: http.Server;
let pod2: http2.Http2Server;
const fronts: Server[] = [];
const sockets = new Set<Socket>();
let podConnections = 0;
const podRequests: { method: string; url: string; headers: http.IncomingHttpHeaders }[] = [];

/** A loopback listener whose connections are tunnels from `identity` to reviews-v1:9080, carried to `podPort`. */
async function front(identity: SpiffeId | undefined, podPort: () => number, protocol: 'HTTP' | 'GRPC' = 'HTTP'): Promise<number> {
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    const snapshot = store.current!;
    const workload = snapshot.workloads.get('bookinfo/reviews-v1')!;
    const source = snapshot.workloads.get(identity === SLEEP ? 'other/sleep' : 'bookinfo/productpage-v1')!;
    const tunnel: InboundHttpTunnel = {
      connection: {
        direction: 'inbound',
        src: { addr: `${source.ips[0]}:${socket.remotePort}`, workload: source, ...(identity ? { identity } : {}) },
        dst: { addr: '10.244.1.21:9080', workload, ...(identity ? { identity: workload.identity } : {}) },
        securityPolicy: identity ? 'mutual_tls' : 'unknown',
      },
      sourceIp: source.ips[0]!,
      sourcePort: socket.remotePort ?? 0,
      ...(identity ? { sourceIdentity: identity } : {}),
      destination: { ip: '10.244.1.21', port: 9080 },
      workload,
      protocol,
      connect: () =>
        new Promise((resolve) => {
          const s = connect(podPort(), '127.0.0.1', () => resolve(s));
          s.once('error', (err) => resolve(err.message));
        }),
    };
    void relay(socket, proxy.open(tunnel));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  fronts.push(server);
  return (server.address() as AddressInfo).port;
}

let fromProductpage = 0;
let fromSleep = 0;
let grpcFront = 0;
let toNowhere = 0;

before(async () => {
  store.replace(mesh(POLICIES));
  collector = await OtlpCollector.start();
  tracer = await RequestTracer.create({ endpoint: collector.url, samplingPercent: 100 }, 'node-b');
  proxy = new InboundHttpProxy({
    store,
    log: pino({ level: 'silent' }),
    rateLimiter: new RateLimiter({ registry: metrics.registry }),
    telemetry: new RequestTelemetry(metrics, pino({ level: 'silent' }), { store }),
    tracer,
  });
  pod = http.createServer((req, res) => {
    podRequests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json', 'x-pod': 'reviews-v1' }).end(JSON.stringify({ url: req.url, body: Buffer.concat(chunks).toString() })));
  });
  pod.on('connection', () => podConnections++);
  await new Promise<void>((r) => pod.listen(0, '127.0.0.1', r));
  pod2 = http2.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/grpc' });
      res.addTrailers({ 'grpc-status': '0' });
      res.end(Buffer.from([0, 0, 0, 0, 0]));
    });
  });
  await new Promise<void>((r) => pod2.listen(0, '127.0.0.1', r));
  const podPort = (): number => (pod.address() as AddressInfo).port;
  fromProductpage = await front(PRODUCTPAGE, podPort);
  fromSleep = await front(SLEEP, podPort);
  grpcFront = await front(PRODUCTPAGE, () => (pod2.address() as AddressInfo).port, 'GRPC');
  toNowhere = await front(PRODUCTPAGE, () => 1);
});

after(async () => {
  agent.destroy();
  for (const s of sockets) s.destroy();
  for (const f of fronts) f.close();
  pod.closeAllConnections();
  pod.close();
  pod2.close();
  await tracer.shutdown();
  await collector.close();
});

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function get(port: number, path: string, options: { method?: string; headers?: http.OutgoingHttpHeaders | string[]; body?: string } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', agent, headers: options.headers ?? { host: 'reviews:9080' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.once('error', reject);
    req.end(options.body);
  });
}

async function scrape(where: Record<string, string>): Promise<number> {
  const samples = parsePrometheusText(await metrics.registry.metrics());
  return samplesOf(samples, 'istio_requests_total', where).reduce((n, s) => n + s.value, 0);
}

test('allowed: 200 from the pod, with the normalized path, a request id, the proven client identity and a fresh trace context', async () => {
  const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  const res = await get(fromProductpage, '/reviews/./x/../1?q=%2e', { headers: { host: 'reviews:9080', traceparent, 'x-forwarded-client-cert': 'By=forged' } });
  assert.equal(res.status, 200);
  assert.equal(res.headers['x-pod'], 'reviews-v1');
  const seen = podRequests.at(-1)!;
  assert.equal(seen.url, '/reviews/1?q=%2e', 'the pod sees the path policy judged');
  assert.equal(seen.headers.host, 'reviews:9080');
  assert.match(String(seen.headers['x-request-id']), /^[0-9a-f-]{36}$/);
  assert.equal(seen.headers['x-forwarded-client-cert'], `By=spiffe://cluster.local/ns/bookinfo/sa/default;URI=${PRODUCTPAGE}`);
  const [, traceId, spanId, flags] = String(seen.headers.traceparent).split('-');
  assert.equal(traceId, '0af7651916cd43dd8448eb211c80319c');
  assert.notEqual(spanId, 'b7ad6b7169203331', 'the pod is the child of the agent\'s SERVER span');
  assert.equal(flags, '01');

  await tracer.flush();
  await collector.waitForSpans(1);
  const span = collector.spans.find((s) => s.traceId === traceId)!;
  assert.equal(span.kind, 2, 'SERVER');
  assert.equal(span.parentSpanId, 'b7ad6b7169203331');
  assert.equal(span.spanId, spanId);
  assert.equal(span.resource['service.name'], 'reviews.bookinfo');
  assert.equal(span.attributes['http.status_code'], 200);
  assert.equal(span.attributes['upstream_cluster'], 'inbound|9080||');

  assert.equal(
    await scrape({
      reporter: 'destination',
      source_workload: 'productpage',
      source_principal: PRODUCTPAGE,
      destination_workload: 'reviews',
      destination_version: 'v1',
      destination_service: 'reviews.bookinfo.svc.cluster.local',
      destination_principal: 'spiffe://cluster.local/ns/bookinfo/sa/default',
      request_protocol: 'http',
      response_code: '200',
      response_flags: '-',
      connection_security_policy: 'mutual_tls',
    }),
    1,
  );
});

test('a request body streams to the pod and the answer back; the tunnel keeps one connection to the pod alive', async () => {
  const before = podConnections;
  const big = 'x'.repeat(3 * 1024 * 1024);
  const res = await get(fromProductpage, '/echo', { method: 'POST', headers: { host: 'reviews:9080', 'content-type': 'text/plain' }, body: big });
  assert.equal(res.status, 200);
  assert.equal((JSON.parse(res.body) as { body: string }).body.length, big.length);
  for (let i = 0; i < 3; i++) assert.equal((await get(fromProductpage, `/reviews/${i}`)).status, 200);
  assert.ok(podConnections - before <= 1, `requests on one kept-alive tunnel reuse the pod connection (${podConnections - before} opened)`);
});

test('denied: 403 "RBAC: access denied" by path, by method, by a DENY policy, by identity, and by a header, also when sent twice', async () => {
  const cases: [string, number, Parameters<typeof get>[2]][] = [
    ['/details/1', fromProductpage, {}],
    ['/reviews/1', fromProductpage, { method: 'DELETE' }],
    ['/admin/x', fromProductpage, {}],
    ['/reviews/1', fromSleep, {}],
    ['/reviews/1', fromProductpage, { headers: { host: 'reviews:9080', 'x-user': 'blocked' } }],
    ['/reviews/1', fromProductpage, { headers: ['host', 'reviews:9080', 'x-user', 'alice', 'x-user', 'blocked'] }],
    // The DENY rule sees the normalized path: no way around it with dot segments or encoding.
    ['/reviews/../admin/%78', fromProductpage, {}],
  ];
  const before = podRequests.length;
  for (const [path, port, options] of cases) {
    const res = await get(port, path, options);
    assert.equal(res.status, 403, `${options?.method ?? 'GET'} ${path}`);
    assert.equal(res.body, 'RBAC: access denied');
  }
  assert.equal(podRequests.length, before, 'no denied request reached the pod');
  // One value alone is allowed: the header condition looks at each value.
  assert.equal((await get(fromProductpage, '/reviews/1', { headers: ['host', 'reviews:9080', 'x-user', 'alice', 'x-user', 'bob'] })).status, 200);
  assert.equal(await scrape({ reporter: 'destination', response_code: '403', response_flags: '-', source_principal: SLEEP, source_workload: 'sleep' }), 1);
  assert.equal(await scrape({ reporter: 'destination', response_code: '403' }), cases.length);
});

test('a path policy cannot be normalized: 400, never forwarded', async () => {
  const res = await get(fromProductpage, '/reviews/%00');
  assert.equal(res.status, 400);
  assert.equal(await scrape({ reporter: 'destination', response_code: '400' }), 1);
});

test('rate limited: 429 local_rate_limited with x-ratelimit-* once the bucket is empty, flag RL; allowed answers carry the headers too', async () => {
  const first = await get(fromProductpage, '/limited');
  assert.equal(first.status, 200);
  assert.equal(first.headers['x-ratelimit-limit'], '2');
  assert.equal(first.headers['x-ratelimit-remaining'], '1');
  assert.equal((await get(fromProductpage, '/limited')).status, 200);
  const limited = await get(fromProductpage, '/limited');
  assert.equal(limited.status, 429);
  assert.equal(limited.body, 'local_rate_limited');
  assert.equal(limited.headers['x-ratelimit-remaining'], '0');
  assert.ok(Number(limited.headers['x-ratelimit-reset']) > 0);
  assert.equal(await scrape({ reporter: 'destination', response_code: '429', response_flags: 'RL' }), 1);
  const samples = parsePrometheusText(await metrics.registry.metrics());
  assert.equal(samplesOf(samples, 'ambit_rate_limit_decisions_total', { rate_limit: 'reviews', route: 'limited', decision: 'rate_limited' })[0]?.value, 1);
});

test('gRPC over h2c prior knowledge: allowed calls reach the pod over HTTP/2; over the limit the client gets grpc-status 14', async () => {
  const session = http2.connect(`http://127.0.0.1:${grpcFront}`);
  try {
    const call = (path: string): Promise<{ status: number; grpcStatus: string | undefined; headers: http2.IncomingHttpHeaders }> =>
      new Promise((resolve, reject) => {
        const s = session.request({ ':method': 'POST', ':path': path, ':authority': 'reviews:9080', 'content-type': 'application/grpc', te: 'trailers' });
        let headers: http2.IncomingHttpHeaders = {};
        let trailers: http2.IncomingHttpHeaders = {};
        s.on('response', (h) => (headers = h));
        s.on('trailers', (t) => (trailers = t));
        s.resume();
        s.on('end', () => resolve({ status: Number(headers[':status']), grpcStatus: String(trailers['grpc-status'] ?? headers['grpc-status']), headers }));
        s.on('error', reject);
        s.end(Buffer.from([0, 0, 0, 0, 0]));
      });
    const ok = await call('/grpc.Open/Call');
    assert.equal(ok.status, 200);
    assert.equal(ok.grpcStatus, '0');
    assert.equal((await call('/grpc.Limited/Call')).grpcStatus, '0');
    const limited = await call('/grpc.Limited/Call');
    assert.equal(limited.status, 200);
    assert.equal(limited.grpcStatus, '14');
    assert.equal(await scrape({ reporter: 'destination', request_protocol: 'grpc', response_code: '200', grpc_response_status: '14', response_flags: 'RL' }), 1);
    assert.equal(await scrape({ reporter: 'destination', request_protocol: 'grpc', response_code: '200', grpc_response_status: '0', response_flags: '-' }), 2);
  } finally {
    session.close();
  }
});

test('the pod cannot be reached: 503 with flag UF', async () => {
  const res = await get(toNowhere, '/reviews/1', { headers: { host: 'reviews:9080', connection: 'close' } });
  assert.equal(res.status, 503);
  assert.match(res.body, /connection failure/);
  assert.equal(await scrape({ reporter: 'destination', response_code: '503', response_flags: 'UF' }), 1);
});

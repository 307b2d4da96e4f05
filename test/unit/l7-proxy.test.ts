// The outbound HTTP proxy in-process: real Node clients (HTTP/1.1 keep-alive and h2c prior knowledge)
// through OutboundHttpProxy to real Node servers on loopback that stand in for bookinfo's pods (the
// upstream opener maps a pod's address to its server, as the lab maps it to an HBONE stream).

import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { type AddressInfo, type Server, connect, createServer } from 'node:net';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { httpDestinationOf } from '../../agent/l7/proxy/http-destination.js';
import { OutboundHttpProxy } from '../../agent/l7/proxy/outbound-http.js';
import type { CompletedRequest } from '../../agent/l7/proxy/request-record.js';
import type { MeshSnapshot } from '../../agent/state/model.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { mesh } from './helpers/l7-mesh.js';

const PODS: Record<string, string> = { '10.244.1.21': 'reviews-v1', '10.244.1.22': 'reviews-v2', '10.244.1.23': 'reviews-v3' };
const backends = new Map<string, { server: http.Server; port: number }>();
const store = new WorkloadStore();
const records: CompletedRequest[] = [];
const proxy = new OutboundHttpProxy({ node: 'n', store, log: pino({ level: 'silent' }), onRequestComplete: (r) => records.push(r) });
let front: Server;
let frontPort = 0;
let flaky = 0;
const clientSockets = new Set<import('node:net').Socket>();

function backend(name: string): http.Server {
  return http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/flaky' && flaky-- > 0) {
      res.writeHead(503).end('flaky');
      return;
    }
    if (url.pathname === '/stall-body') {
      // Headers and a first chunk at once; the rest after ?end= ms, or never (a stalled body).
      res.writeHead(200, { 'content-type': 'text/plain', 'x-pod': name });
      res.write('partial');
      const endAfter = url.searchParams.get('end');
      if (endAfter !== null) setTimeout(() => res.end(' and the rest'), Number(endAfter));
      return;
    }
    if (url.pathname === '/echo-body') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => res.end(Buffer.concat(chunks)));
      return;
    }
    const delay = Number(url.searchParams.get('delay') ?? 0);
    setTimeout(() => {
      res.setHeader('x-pod', name);
      res.end(JSON.stringify({ pod: name, path: req.url, host: req.headers.host, headers: req.headers }));
    }, delay);
  });
}

before(async () => {
  for (const [ip, name] of Object.entries(PODS)) {
    const server = backend(name);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    backends.set(ip, { server, port: (server.address() as AddressInfo).port });
  }
  front = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => {
    clientSockets.add(socket);
    const snapshot = store.current!;
    const source = snapshot.workloads.get('bookinfo/productpage-v1')!;
    const originalDst = { ip: '10.96.0.21', port: 9080 };
    void proxy.handle({
      socket,
      source,
      sourceIp: '10.244.1.10',
      sourcePort: socket.remotePort ?? 0,
      originalDst,
      destination: httpDestinationOf(snapshot, originalDst)!,
      openUpstream: async ({ address, service }) => {
        upstreamServices.push(service?.hostname);
        const b = backends.get(address.ip);
        if (!b) return `no pod at ${address.ip}`;
        return new Promise((resolve) => {
          const s = connect(b.port, '127.0.0.1', () => resolve(s));
          s.once('error', (err) => resolve(err.message));
        });
      },
    });
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  frontPort = (front.address() as AddressInfo).port;
});

after(() => {
  agent.destroy();
  for (const s of clientSockets) s.destroy();
  front.close();
  for (const b of backends.values()) {
    b.server.closeAllConnections();
    b.server.close();
  }
  proxy.close();
});

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
/** The Service each upstream connection was opened for (its subject_alt_names verify the server). */
const upstreamServices: (string | undefined)[] = [];

function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: frontPort, path, agent, headers: { host: 'reviews:9080', ...headers } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
  });
}

let version = 0;
/** Each configuration gets a new version, as the store's sources number them (clusters update on it). */
function use(snapshot: MeshSnapshot): void {
  store.replace({ ...snapshot, version: ++version });
}

const VS = (spec: string): string => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
${spec}`;
const SUBSETS = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}`;

test('HTTP/1.1 keep-alive requests reach the Service with Host kept and forwarding headers added', async () => {
  use(mesh());
  const r = await get('/hello?x=1', { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' });
  assert.equal(r.status, 200);
  const body = JSON.parse(r.body) as { pod: string; path: string; host: string; headers: Record<string, string> };
  assert.match(body.pod, /^reviews-v[123]$/);
  assert.equal(body.path, '/hello?x=1');
  assert.equal(body.host, 'reviews:9080');
  assert.equal(body.headers['x-forwarded-proto'], 'http');
  assert.match(body.headers['x-request-id'] ?? '', /^[0-9a-f-]{36}$/);
  assert.equal(body.headers['traceparent'], '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
  const record = records.at(-1)!;
  assert.equal(record.status, 200);
  assert.equal(record.destinationService?.hostname, 'reviews.bookinfo.svc.cluster.local');
  assert.equal(upstreamServices.at(-1), 'reviews.bookinfo.svc.cluster.local', 'the upstream is opened knowing its Service');
});

test('header canary, weighted split and redirect follow the VirtualService', async () => {
  use(mesh(SUBSETS, VS(`  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: newhost}
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 80}
    - {destination: {host: reviews, subset: v3}, weight: 20}`)));
  for (let i = 0; i < 5; i++) assert.equal((await get('/', { 'end-user': 'jason' })).headers['x-pod'], 'reviews-v2');
  const counts: Record<string, number> = {};
  for (let i = 0; i < 400; i++) {
    const pod = (await get('/')).headers['x-pod'] as string;
    counts[pod] = (counts[pod] ?? 0) + 1;
  }
  assert.equal(counts['reviews-v2'], undefined);
  assert.ok(Math.abs((counts['reviews-v1'] ?? 0) / 400 - 0.8) < 0.08, JSON.stringify(counts));
  const redirect = await get('/old/page');
  assert.equal(redirect.status, 301);
  assert.equal(redirect.headers.location, 'http://newhost/new');
});

test('retries recover from a flaky endpoint, and stop at the configured attempts with URX', async () => {
  use(mesh(VS(`  http:
  - route: [{destination: {host: reviews}}]
    retries: {attempts: 2, retryOn: 5xx}`)));
  flaky = 2;
  const ok = await get('/flaky');
  assert.equal(ok.status, 200);
  assert.equal(records.at(-1)!.attempts, 3);
  flaky = 10;
  const failed = await get('/flaky');
  assert.equal(failed.status, 503);
  assert.equal(records.at(-1)!.attempts, 3);
  assert.deepEqual(records.at(-1)!.flags, ['URX']);
  flaky = 0;
});

test('timeout answers 504 UT; fault abort and delay apply', async () => {
  use(mesh(VS(`  http:
  - match: [{uri: {prefix: /slow}}]
    route: [{destination: {host: reviews}}]
    timeout: 0.2s
  - match: [{uri: {prefix: /abort}}]
    route: [{destination: {host: reviews}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
  - route: [{destination: {host: reviews}}]
    fault: {delay: {fixedDelay: 0.3s, percentage: {value: 100}}}`)));
  const slow = await get('/slow?delay=1000');
  assert.equal(slow.status, 504);
  assert.deepEqual(records.at(-1)!.flags, ['UT']);
  assert.equal((await get('/abort')).status, 418);
  assert.deepEqual(records.at(-1)!.flags, ['FI']);
  const t0 = Date.now();
  assert.equal((await get('/delayed')).status, 200);
  assert.ok(Date.now() - t0 >= 290);
  assert.deepEqual(records.at(-1)!.flags, ['DI']);
});

test('circuit breaker: requests beyond http2MaxRequests get 503 UO', async () => {
  use(mesh(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  trafficPolicy: {connectionPool: {http: {http2MaxRequests: 2}}}`));
  const many = new http.Agent({ keepAlive: true });
  const one = (): Promise<number> =>
    new Promise((resolve) => http.get({ host: '127.0.0.1', port: frontPort, path: '/?delay=300', agent: many }, (res) => (res.resume(), resolve(res.statusCode ?? 0))));
  const statuses = await Promise.all([one(), one(), one(), one(), one()]);
  assert.deepEqual(statuses.sort(), [200, 200, 503, 503, 503]);
  assert.ok(records.some((r) => r.flags.includes('UO')));
  many.destroy();
});

test('h2c with prior knowledge goes through and comes back over HTTP/2', async () => {
  use(mesh());
  const session = http2.connect(`http://127.0.0.1:${frontPort}`);
  const answers = await Promise.all(
    [1, 2, 3].map(
      (i) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const s = session.request({ ':path': `/h2/${i}`, ':authority': 'reviews:9080' });
          let status = 0;
          let body = '';
          s.on('response', (h) => (status = Number(h[':status'])));
          s.on('data', (d: Buffer) => (body += d));
          s.on('end', () => resolve({ status, body }));
          s.on('error', reject);
        }),
    ),
  );
  session.close();
  for (const a of answers) assert.equal(a.status, 200, JSON.stringify(records.at(-1)));
  assert.equal(records.at(-1)!.httpVersion, 'HTTP/2');
});

test('a consistent-hash cookie is issued, and requests carrying it stay on one pod', async () => {
  use(mesh(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: sticky, ttl: 60s}}}}`));
  const first = await get('/');
  const cookie = String(first.headers['set-cookie']?.[0] ?? '');
  assert.match(cookie, /^sticky="[0-9a-f]{8}"; Max-Age=60; HttpOnly$/);
  const pods = new Set<string>([first.headers['x-pod'] as string]);
  for (let i = 0; i < 10; i++) pods.add((await get('/', { cookie: cookie.split(';')[0]! })).headers['x-pod'] as string);
  assert.equal(pods.size, 1, [...pods].join(','));
});

test('a request body reaches the pod, small (curl -d) and large (streamed)', async () => {
  use(mesh());
  for (const body of [Buffer.from('abc'), Buffer.alloc(2 * 1024 * 1024, 7)]) {
    const answer = await new Promise<Buffer>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: frontPort, path: '/echo-body', method: 'POST', headers: { host: 'reviews:9080', 'content-length': body.length } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(Buffer.concat(chunks)));
      });
      req.on('error', reject);
      req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')));
      req.end(body);
    });
    assert.equal(answer.length, body.length);
    assert.ok(answer.equals(body));
  }
});

test('the route timeout spans the whole response: a stalled body resets the client (HTTP/1.1 closes, HTTP/2 RST_STREAM) and records UT with the status sent', async () => {
  use(mesh(VS(`  http:
  - route: [{destination: {host: reviews}}]
    timeout: 0.3s`)));
  // HTTP/1.1: the head and first chunk arrive, then the connection closes without the last chunk.
  const t0 = Date.now();
  const h1 = await new Promise<{ status: number; body: string; complete: boolean }>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: frontPort, path: '/stall-body', agent: false, headers: { host: 'reviews:9080' } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d));
      res.on('error', () => undefined);
      res.on('close', () => resolve({ status: res.statusCode ?? 0, body, complete: res.complete }));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('the stalled response was not cut within 10 s')));
  });
  const elapsed = Date.now() - t0;
  assert.deepEqual(h1, { status: 200, body: 'partial', complete: false });
  assert.ok(elapsed >= 290, `cut after ${elapsed} ms, before the 300 ms timeout`);
  const r1 = records.at(-1)!;
  assert.equal(r1.status, 200);
  assert.deepEqual(r1.flags, ['UT']);
  assert.equal(r1.responseBytes, 'partial'.length);
  assert.match(r1.detail ?? '', /route timeout 300 ms expired during the response/);

  // HTTP/2: only the stream is reset, with INTERNAL_ERROR; the session stays usable.
  const session = http2.connect(`http://127.0.0.1:${frontPort}`);
  try {
    const h2 = await new Promise<{ status: number; body: string; rstCode: number | undefined }>((resolve) => {
      const s = session.request({ ':path': '/stall-body', ':authority': 'reviews:9080' });
      let status = 0;
      let body = '';
      s.on('response', (h) => (status = Number(h[':status'])));
      s.on('data', (d: Buffer) => (body += d));
      s.on('error', () => undefined);
      s.on('close', () => resolve({ status, body, rstCode: s.rstCode }));
    });
    assert.deepEqual(h2, { status: 200, body: 'partial', rstCode: http2.constants.NGHTTP2_INTERNAL_ERROR });
    assert.deepEqual(records.at(-1)!.flags, ['UT']);
    assert.equal(records.at(-1)!.httpVersion, 'HTTP/2');
    const after = await new Promise<number>((resolve, reject) => {
      const s = session.request({ ':path': '/stall-body?end=10', ':authority': 'reviews:9080' });
      s.on('response', (h) => resolve(Number(h[':status'])));
      s.on('error', reject);
      s.resume();
    });
    assert.equal(after, 200);
  } finally {
    session.close();
  }
});

test('the route timeout lets a response that completes in time through, and starts only once the request body has arrived', async () => {
  use(mesh(VS(`  http:
  - route: [{destination: {host: reviews}}]
    timeout: 0.3s`)));
  // Headers at once, the end 50 ms later: well inside the timeout, whole and unflagged.
  const done = await get('/stall-body?end=50');
  assert.equal(done.status, 200);
  assert.equal(done.body, 'partial and the rest');
  assert.deepEqual(records.at(-1)!.flags, []);
  // A body sent slowly (400 ms between its two halves, longer than the timeout) is echoed once it has
  // all arrived: the upstream's 300 ms only begin at its end, as with Envoy.
  const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: frontPort, path: '/echo-body', method: 'POST', agent: false, headers: { host: 'reviews:9080', 'content-length': 10 } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')));
    req.write('first');
    setTimeout(() => req.end('-last'), 400);
  });
  assert.deepEqual(answer, { status: 200, body: 'first-last' });
  assert.deepEqual(records.at(-1)!.flags, []);
});

// HTTP through the agents in the lab: a client pod on node alpha sends real HTTP/1.1 keep-alive
// requests (a small Node client run in the pod) and h2c requests to Services whose pods run on beta;
// alpha's agent routes, balances and retries them by the VirtualService and DestinationRule in force,
// and carries them to beta inside HBONE. Istio's task examples, checked from the client's side.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, afterEach, before, test } from 'node:test';
import { LabSession, twoNodesYaml } from './helpers/lab-session.js';

const LAB = `tl7${process.pid % 1000}`;
const session = LabSession.inTempDir(LAB, 'ambit-l7-test-');

// Every app pod runs this: it names itself in x-pod, counts hits per ?k= key (failing the first
// ?fail=N of them with 503), waits ?ms=, counts copies whose Host ends in -shadow, answers /echo with
// the length and SHA-256 of the request body it received, and speaks h2c on 50051.
const SERVER = `const http = require('http'), http2 = require('http2'); const name = process.env.POD_NAME; const hits = {}; let shadow = 0;
http.createServer((q, s) => {
  const u = new URL(q.url, 'http://x'); const k = u.searchParams.get('k');
  if (u.pathname === '/hits') return s.end(String(hits[u.searchParams.get('of')] || 0));
  if (u.pathname === '/shadow') return s.end(String(shadow));
  if (u.pathname === '/echo') { const h = require('crypto').createHash('sha256'); let n = 0; q.on('data', (d) => { n += d.length; h.update(d); });
    return q.on('end', () => { s.setHeader('x-pod', name); s.end(JSON.stringify({ pod: name, bytes: n, sha256: h.digest('hex') })); }); }
  if (/-shadow(:|$)/.test(q.headers.host || '')) shadow++;
  if (k) hits[k] = (hits[k] || 0) + 1;
  setTimeout(() => {
    if (k && hits[k] <= Number(u.searchParams.get('fail') || 0)) { s.writeHead(503); return s.end(name + ' failing'); }
    s.setHeader('x-pod', name); s.end(JSON.stringify({ pod: name, path: q.url, host: q.headers.host, proto: q.headers['x-forwarded-proto'] }));
  }, Number(u.searchParams.get('ms') || 0));
}).listen(9080);
http2.createServer((q, s) => s.end(name + ' ' + q.httpVersion + ' ' + q.headers['content-type'])).listen(50051);`;

// The client: GETs <url> <n> times over <conc> keep-alive connections with <headers>, and prints counts.
const CLIENT = `const http = require('http'); const [url, n, headers, conc] = process.argv.slice(1);
const agent = new http.Agent({ keepAlive: true, maxSockets: Number(conc) }); const out = { status: {}, pod: {}, location: [], cookies: [], overloaded: 0, ms: [] }; let i = 0;
const one = () => new Promise((done) => { const t = Date.now(); const r = http.get(url, { agent, headers: JSON.parse(headers) }, (s) => { let b = ''; s.on('data', (d) => (b += d)); s.on('end', () => {
  out.status[s.statusCode] = (out.status[s.statusCode] || 0) + 1; const p = s.headers['x-pod'] || '-'; out.pod[p] = (out.pod[p] || 0) + 1;
  if (s.headers.location) out.location.push(s.headers.location); if (s.headers['set-cookie']) out.cookies.push(...s.headers['set-cookie']);
  if (s.headers['x-envoy-overloaded']) out.overloaded++; out.ms.push(Date.now() - t); out.body = b; done(); }); });
  r.on('error', (e) => { out.status.error = (out.status.error || 0) + 1; out.error = e.message; done(); }); });
const worker = async () => { while (i < Number(n)) { i++; await one(); } };
Promise.all(Array.from({ length: Number(conc) }, worker)).then(() => { console.log(JSON.stringify(out)); process.exit(0); });`;

interface Counts {
  status: Record<string, number>;
  pod: Record<string, number>;
  location: string[];
  cookies: string[];
  overloaded: number;
  ms: number[];
  body?: string;
  error?: string;
}

async function run(url: string, n = 1, headers: Record<string, string> = {}, conc = 1, timeoutMs = 60_000): Promise<Counts> {
  const r = await session.exec('shop/client', ['node', '-e', CLIENT, url, String(n), JSON.stringify(headers), String(conc)], timeoutMs);
  assert.equal(r.code, 0, `client failed (exit ${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as Counts;
}

async function text(url: string): Promise<string> {
  return (await run(url)).body ?? '';
}

function meshYaml(extra = ''): string {
  const pod = (name: string, app: string, version: string, ip: string, node: string, command: string[]): string => `---
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: shop, labels: { app: ${app}, version: ${version} } }
spec:
  nodeName: ${node}
  containers:
    - name: main
      command: ${JSON.stringify(command)}
      env: [{ name: POD_NAME, valueFrom: { fieldRef: { fieldPath: metadata.name } } }]
      ports: [{ name: http, containerPort: 9080 }]
status: { podIP: ${ip} }
`;
  const service = (name: string, vip: string, ports = '[{ name: http, port: 9080, targetPort: 9080 }]'): string => `---
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: shop }
spec: { clusterIP: ${vip}, selector: { app: ${name} }, ports: ${ports} }
`;
  const server = ['node', '-e', SERVER];
  return `${twoNodesYaml(83, 249)}
---
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { istio.io/dataplane-mode: ambient } }
${pod('client', 'client', 'v1', '10.249.1.20', 'alpha', ['sleep', 'infinity'])}${pod('reviews-v1', 'reviews', 'v1', '10.249.2.11', 'beta', server)}${pod('reviews-v2', 'reviews', 'v2', '10.249.2.12', 'beta', server)}${pod('reviews-v3', 'reviews', 'v3', '10.249.2.13', 'beta', server)}${pod('flaky-v1', 'flaky', 'v1', '10.249.2.21', 'beta', server)}${pod('shadow-v1', 'shadow', 'v1', '10.249.2.31', 'beta', server)}${service('reviews', '10.103.0.11')}${service('flaky', '10.103.0.21')}${service('shadow', '10.103.0.31')}${service('greeter', '10.103.0.41', '[{ name: grpc, port: 50051, targetPort: 50051 }]').replace('app: greeter', 'app: flaky')}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: shop }
spec:
  host: reviews
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }, { name: v3, labels: { version: v3 } }]
${extra}`;
}

const REVIEWS = 'http://reviews.shop:9080';
const FLAKY = 'http://flaky.shop:9080';

before(() => session.up(meshYaml(), 90));

// Each test starts from meshYaml() in force on alpha, whatever the test before it changed or how it ended.
afterEach(() => session.restore('alpha'));

after(() => session.down());

test('requests to an HTTP Service port go through the source agent: Host kept, x-forwarded-proto added, balanced over all pods', async () => {
  const r = await run(`${REVIEWS}/hello`, 60, {}, 2);
  assert.deepEqual(r.status, { 200: 60 }, JSON.stringify(r));
  assert.deepEqual(Object.keys(r.pod).sort(), ['reviews-v1', 'reviews-v2', 'reviews-v3']);
  const body = JSON.parse(r.body!) as { host: string; proto: string; path: string };
  assert.equal(body.host, 'reviews.shop:9080');
  assert.equal(body.proto, 'http');
  assert.equal(body.path, '/hello');
  const log = await session.agentLog('alpha');
  assert.match(log, /"src\.workload":"client".*"dst\.service":"reviews\.shop\.svc\.cluster\.local".*"msg":"request complete"/);
  const metrics = await session.exec('node/alpha', ['curl', '-s', 'http://127.0.0.1:15020/metrics']);
  assert.match(metrics.stdout, /^istio_requests_total\{reporter="source",.*destination_service="reviews\.shop\.svc\.cluster\.local".*response_code="200".*\} [1-9]/m);
});

test('weighted split 80/20 over 2000 requests, and the "end-user: jason" canary', async () => {
  await session.apply(
    meshYaml(`---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews, namespace: shop }
spec:
  hosts: [reviews]
  http:
  - match: [{ headers: { end-user: { exact: jason } } }]
    route: [{ destination: { host: reviews, subset: v2 } }]
  - route:
    - { destination: { host: reviews, subset: v1 }, weight: 80 }
    - { destination: { host: reviews, subset: v3 }, weight: 20 }
`),
    'alpha',
  );
  const started = Date.now();
  const split = await run(`${REVIEWS}/`, 2000, {}, 4, 120_000);
  const elapsed = Date.now() - started;
  assert.deepEqual(split.status, { 200: 2000 }, JSON.stringify(split.status));
  assert.equal(split.pod['reviews-v2'], undefined);
  const share = (split.pod['reviews-v1'] ?? 0) / 2000;
  assert.ok(Math.abs(share - 0.8) <= 0.05, `v1 got ${(share * 100).toFixed(1)}% (expected 80 ± 5): ${JSON.stringify(split.pod)}`);
  console.log(`# 2000 requests in ${elapsed} ms: ${JSON.stringify(split.pod)}`);
  const jason = await run(`${REVIEWS}/`, 30, { 'end-user': 'jason' });
  assert.deepEqual(jason.pod, { 'reviews-v2': 30 });
});

test('rewrite and redirect', async () => {
  await session.apply(
    meshYaml(`---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews, namespace: shop }
spec:
  hosts: [reviews]
  http:
  - match: [{ uri: { prefix: /old } }]
    rewrite: { uri: /new }
    route: [{ destination: { host: reviews } }]
  - match: [{ uri: { exact: /go } }]
    redirect: { uri: /gone, authority: elsewhere.example }
  - route: [{ destination: { host: reviews } }]
`),
    'alpha',
  );
  assert.equal((JSON.parse(await text(`${REVIEWS}/old/page?q=1`)) as { path: string }).path, '/new/page?q=1');
  const redirect = await run(`${REVIEWS}/go`);
  assert.deepEqual(redirect.status, { 301: 1 });
  assert.deepEqual(redirect.location, ['http://elsewhere.example/gone']);
});

test('retries recover from a flaky backend and stop at the configured attempts; perTryTimeout and timeout', async () => {
  await session.apply(
    meshYaml(`---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: flaky, namespace: shop }
spec:
  hosts: [flaky]
  http:
  - match: [{ uri: { prefix: /slow } }]
    route: [{ destination: { host: flaky } }]
    timeout: 0.5s
    retries: { attempts: 0 }
  - match: [{ uri: { prefix: /pertry } }]
    route: [{ destination: { host: flaky } }]
    retries: { attempts: 2, perTryTimeout: 0.2s, retryOn: 5xx }
  - route: [{ destination: { host: flaky } }]
    retries: { attempts: 3, retryOn: 5xx }
`),
    'alpha',
  );
  const key = `k${Date.now()}`;
  assert.deepEqual((await run(`${FLAKY}/?k=${key}a&fail=2`)).status, { 200: 1 }, 'two failures, then success on the third try');
  assert.equal(await text(`${FLAKY}/hits?of=${key}a`), '3');
  assert.deepEqual((await run(`${FLAKY}/?k=${key}b&fail=100`)).status, { 503: 1 });
  assert.equal(await text(`${FLAKY}/hits?of=${key}b`), '4', 'one try and 3 retries, no more');

  const slow = await run(`${FLAKY}/slow?ms=3000`);
  assert.deepEqual(slow.status, { 504: 1 });
  assert.ok(slow.ms[0]! >= 450 && slow.ms[0]! < 2000, `timeout answered after ${slow.ms[0]} ms`);
  const pertry = await run(`${FLAKY}/pertry?k=${key}c&ms=1000`);
  assert.deepEqual(pertry.status, { 504: 1 });
  assert.equal(await text(`${FLAKY}/hits?of=${key}c`), '3', 'each of the 3 tries was cut at its per-try timeout');
  assert.ok(pertry.ms[0]! >= 600 && pertry.ms[0]! < 2000, `per-try timeouts answered after ${pertry.ms[0]} ms`);
  assert.match(await session.agentLog('alpha'), /"response_flags":"UT,URX"|"response_flags":"UT"/);
});

test('fault abort and delay at their percentages; the mirror receives copies', async () => {
  await session.apply(
    meshYaml(`---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews, namespace: shop }
spec:
  hosts: [reviews]
  http:
  - match: [{ uri: { prefix: /abort } }]
    route: [{ destination: { host: reviews } }]
    fault: { abort: { httpStatus: 418, percentage: { value: 50 } } }
  - match: [{ uri: { prefix: /delay } }]
    route: [{ destination: { host: reviews } }]
    fault: { delay: { fixedDelay: 0.3s, percentage: { value: 100 } } }
  - match: [{ uri: { prefix: /mirrored } }]
    route: [{ destination: { host: reviews } }]
    mirror: { host: shadow }
    mirrorPercentage: { value: 100 }
  - route: [{ destination: { host: reviews } }]
`),
    'alpha',
  );
  const aborts = await run(`${REVIEWS}/abort`, 400, {}, 4);
  const share = (aborts.status['418'] ?? 0) / 400;
  assert.ok(Math.abs(share - 0.5) <= 0.08, `418 for ${(share * 100).toFixed(1)}% (expected 50 ± 8): ${JSON.stringify(aborts.status)}`);
  assert.equal((aborts.status['418'] ?? 0) + (aborts.status['200'] ?? 0), 400);
  const delayed = await run(`${REVIEWS}/delay`, 3);
  assert.deepEqual(delayed.status, { 200: 3 });
  for (const ms of delayed.ms) assert.ok(ms >= 290, `a delayed request took ${ms} ms`);

  const before_ = Number(await text('http://shadow.shop:9080/shadow'));
  const mirrored = await run(`${REVIEWS}/mirrored`, 20);
  assert.deepEqual(mirrored.status, { 200: 20 });
  let copies = 0;
  for (let i = 0; i < 20 && copies < 20; i++) {
    copies = Number(await text('http://shadow.shop:9080/shadow')) - before_;
    if (copies < 20) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(copies, 20, 'every mirrored request reached the shadow Service, marked -shadow');
});

test('sticky sessions by header and by cookie', async () => {
  await session.apply(
    meshYaml().replace(
      '  subsets: [{ name: v1',
      `  trafficPolicy:
    loadBalancer:
      consistentHash: { httpHeaderName: x-user }
  subsets: [{ name: v1`,
    ),
    'alpha',
  );
  const seen = new Set<string>();
  for (const user of ['ann', 'bob', 'cid', 'dee', 'eve', 'fay']) {
    const r = await run(`${REVIEWS}/`, 15, { 'x-user': user });
    assert.equal(Object.keys(r.pod).length, 1, `${user} moved between pods: ${JSON.stringify(r.pod)}`);
    seen.add(Object.keys(r.pod)[0]!);
  }
  assert.ok(seen.size >= 2, 'six users all hashed to one pod');

  await session.apply(
    meshYaml().replace(
      '  subsets: [{ name: v1',
      `  trafficPolicy:
    loadBalancer:
      consistentHash: { httpCookie: { name: sticky, ttl: 60s } }
  subsets: [{ name: v1`,
    ),
    'alpha',
  );
  const first = await run(`${REVIEWS}/`);
  const cookie = first.cookies.find((c) => c.startsWith('sticky='));
  assert.ok(cookie, `no sticky cookie issued: ${JSON.stringify(first)}`);
  const value = cookie.split(';')[0]!;
  const again = await run(`${REVIEWS}/`, 20, { cookie: value });
  assert.deepEqual(Object.keys(again.pod), Object.keys(first.pod), `requests with ${value} moved: ${JSON.stringify(again.pod)}; the first went to ${JSON.stringify(first.pod)}`);
});

test('circuit breaker: requests beyond http2MaxRequests get 503 with UO', async () => {
  await session.apply(
    meshYaml(`---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: flaky, namespace: shop }
spec:
  host: flaky
  trafficPolicy: { connectionPool: { http: { http2MaxRequests: 2 } } }
`),
    'alpha',
  );
  const r = await run(`${FLAKY}/?ms=800`, 6, {}, 6);
  assert.equal(r.status['200'], 2, JSON.stringify(r.status));
  assert.equal(r.status['503'], 4, JSON.stringify(r.status));
  assert.equal(r.overloaded, 4);
  assert.match(await session.agentLog('alpha'), /"response_flags":"UO"/);
});

test('h2c with prior knowledge (a gRPC-style client) reaches a grpc port over HTTP/2 end to end', async () => {
  const script = `const s = require('http2').connect('http://greeter.shop:50051'); let n = 0, out = [];
for (let i = 0; i < 3; i++) { const r = s.request({ ':path': '/greet/' + i, 'content-type': 'application/grpc' }); let b = ''; r.on('data', (d) => (b += d)); r.on('end', () => { out.push(b); if (++n === 3) { console.log(JSON.stringify(out)); s.close(); } }); r.end(); }`;
  const r = await session.exec('shop/client', ['node', '-e', script]);
  assert.equal(r.code, 0, r.stderr);
  const answers = JSON.parse(r.stdout) as string[];
  assert.equal(answers.length, 3);
  for (const a of answers) assert.equal(a, 'flaky-v1 2.0 application/grpc');
  assert.match(await session.agentLog('alpha'), /"src\.workload":"client".*"dst\.service":"greeter\.shop\.svc\.cluster\.local".*"msg":"request complete"/);
});

test('request bodies cross nodes intact: curl -d of a small body and of 1 MiB to pods on the other node', async () => {
  // A regression test: bodies on the L7 path into HBONE streams once hung (fixed in 1e918ea).
  const bigPath = join(session.dir!, 'body.bin');
  const big = randomBytes(1024 * 1024);
  writeFileSync(bigPath, big);
  const cases: { what: string; args: string[]; body: Buffer }[] = [
    { what: 'curl -d, 23 bytes', args: ['-d', 'user=jason&rating=5&x=1'], body: Buffer.from('user=jason&rating=5&x=1') },
    { what: 'curl --data-binary, 1 MiB', args: ['--data-binary', `@${bigPath}`, '-H', 'content-type: application/octet-stream'], body: big },
  ];
  for (const c of cases) {
    const started = Date.now();
    const r = await session.exec('shop/client', ['curl', '-sS', '--max-time', '30', '-w', '\n%{http_code}', ...c.args, `${REVIEWS}/echo`], 45_000);
    const elapsed = Date.now() - started;
    assert.equal(r.code, 0, `${c.what}: curl failed (exit ${r.code}) after ${elapsed} ms: ${r.stderr}`);
    const [json, code] = r.stdout.trim().split('\n');
    assert.equal(code, '200', `${c.what}: ${r.stdout}`);
    const got = JSON.parse(json!) as { pod: string; bytes: number; sha256: string };
    assert.match(got.pod, /^reviews-v[123]$/, 'a reviews pod, on node beta, answered');
    assert.equal(got.bytes, c.body.length, `${c.what}: the pod received ${got.bytes} bytes`);
    assert.equal(got.sha256, createHash('sha256').update(c.body).digest('hex'), `${c.what}: the pod received other bytes`);
  }
  // Both went through alpha's HTTP proxy (the L7 path), not the L4 relay.
  const log = await session.agentLog('alpha');
  const posts = log.split('\n').filter((l) => /"msg":"request complete"/.test(l) && /"method":"POST"/.test(l) && /"path":"\/echo"/.test(l));
  assert.ok(posts.length >= 2, `alpha logged ${posts.length} POST /echo requests`);
  assert.ok(posts.some((l) => l.includes(`"bytes_received":${big.length}`)), 'alpha counted the 1 MiB it forwarded');
});

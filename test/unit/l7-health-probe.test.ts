// The real health probes (agent/l7/proxy/health-probe.ts) against loopback servers: HTTP GET judged as
// a kubelet judges it (200-399 healthy), over a TCP socket and over a duplex that is not a socket (as an
// HBONE stream is), in plain HTTP and in HTTPS with an unverified certificate, with the probe's
// httpHeaders; TCP connect; timeouts, aborts and refused connections fail with a reason.

import assert from 'node:assert/strict';
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { type Duplex, duplexPair } from 'node:stream';
import { after, before, test } from 'node:test';
import type { HealthCheckSpec, ProbeAnswer } from '../../agent/l7/health-check.js';
import { type HttpGet, PROBE_USER_AGENT, endpointProbe, httpGetProbe, runProbe, tcpProbe } from '../../agent/l7/proxy/health-probe.js';
import type { Workload } from '../../agent/state/model.js';
import { mesh } from './helpers/l7-mesh.js';
import { selfSignedTls } from './helpers/self-signed.js';

const seen: { path: string; headers: IncomingHttpHeaders }[] = [];
let hangingSockets: net.Socket[] = [];
// /status/<code> answers <code>; /hang never answers.
const answer = (req: IncomingMessage, res: ServerResponse): void => {
  seen.push({ path: req.url ?? '', headers: req.headers });
  if (req.url === '/hang') return;
  const code = Number(/^\/status\/(\d+)$/.exec(req.url ?? '')?.[1] ?? 200);
  res.writeHead(code, code >= 300 && code < 400 ? { location: 'http://elsewhere.invalid/' } : {});
  res.end(`status ${code}`);
};
const server = http.createServer(answer);
// The same answers over TLS, with a self-signed certificate no probe could verify.
let tlsServer: https.Server | undefined;
let tlsPort = 0;
// Accepts TCP connections and never says anything.
const silent = net.createServer((socket) => hangingSockets.push(socket));
let port = 0;
let silentPort = 0;
let closedPort = 0;

const tcpOpen = (p: number) => (): Promise<Duplex | string> =>
  new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port: p });
    socket.once('connect', () => resolve(socket));
    socket.once('error', (err) => resolve(`connect 127.0.0.1:${p}: ${err.message}`));
  });

/** A duplex that is not a net.Socket, relayed to a TCP connection: any stream a probe may be handed. */
const pairedOpen = (p: number) => async (): Promise<Duplex | string> => {
  const socket = await tcpOpen(p)();
  if (typeof socket === 'string') return socket;
  const [outer, inner] = duplexPair();
  inner.pipe(socket as net.Socket).pipe(inner);
  inner.on('close', () => (socket as net.Socket).destroy());
  socket.on('close', () => inner.destroy());
  return outer;
};

const address = () => ({ ip: '127.0.0.1', port });
const get = (path: string, more: Partial<HttpGet> = {}): HttpGet => ({ path, https: false, headers: [], ...more });
const never = new AbortController().signal;
const reasonOf = (a: ProbeAnswer): string => (typeof a === 'object' ? a.reason : String(a));

before(async () => {
  tlsServer = https.createServer(await selfSignedTls('probe-test.invalid'), answer);
  await new Promise<void>((r) => tlsServer!.listen(0, '127.0.0.1', r));
  tlsPort = (tlsServer.address() as AddressInfo).port;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  silentPort = (silent.address() as AddressInfo).port;
  // A port nothing listens on: bound, its number noted, closed again.
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  closedPort = (probe.address() as AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
});

after(async () => {
  for (const s of hangingSockets) s.destroy();
  hangingSockets = [];
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  tlsServer?.closeAllConnections();
  await new Promise<void>((r) => (tlsServer ? tlsServer.close(() => r()) : r()));
  await new Promise<void>((r) => silent.close(() => r()));
});

test('HTTP GET: 200 and 3xx are healthy, 4xx and 5xx fail with the status; path, host and user-agent as sent', async () => {
  for (const open of [tcpOpen, pairedOpen]) {
    seen.length = 0;
    assert.equal(await httpGetProbe(open(port), address(), get('/status/200'), 2000, never), true);
    assert.equal(await httpGetProbe(open(port), address(), get('/status/302'), 2000, never), true, 'a redirect is success, as for a kubelet');
    assert.equal(await httpGetProbe(open(port), address(), get('/status/399'), 2000, never), true);
    const notFound = await httpGetProbe(open(port), address(), get('/status/404'), 2000, never);
    assert.deepEqual(notFound, { ok: false, reason: `GET http://127.0.0.1:${port}/status/404 answered 404` });
    const unavailable = await httpGetProbe(open(port), address(), get('/status/503'), 2000, never);
    assert.match(reasonOf(unavailable), /answered 503$/);
    assert.deepEqual(seen.map((s) => s.path), ['/status/200', '/status/302', '/status/399', '/status/404', '/status/503']);
    for (const s of seen) {
      assert.equal(s.headers['host'], `127.0.0.1:${port}`);
      assert.equal(s.headers['user-agent'], PROBE_USER_AGENT);
      assert.equal(s.headers['connection'], 'close', 'a probe connection serves one request');
    }
  }
});

test('HTTPS GET: the certificate is not verified, as by a kubelet; statuses judged as for HTTP; TLS against a plain server fails', async () => {
  const tlsAddress = { ip: '127.0.0.1', port: tlsPort };
  for (const open of [tcpOpen, pairedOpen]) {
    seen.length = 0;
    assert.equal(await httpGetProbe(open(tlsPort), tlsAddress, get('/status/200', { https: true }), 2000, never), true);
    const unavailable = await httpGetProbe(open(tlsPort), tlsAddress, get('/status/503', { https: true }), 2000, never);
    assert.deepEqual(unavailable, { ok: false, reason: `GET https://127.0.0.1:${tlsPort}/status/503 answered 503` });
    assert.deepEqual(seen.map((s) => s.path), ['/status/200', '/status/503']);
  }
  const plain = await httpGetProbe(tcpOpen(port), address(), get('/status/200', { https: true }), 2000, never);
  assert.match(reasonOf(plain), new RegExp(`^GET https://127\\.0\\.0\\.1:${port}/status/200: `));
});

test("httpHeaders: Host, User-Agent and Accept replace the probe's own; other headers are added, repeats kept", async () => {
  seen.length = 0;
  const headers = [
    { name: 'X-Probe', value: 'a' },
    { name: 'Host', value: 'web.internal' },
    { name: 'x-probe', value: 'b' },
    { name: 'User-Agent', value: 'kube-probe/1.30' },
  ];
  assert.equal(await httpGetProbe(tcpOpen(port), address(), get('/status/200', { headers }), 2000, never), true);
  const sent = seen[0]!.headers;
  assert.equal(sent['host'], 'web.internal');
  assert.equal(sent['user-agent'], 'kube-probe/1.30');
  assert.equal(sent['accept'], '*/*');
  assert.equal(sent['x-probe'], 'a, b');
});

test('HTTP GET: no answer within the timeout fails; an abort ends the probe at once', async () => {
  const started = performance.now();
  const slow = await httpGetProbe(tcpOpen(port), address(), get('/hang'), 300, never);
  const took = performance.now() - started;
  assert.match(reasonOf(slow), /no answer within 300 ms/);
  assert.ok(took >= 250 && took < 3000, `the timeout took ${took} ms`);

  const controller = new AbortController();
  setTimeout(() => controller.abort(), 100);
  const t0 = performance.now();
  const aborted = await httpGetProbe(pairedOpen(port), address(), get('/hang'), 10_000, controller.signal);
  assert.match(reasonOf(aborted), /aborted/);
  assert.ok(performance.now() - t0 < 3000, 'the abort did not end the probe');

  // A server that accepts and never answers: the same timeout.
  const mute = await httpGetProbe(tcpOpen(silentPort), { ip: '127.0.0.1', port: silentPort }, get('/'), 300, never);
  assert.match(reasonOf(mute), /no answer within 300 ms/);
});

test('HTTP GET and TCP: a refused connection fails with the reason; an already aborted signal never connects', async () => {
  const refused = await httpGetProbe(tcpOpen(closedPort), { ip: '127.0.0.1', port: closedPort }, get('/'), 2000, never);
  assert.match(reasonOf(refused), /ECONNREFUSED/);
  const tcpRefused = await tcpProbe(tcpOpen(closedPort), 2000, never);
  assert.match(reasonOf(tcpRefused), /ECONNREFUSED/);

  let opened = 0;
  const counting = () => {
    opened++;
    return tcpOpen(port)();
  };
  const done = AbortSignal.abort();
  assert.equal(typeof (await tcpProbe(counting, 2000, done)), 'object');
  assert.equal(typeof (await httpGetProbe(counting, address(), get('/'), 2000, done)), 'object');
  assert.equal(opened, 0);
});

test('TCP: healthy when the connection opens; a connection that takes longer than the timeout fails and is closed when it arrives', async () => {
  assert.equal(await tcpProbe(tcpOpen(silentPort), 2000, never), true);
  let late: Duplex | undefined;
  const slowOpen = (): Promise<Duplex | string> =>
    new Promise((resolve) =>
      setTimeout(async () => {
        const s = await tcpOpen(silentPort)();
        if (typeof s !== 'string') late = s;
        resolve(s);
      }, 400),
    );
  const answer = await tcpProbe(slowOpen, 100, never);
  assert.match(reasonOf(answer), /connect: no answer within 100 ms/);
  await new Promise((r) => setTimeout(r, 600));
  assert.ok(late?.destroyed, 'the connection that arrived after the timeout was left open');
});

test('endpointProbe dials the spec port of the endpoint on behalf of the source, for both kinds', async () => {
  const s = mesh();
  const source = s.workloads.get('bookinfo/productpage-v1')!;
  const endpoint = s.workloads.get('bookinfo/reviews-v2')!;
  const dialed: string[] = [];
  // The "endpoint" is the loopback server, whatever its pod IP: the dialer decides where bytes go.
  const probe = endpointProbe((src: Workload, ep: Workload, addr) => {
    dialed.push(`${src.key} -> ${ep.key} ${addr.ip}:${addr.port}`);
    return tcpOpen(port)();
  });
  const http200: HealthCheckSpec = { kind: 'http', port: 9080, path: '/status/204', intervalMs: 1000, timeoutMs: 1000, unhealthyThreshold: 1, healthyThreshold: 1 };
  assert.equal(await probe({ key: '10.244.1.22:9080', ip: '10.244.1.22', spec: http200, source, endpoint }, never), true);
  const http500 = { ...http200, path: '/status/500' };
  assert.match(reasonOf(await probe({ key: '10.244.1.22:9080', ip: '10.244.1.22', spec: http500, source, endpoint }, never)), /GET http:\/\/10\.244\.1\.22:9080\/status\/500 answered 500/);
  const tcp: HealthCheckSpec = { kind: 'tcp', port: 15021, intervalMs: 1000, timeoutMs: 1000, unhealthyThreshold: 1, healthyThreshold: 1 };
  assert.equal(await probe({ key: '10.244.1.22:9080', ip: '10.244.1.22', spec: tcp, source, endpoint }, never), true);
  assert.deepEqual(dialed, [
    'bookinfo/productpage-v1 -> bookinfo/reviews-v2 10.244.1.22:9080',
    'bookinfo/productpage-v1 -> bookinfo/reviews-v2 10.244.1.22:9080',
    'bookinfo/productpage-v1 -> bookinfo/reviews-v2 10.244.1.22:15021',
  ]);
  // A dialer that cannot reach the endpoint: its reason is the probe's.
  const unreachable = await runProbe(tcp, { ip: '10.244.1.22', port: 15021 }, async () => 'HBONE to 10.244.1.22:15021: refused', never);
  assert.deepEqual(unreachable, { ok: false, reason: 'HBONE to 10.244.1.22:15021: refused' });
});

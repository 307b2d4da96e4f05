// The HBONE server and pool against each other on loopback, with real TLS 1.3 and HTTP/2: pods are
// 127.0.0.x addresses, each with an echo app. Covers the tunnel, the refusals on both sides, pooling
// and the keepalive and stall detection.

import assert from 'node:assert/strict';
import { type ClientHttp2Session, connect as connectH2 } from 'node:http2';
import { connect as connectTcp, createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect as connectTls, createServer as createTlsServer } from 'node:tls';
import type { Duplex } from 'node:stream';
import { spiffeId } from '../../agent/state/model.js';
import type { HboneOpenRequest } from '../../agent/tunnel/hbone/open-request.js';
import { HbonePool } from '../../agent/tunnel/hbone/pool.js';
import { EngineHost } from '../../agent/tunnel/hbone/engine-host.js';
import type { HboneResult } from '../../agent/tunnel/hbone/errors.js';
import type { HbonePoolEvent } from '../../agent/tunnel/hbone/events.js';
import type { HboneInboundRequest } from '../../agent/tunnel/hbone/server.js';
import {
  type TestHboneServer,
  type TestTrust,
  closeServer,
  connectToAuthority,
  makeSharedCaDir,
  openTrust,
  readAll,
  startEcho,
  startFreezableProxy,
  startHboneServer,
} from '../fixtures/hbone/mesh.js';

const TD = 'cluster.local';
const PRODUCTPAGE = spiffeId(TD, 'default', 'productpage');
const REVIEWS = spiffeId(TD, 'default', 'reviews');
const RATINGS = spiffeId(TD, 'default', 'ratings');
const REVIEWS_IP = '127.0.0.2';
const RATINGS_IP = '127.0.0.3';
const CLIENT_IP = '127.0.0.10';

async function waitFor(check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function unwrap<T>(result: HboneResult<T>): T {
  if (!result.ok) assert.fail(`${result.error.reason}: ${result.error.message}`);
  return result.value;
}

async function echoOnce(stream: Duplex, payload: string): Promise<string> {
  const reply = readAll(stream);
  stream.end(payload);
  return (await reply).toString();
}

describe('HBONE server and pool on loopback', () => {
  let trust: TestTrust;
  let hbone: TestHboneServer;
  let pool: HbonePool;
  const poolEvents: HbonePoolEvent[] = [];
  const echoes: Awaited<ReturnType<typeof startEcho>>[] = [];
  const seen: HboneInboundRequest[] = [];
  const cleanups: (() => Promise<void>)[] = [];

  const request = (overrides: Partial<HboneOpenRequest> = {}): HboneOpenRequest => ({
    source: { identity: PRODUCTPAGE, ip: CLIENT_IP },
    bindSource: true,
    destination: { ip: REVIEWS_IP, port: hbone.port },
    expectedIdentities: [REVIEWS],
    authority: { ip: REVIEWS_IP, port: echoes[0]!.port },
    ...overrides,
  });

  before(async () => {
    trust = await openTrust(TD, [PRODUCTPAGE, REVIEWS, RATINGS]);
    echoes.push(await startEcho(REVIEWS_IP), await startEcho(RATINGS_IP));
    hbone = await startHboneServer(
      trust,
      new Map([
        [REVIEWS_IP, REVIEWS],
        [RATINGS_IP, RATINGS],
      ]),
      {
        handler: async (req) => {
          seen.push(req);
          if (req.authority.port === 1) return { kind: 'refused', status: 401, reason: 'denied by policy allow-nothing' };
          return connectToAuthority(req);
        },
      },
    );
    pool = new HbonePool({ certificates: trust.certificates, onEvent: (event) => poolEvents.push(event) });
  });
  after(async () => {
    await pool.close(500);
    await hbone.close();
    for (const cleanup of cleanups) await cleanup();
    for (const echo of echoes) await echo.close();
    await trust.close();
  });

  it('tunnels to two identities, each server presenting the identity of the pod dialled', async () => {
    const toReviews = unwrap(await pool.open(request()));
    assert.equal(await echoOnce(toReviews, 'hello reviews'), 'hello reviews');
    const toRatings = unwrap(
      await pool.open(request({ destination: { ip: RATINGS_IP, port: hbone.port }, expectedIdentities: [RATINGS], authority: { ip: RATINGS_IP, port: echoes[1]!.port } })),
    );
    assert.equal(await echoOnce(toRatings, 'hello ratings'), 'hello ratings');
    const [first, second] = seen.slice(-2);
    assert.equal(first?.peerIdentity, PRODUCTPAGE);
    assert.deepEqual(first?.localAddress.ip, REVIEWS_IP);
    assert.equal(first?.localIdentity, REVIEWS);
    assert.equal(first?.peerAddress.ip, CLIENT_IP, 'the pool bound the source address');
    assert.equal(second?.localIdentity, RATINGS);
    assert.match(first?.headers.traceparent ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    assert.equal(first?.headers.forwarded, `for="${CLIENT_IP}"`);
    assert.notEqual(first?.headers.traceparent, second?.headers.traceparent, 'a trace id per tunnel');
  });

  it('sends forwarded host and baggage when given', async () => {
    const stream = unwrap(await pool.open(request({ serviceHostname: 'reviews.default.svc.cluster.local', baggage: 'k8s.namespace.name=default' })));
    await echoOnce(stream, 'x');
    assert.equal(seen.at(-1)?.headers.forwarded, `for="${CLIENT_IP}";host=reviews.default.svc.cluster.local`);
    assert.equal(seen.at(-1)?.headers.baggage, 'k8s.namespace.name=default');
  });

  it('answers 400 when :authority names another pod than the one dialled', async () => {
    const result = await pool.open(request({ authority: { ip: RATINGS_IP, port: echoes[1]!.port } }));
    assert.ok(!result.ok);
    assert.equal(result.error.reason, 'http-status');
    assert.equal(result.error.status, 400);
    const refusal = hbone.events.findLast((e) => e.type === 'stream-refused');
    assert.equal(refusal?.type === 'stream-refused' && refusal.reason, `:authority ${RATINGS_IP}:${echoes[1]!.port} names ${RATINGS_IP}, but the tunnel was opened to ${REVIEWS_IP}`);
  });

  it('surfaces the handler\'s refusals (401 policy, 503 connect failed) as typed errors', async () => {
    const denied = await pool.open(request({ authority: { ip: REVIEWS_IP, port: 1 } }));
    assert.ok(!denied.ok);
    assert.equal(denied.error.status, 401);
    assert.match(denied.error.message, /answered 401: an AuthorizationPolicy at the destination denied it$/);
    const closedPort = await startEcho(REVIEWS_IP);
    await closedPort.close();
    const unreachable = await pool.open(request({ authority: { ip: REVIEWS_IP, port: closedPort.port } }));
    assert.ok(!unreachable.ok);
    assert.equal(unreachable.error.reason, 'http-status');
    assert.equal(unreachable.error.status, 503);
  });

  it('answers 400 to a method other than CONNECT', async () => {
    const session = await rawSession(REVIEWS_IP, hbone.port);
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const stream = session.request({ ':method': 'GET', ':path': '/' });
        stream.once('response', (headers) => resolve(Number(headers[':status'])));
        stream.once('error', reject);
        stream.end();
      });
      assert.equal(status, 400);
    } finally {
      session.close();
    }
  });

  /** A node:http2 session with the client's certificate, for requests the pool would never send. */
  async function rawSession(ip: string, port: number): Promise<ClientHttp2Session> {
    const certificate = await trust.certificates.fetch(PRODUCTPAGE);
    assert.ok(certificate.ok);
    const session = connectH2(`https://${ip}:${port}`, { ...certificate.value.tls, rejectUnauthorized: false, ALPNProtocols: ['h2'] });
    await new Promise<void>((resolve, reject) => session.once('remoteSettings', () => resolve()).once('error', reject));
    return session;
  }

  it('refuses a client without a certificate, and says why', async () => {
    const refusedBefore = hbone.events.filter((e) => e.type === 'connection-refused').length;
    const outcome = await new Promise<string>((resolve) => {
      const socket = connectTls({ host: REVIEWS_IP, port: hbone.port, rejectUnauthorized: false, ALPNProtocols: ['h2'] });
      socket.once('error', (err) => resolve(`error: ${err.message}`));
      socket.once('close', () => resolve('closed'));
      socket.resume();
    });
    // TLS 1.3 ends the client's handshake before the server judges it: the refusal arrives as an alert.
    assert.match(outcome, /certificate required|closed/);
    await waitFor(() => hbone.events.filter((e) => e.type === 'connection-refused').length > refusedBefore, 'the refusal to be reported');
    const last = hbone.events.filter((e) => e.type === 'connection-refused').at(-1);
    assert.equal(last?.type === 'connection-refused' && last.reason, 'the client sent no certificate');
  });

  it('refuses a client from another root, and one from another trust domain under the same root', async () => {
    const foreign = await openTrust(TD, [PRODUCTPAGE]);
    const shared = await makeSharedCaDir();
    const here = await openTrust(TD, [PRODUCTPAGE, REVIEWS], shared.dir);
    const elsewhere = await openTrust('other.domain', [spiffeId('other.domain', 'default', 'productpage')], shared.dir);
    cleanups.push(foreign.close, shared.close, here.close, elsewhere.close);

    const intruderPool = new HbonePool({ certificates: foreign.certificates });
    const intruder = await intruderPool.open(request());
    await intruderPool.close(100);
    assert.ok(!intruder.ok);
    // The intruder does not trust our server either; that check comes first, on the client side.
    assert.equal(intruder.error.reason, 'unexpected-server');

    const sharedServer = await startHboneServer(here, new Map([['127.0.0.4', REVIEWS]]));
    cleanups.push(sharedServer.close);
    const otherPool = new HbonePool({ certificates: elsewhere.certificates });
    const fromOther = await otherPool.open({
      source: { identity: spiffeId('other.domain', 'default', 'productpage'), ip: CLIENT_IP },
      destination: { ip: '127.0.0.4', port: sharedServer.port },
      expectedIdentities: [REVIEWS],
      authority: { ip: '127.0.0.4', port: 9 },
    });
    await otherPool.close(100);
    assert.ok(!fromOther.ok);
    assert.equal(fromOther.error.reason, 'refused-by-server');
    // The server reports once its own side of the connection has ended, which may be after the client's.
    await waitFor(() => sharedServer.events.some((e) => e.type === 'connection-refused'), 'the server to report the refusal');
    const refusal = sharedServer.events.find((e) => e.type === 'connection-refused');
    assert.equal(
      refusal?.type === 'connection-refused' && refusal.reason,
      `peer spiffe://other.domain/ns/default/sa/productpage is in trust domain other.domain, not ours (${TD})`,
    );
  });

  it('refuses a server that presents an identity other than the expected ones', async () => {
    const result = await pool.open(request({ expectedIdentities: [RATINGS] }));
    assert.ok(!result.ok);
    assert.equal(result.error.reason, 'unexpected-server');
    assert.match(result.error.message, new RegExp(`presented ${REVIEWS}, not ${RATINGS}`));
    assert.ok(unwrap(await pool.open(request({ expectedIdentities: [RATINGS, REVIEWS] }))), 'any expected identity will do');
  });

  it('sends no SNI', async () => {
    const certificate = await trust.certificates.fetch(REVIEWS);
    assert.ok(certificate.ok);
    const received: (string | false | null)[] = [];
    const listener = createTlsServer({ ...certificate.value.tls, ALPNProtocols: ['h2'] }, (socket) => {
      received.push(socket.servername);
      socket.destroy();
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.6', resolve));
    const port = (listener.address() as { port: number }).port;
    await pool.open(request({ destination: { ip: '127.0.0.6', port } }));
    await new Promise((resolve) => listener.close(resolve));
    // A server that resets at once may be dialled again; no attempt may carry a name.
    assert.ok(received.length >= 1 && received.every((name) => name === false), `server names received: ${JSON.stringify(received)}`);
  });

  it('carries half-close both ways', async () => {
    // The app ends its side first and keeps reading; the client still sends after the app's FIN.
    const received: string[] = [];
    const appDone = new Promise<void>((resolve) => {
      const app = createServer({ allowHalfOpen: true }, (socket) => {
        let text = '';
        socket.setEncoding('utf8');
        socket.on('data', (chunk: string) => (text += chunk));
        socket.once('end', () => {
          received.push(text);
          socket.destroy();
          app.close();
          resolve();
        });
        socket.end('server speaks first and is done');
      });
      app.listen(0, REVIEWS_IP, () => (appPort = (app.address() as { port: number }).port));
    });
    let appPort = 0;
    while (appPort === 0) await sleep(5);
    const stream = unwrap(await pool.open(request({ authority: { ip: REVIEWS_IP, port: appPort } })));
    const fromApp = await readAll(stream);
    assert.equal(fromApp.toString(), 'server speaks first and is done');
    stream.end('client still talking after the server FIN');
    await appDone;
    assert.deepEqual(received, ['client still talking after the server FIN']);
  });

  it('opens a second connection past 100 concurrent streams', async () => {
    const key = (status: ReturnType<HbonePool['status']>) => status.filter((c) => c.target.startsWith(RATINGS_IP));
    const open = (): Promise<HboneResult<Duplex>> =>
      pool.open(request({ destination: { ip: RATINGS_IP, port: hbone.port }, expectedIdentities: [RATINGS], authority: { ip: RATINGS_IP, port: echoes[1]!.port } }));
    const streams = (await Promise.all(Array.from({ length: 150 }, open))).map(unwrap);
    const connections = key(pool.status());
    assert.deepEqual(connections.map((c) => c.streams).sort((a, b) => a - b), [50, 100]);
    const replies = await Promise.all(streams.map((s, i) => echoOnce(s, `stream ${i}`)));
    assert.deepEqual(replies, streams.map((_, i) => `stream ${i}`));
  });

  it('never puts more streams on a connection than the server allows', async () => {
    const narrow = await startHboneServer(trust, new Map([['127.0.0.5', REVIEWS]]), { tuning: { serverMaxConcurrentStreams: 10 } });
    cleanups.push(narrow.close);
    const echo = await startEcho('127.0.0.5');
    cleanups.push(echo.close);
    const open = (): Promise<HboneResult<Duplex>> =>
      pool.open(request({ destination: { ip: '127.0.0.5', port: narrow.port }, authority: { ip: '127.0.0.5', port: echo.port } }));
    const first = unwrap(await open()); // learns the server's SETTINGS
    const more = (await Promise.all(Array.from({ length: 14 }, open))).map(unwrap);
    const connections = pool.status().filter((c) => c.target.startsWith('127.0.0.5'));
    assert.deepEqual(connections.map((c) => c.streams), [10, 5], 'ten on the first connection (the server allows ten), the rest on a second');
    assert.equal(connections[0]?.maxStreams, 10, "the pool learned the server's limit");
    await Promise.all([first, ...more].map((s) => echoOnce(s, 'ok')));
  });

  it('closes a connection after it stayed idle', async () => {
    const idlePool = new HbonePool({ certificates: trust.certificates, idleTimeoutMs: 200, onEvent: (e) => events.push(e) });
    const events: HbonePoolEvent[] = [];
    const stream = unwrap(await idlePool.open(request()));
    await echoOnce(stream, 'once');
    assert.equal(idlePool.status().length, 1);
    await sleep(600);
    assert.equal(idlePool.status().length, 0);
    assert.ok(events.some((e) => e.type === 'connection-closed' && e.reason === 'idle'));
    await idlePool.close(100);
  });

  it('reuses a pooled session: setup latency, pooled stream vs new connection', async () => {
    const n = 30;
    const fresh: number[] = [];
    for (let i = 0; i < n; i++) {
      const onePool = new HbonePool({ certificates: trust.certificates });
      const t0 = performance.now();
      const stream = unwrap(await onePool.open(request()));
      fresh.push(performance.now() - t0);
      await echoOnce(stream, 'x');
      await onePool.close(100);
    }
    const pooled: number[] = [];
    unwrap(await pool.open(request())).destroy();
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const stream = unwrap(await pool.open(request()));
      pooled.push(performance.now() - t0);
      await echoOnce(stream, 'x');
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    console.log(`# hbone: stream setup p50 ${median(pooled).toFixed(2)} ms on a pooled session, ${median(fresh).toFixed(2)} ms with a new connection (n=${n})`);
    assert.ok(median(pooled) < median(fresh), 'a pooled stream is cheaper than a new connection');
    assert.ok(poolEvents.some((e) => e.type === 'stream-opened' && e.reused));
  });

  it('closes a session whose peer stops answering PINGs, and counts it by that cause', async () => {
    const host = EngineHost.start({ pingIntervalMs: 100, pingTimeoutMs: 400 });
    const proxy = await startFreezableProxy(REVIEWS_IP, hbone.port);
    const events: HbonePoolEvent[] = [];
    const deafPool = new HbonePool({
      certificates: trust.certificates,
      host,
      dialTcp: () => connectTcp({ host: '127.0.0.1', port: proxy.port }),
      onEvent: (e) => events.push(e),
    });
    try {
      const stream = unwrap(await deafPool.open(request()));
      stream.on('error', () => undefined);
      proxy.freeze();
      // A frozen path (a lost node, a black hole) is found the same way, with bytes pending or not.
      await waitFor(() => events.some((e) => e.type === 'connection-closed'), 'the PING timeout to close the connection', 3_000);
      const closed = events.find((e) => e.type === 'connection-closed');
      assert.match(closed?.type === 'connection-closed' ? closed.reason : '', /did not answer a PING within 400 ms/);
      // What ambit_hbone_connections_closed_total{cause} exports.
      assert.deepEqual(host.connectionEnds(), { 'ping-timeout': 1 });
    } finally {
      await deafPool.close(100);
      host.close();
      await proxy.close();
    }
  });
  it('leaves a stream waiting for a slow reader alone (backpressure is not a stall)', async () => {
    const events: HbonePoolEvent[] = [];
    const patientPool = new HbonePool({ certificates: trust.certificates, tuning: { pingIntervalMs: 100, pingTimeoutMs: 300 }, onEvent: (e) => events.push(e) });
    const stream = unwrap(await patientPool.open(request()));
    const payload = Buffer.alloc(24 * 1024 * 1024, 1);
    stream.write(payload);
    stream.end();
    // Nobody reads the echo for several PING timeouts: every window and buffer on the way fills, and
    // PINGs are still answered (the engine keeps reading the connection whatever a stream waits for).
    await sleep(1200);
    const echoed = await readAll(stream, 20_000);
    assert.equal(echoed.length, payload.length);
    assert.equal(events.filter((e) => e.type === 'connection-closed').length, 0);
    await patientPool.close(100);
  });
});

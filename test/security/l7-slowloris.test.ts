// Slowloris on the L7 proxies: a client that never finishes its headers (stalled, or dripping a byte
// at a time so that the socket never looks idle), one that connects and says nothing, one that stalls
// its body, and kept-alive connections left idle, over HTTP/1.1 and HTTP/2, on both proxies. Each is
// cut by its bound (--http-headers-timeout, --http-request-timeout, --http-idle-timeout), set tiny
// here so that the test is quick: the client sees a 408 and its connection closed.

import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import type { HttpServerLimits } from '../../agent/l7/proxy/http-servers.js';
import { type L7Proxies, rawHttp1, startL7Proxies } from './helpers/l7-proxies.js';

const LIMITS: HttpServerLimits = { headersTimeoutMs: 300, requestTimeoutMs: 1000, idleTimeoutMs: 400 };
/** Node checks deadlines periodically, and adds a second's grace to keep-alive timeouts: allow for both. */
const SLACK_MS = 1500;

let proxies: L7Proxies;
before(async () => {
  proxies = await startL7Proxies({ limits: LIMITS });
});
after(() => proxies.close());

/** Sends `head`, then one more byte every `everyMs` until the proxy closes the connection (at most `maxMs`). */
function drip(port: number, head: string, everyMs: number, maxMs: number): Promise<{ text: string; elapsedMs: number; closedByPeer: boolean }> {
  const started = performance.now();
  return new Promise((resolve) => {
    let text = '';
    let closedByPeer = true;
    const s = connect(port, '127.0.0.1', () => s.write(head));
    const ticker = setInterval(() => s.writable && s.write('a'), everyMs);
    const limit = setTimeout(() => {
      closedByPeer = false;
      s.destroy();
    }, maxMs);
    s.on('data', (d: Buffer) => (text += d.toString('latin1')));
    s.on('error', () => undefined);
    s.once('close', () => {
      clearInterval(ticker);
      clearTimeout(limit);
      resolve({ text, elapsedMs: performance.now() - started, closedByPeer });
    });
  });
}

const within = (elapsedMs: number, boundMs: number): void => {
  assert.ok(elapsedMs >= boundMs * 0.8, `cut after ${Math.round(elapsedMs)} ms, before its ${boundMs} ms bound`);
  assert.ok(elapsedMs < boundMs + SLACK_MS, `cut after ${Math.round(elapsedMs)} ms, long past its ${boundMs} ms bound`);
};

for (const [side, port] of [
  ['destination', () => proxies.inboundPort],
  ['source', () => proxies.outboundPort],
] as const) {
  test(`${side}: a client stalled mid-headers gets 408 and its connection closed at the headers timeout`, async () => {
    const reply = await rawHttp1(port(), 'GET /public HTTP/1.1\r\nHost: reviews:9080\r\nX-Slow: ', 5000);
    assert.equal(reply.status, 408, reply.text);
    assert.ok(reply.closedByPeer);
    within(reply.elapsedMs, LIMITS.headersTimeoutMs);
  });

  test(`${side}: a client dripping its headers a byte at a time is cut at the headers timeout all the same`, async () => {
    const reply = await drip(port(), 'GET /public HTTP/1.1\r\nHost: reviews:9080\r\nX-Slow: ', 50, 5000);
    assert.match(reply.text, /^HTTP\/1\.1 408 /);
    assert.ok(reply.closedByPeer);
    within(reply.elapsedMs, LIMITS.headersTimeoutMs);
  });

  test(`${side}: a connection that sends nothing is closed at the headers timeout`, async () => {
    const reply = await rawHttp1(port(), '', 5000);
    assert.ok(reply.closedByPeer);
    within(reply.elapsedMs, LIMITS.headersTimeoutMs);
  });

  test(`${side}: a request whose body stalls gets 408 at the request timeout`, async () => {
    const reply = await rawHttp1(port(), 'POST /public HTTP/1.1\r\nHost: reviews:9080\r\nContent-Length: 10\r\n\r\nab', 5000);
    assert.equal(reply.status, 408, reply.text);
    assert.ok(reply.closedByPeer);
    within(reply.elapsedMs, LIMITS.requestTimeoutMs);
  });

  test(`${side}: a kept-alive connection left idle after its response is closed at the idle timeout`, async () => {
    const reply = await rawHttp1(port(), 'GET /public HTTP/1.1\r\nHost: reviews:9080\r\n\r\n', 5000);
    assert.equal(reply.status, 200, reply.text);
    assert.ok(reply.closedByPeer, 'closed by the proxy, not by the test giving up');
    assert.ok(reply.elapsedMs >= LIMITS.idleTimeoutMs * 0.8 && reply.elapsedMs < LIMITS.idleTimeoutMs + SLACK_MS, `closed after ${Math.round(reply.elapsedMs)} ms`);
  });

  test(`${side}: HTTP/2: a session that opens no stream is closed at the headers timeout; an idle one gets GOAWAY at the idle timeout`, async () => {
    const silent = await rawHttp1(port(), 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00', 5000);
    assert.ok(silent.closedByPeer);
    within(silent.elapsedMs, LIMITS.headersTimeoutMs);

    const started = performance.now();
    const session = http2.connect(`http://127.0.0.1:${port()}`);
    session.on('error', () => undefined);
    const closed = new Promise<number>((resolve) => session.once('close', () => resolve(performance.now() - started)));
    const goaway = new Promise<boolean>((resolve) => {
      session.once('goaway', () => resolve(true));
      session.once('close', () => resolve(false));
    });
    const status = await new Promise<number>((resolve, reject) => {
      const stream = session.request({ ':path': '/public', ':authority': 'reviews:9080' });
      stream.on('response', (h) => resolve(Number(h[':status'])));
      stream.on('error', reject);
      stream.resume();
      stream.end();
    });
    assert.equal(status, 200);
    const limit = setTimeout(() => session.destroy(), 5000);
    const elapsed = await closed;
    clearTimeout(limit);
    assert.ok(await goaway, 'the proxy said GOAWAY');
    assert.ok(elapsed >= LIMITS.idleTimeoutMs * 0.8 && elapsed < LIMITS.idleTimeoutMs + SLACK_MS, `closed after ${Math.round(elapsed)} ms`);
  });
}

test('a session with a stream still open is not closed for being quiet (a long gRPC stream is not idle)', async () => {
  // The pod answers only once the body ends; the client holds the body open past the idle timeout.
  // Nothing is to happen meanwhile, so this waits out a fixed time: twice the idle timeout.
  const session = http2.connect(`http://127.0.0.1:${proxies.inboundPort}`);
  session.on('error', () => undefined);
  let closedEarly = false;
  session.once('close', () => (closedEarly = true));
  session.once('goaway', () => (closedEarly = true));
  const stream = session.request({ ':path': '/public', ':method': 'POST', ':authority': 'reviews:9080' });
  stream.on('error', () => undefined);
  const status = new Promise<number>((resolve) => stream.on('response', (h) => resolve(Number(h[':status']))));
  stream.resume();
  stream.write('part');
  await new Promise((r) => setTimeout(r, LIMITS.idleTimeoutMs * 2 + 200));
  assert.equal(closedEarly, false, 'a session with an open stream got GOAWAY or was closed for being quiet');
  stream.end();
  assert.equal(await status, 200);
  session.close();
});

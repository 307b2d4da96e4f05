// Kept-alive HTTP/1.1 connections and a draining agent. The destination's HTTP servers stop keep-alive
// when the agent drains (an idle connection from a source agent closes at once, a pod's at its next
// response, a busy one after its response), so the
// agent does not wait its drain deadline for connections nobody uses; the source's kept upstream
// connections close when their HBONE connection gets GOAWAY; and a request that races an idle close is
// sent again only when that is safe. drainHttpServers() drains every server of the process for good:
// this file has its own process, and drains only in its first test.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { DEFAULT_HTTP_SERVER_LIMITS, drainHttpServers, http1Server } from '../../agent/l7/proxy/http-servers.js';
import { RequestBody } from '../../agent/l7/proxy/request-body.js';
import type { ExchangeResult, UpstreamConnections } from '../../agent/l7/proxy/upstream-connections.js';
import { PEER_GOAWAY } from '../../agent/tunnel/hbone/events.js';
import { tcpUpstream } from './helpers/tcp-upstream.js';

/** Resolves with `what` happening, or fails the test naming it after `ms`. */
async function within<T>(ms: number, what: string, event: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  try {
    return await Promise.race([event, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A promise and its resolve, for an event the test waits on. */
function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** A raw client connection: what it has read so far, and a promise per awaited text. */
function rawClient(port: number): { socket: Socket; read: () => string; until: (text: string) => Promise<void> } {
  const socket = connect({ port, host: '127.0.0.1' });
  let received = '';
  const waiters: { text: string; resolve: () => void }[] = [];
  socket.on('data', (chunk: Buffer) => {
    received += chunk.toString('latin1');
    for (const w of waiters.filter((w) => received.includes(w.text))) w.resolve();
  });
  return {
    socket,
    read: () => received,
    until: (text) => (received.includes(text) ? Promise.resolve() : new Promise((resolve) => waiters.push({ text, resolve }))),
  };
}

async function listen(server: Server | http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

test("on drain an idle kept-alive connection from an agent closes at once, a pod's at its next response; busy ones finish their response, then close", async () => {
  const released: { slow?: () => void; streaming?: () => void } = {};
  const arrived = { slow: signal(), streaming: signal() };
  const proxy = http1Server(DEFAULT_HTTP_SERVER_LIMITS, () => 'close', (req, res) => {
    if (req.url === '/slow') {
      released.slow = () => res.end('slow done');
      return arrived.slow.resolve();
    }
    if (req.url === '/streaming') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first;');
      released.streaming = () => res.end('streaming done');
      return arrived.streaming.resolve();
    }
    res.end('ok');
  });
  const listener = createServer((socket) => proxy.emit('connection', socket));
  const port = await listen(listener);
  // A pods' server (the outbound proxy's) keeps an idle connection: its client retries nothing.
  const podsProxy = http1Server(DEFAULT_HTTP_SERVER_LIMITS, () => 'keep', (_req, res) => res.end('pod ok'));
  const podsListener = createServer((socket) => podsProxy.emit('connection', socket));
  const pod = rawClient(await listen(podsListener));
  const idle = rawClient(port);
  const busy = rawClient(port);
  const streaming = rawClient(port);
  try {
    idle.socket.write('GET / HTTP/1.1\r\nhost: a\r\n\r\n');
    pod.socket.write('GET / HTTP/1.1\r\nhost: a\r\n\r\n');
    await within(2000, 'the first responses', Promise.all([idle.until('ok'), pod.until('pod ok')]));
    busy.socket.write('GET /slow HTTP/1.1\r\nhost: a\r\n\r\n');
    streaming.socket.write('GET /streaming HTTP/1.1\r\nhost: a\r\n\r\n');
    await within(2000, 'both requests reaching the server', Promise.all([arrived.slow.promise, arrived.streaming.promise]));
    await within(2000, 'the streaming response started', streaming.until('first;'));
    const idleClosed = once(idle.socket, 'close');
    drainHttpServers();
    await within(1000, 'the idle connection closed after the drain began', idleClosed);
    assert.ok(!busy.socket.destroyed && !streaming.socket.destroyed, 'connections under a request stay open');
    const busyClosed = once(busy.socket, 'close');
    const streamingClosed = once(streaming.socket, 'close');
    released.slow!();
    released.streaming!();
    await within(2000, 'the busy connections closed after their responses', Promise.all([busyClosed, streamingClosed]));
    assert.match(busy.read(), /connection: close/i, 'the response under way when the drain began says the connection closes');
    assert.match(busy.read(), /slow done$/);
    assert.match(streaming.read(), /streaming done/, 'a response whose headers were out ends whole before the close');
    assert.ok(!pod.socket.destroyed, "a pod's idle connection stays open through the drain");
    const podClosed = once(pod.socket, 'close');
    pod.socket.write('GET /again HTTP/1.1\r\nhost: a\r\n\r\n');
    await within(2000, "the pod's connection closed after its next response", podClosed);
    assert.match(pod.read().slice(pod.read().lastIndexOf('HTTP/1.1 200')), /connection: close[\s\S]*pod ok$/i, 'that response said the connection closes');
  } finally {
    for (const c of [idle, busy, streaming, pod]) c.socket.destroy();
    listener.close();
    proxy.close();
    podsListener.close();
    podsProxy.close();
  }
});

/** Upstream connections over TCP to `port`, each socket recorded as the pool's would be. */
function upstreamTo(port: number): { upstream: UpstreamConnections; opened: Socket[]; send: (method: string, path: string, body?: string) => Promise<ExchangeResult> } {
  const { upstream, opened, target } = tcpUpstream(port);
  const send = (method: string, path: string, body?: string): Promise<ExchangeResult> => {
    const headers = new Map<string, string[]>(body === undefined ? [] : [['content-length', [String(body.length)]]]);
    const requestBody = new RequestBody(Readable.from(body === undefined ? [] : [Buffer.from(body)]), body === undefined);
    return upstream.send(target, { method, path, authority: 'server', headers }, requestBody, 'h1').result;
  };
  return { upstream, opened, send };
}

/** The response's body; fails on anything but a response. */
async function text(result: ExchangeResult): Promise<string> {
  if (result.kind !== 'response') return assert.fail(`the request got ${result.kind}: ${result.message}`);
  let body = '';
  result.body.on('data', (chunk: Buffer) => (body += chunk));
  await once(result.body, 'end');
  // The agent takes the connection back a tick after the response ended.
  await new Promise((resolve) => setImmediate(resolve));
  return body;
}

test("GOAWAY on an upstream connection's HBONE connection closes it when idle, or after its current response", async () => {
  let release: (() => void) | undefined;
  const arrived = signal();
  const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    if (req.url !== '/slow') return void res.end(`served on ${req.socket.remotePort}`);
    release = () => res.end(`slow on ${req.socket.remotePort}`);
    arrived.resolve();
  });
  const port = await listen(server);
  const { upstream, opened, send } = upstreamTo(port);
  try {
    const first = await text(await send('GET', '/'));
    assert.equal(first, await text(await send('GET', '/')), 'kept alive before the GOAWAY');
    opened[0]!.emit(PEER_GOAWAY);
    assert.ok(opened[0]!.destroyed, 'the idle connection closed on GOAWAY');
    assert.notEqual(await text(await send('GET', '/')), first, 'the next request went out on a new connection');
    assert.equal(opened.length, 2);

    const slow = send('GET', '/slow');
    await within(2000, 'the slow request reaching the server', arrived.promise);
    opened[1]!.emit(PEER_GOAWAY);
    assert.ok(!opened[1]!.destroyed, 'a connection under a request stays until its response');
    const closed = once(opened[1]!, 'close');
    release!();
    assert.match(await text(await slow), /^slow on /);
    await within(1000, 'the connection closing after its response', closed);
    await text(await send('GET', '/'));
    assert.equal(opened.length, 3, 'the connection that got GOAWAY was not used again');
  } finally {
    upstream.close();
    server.closeAllConnections();
    server.close();
  }
});

test('a request reset on a kept connection before any response is sent again if idempotent, never a POST that went out', async () => {
  const seen: string[] = [];
  // The second request on a connection meets a close, as one sent just as a draining agent closed it.
  const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    const socket = req.socket as Socket & { served?: number };
    socket.served = (socket.served ?? 0) + 1;
    seen.push(`${req.method} ${socket.served}`);
    if (socket.served === 2) return void socket.destroy();
    req.resume();
    req.once('end', () => res.end('ok'));
  });
  const port = await listen(server);
  const { upstream, opened, send } = upstreamTo(port);
  try {
    await text(await send('GET', '/'));
    assert.equal(await text(await send('GET', '/')), 'ok', 'the GET reset on its kept connection was answered on a new one');
    assert.deepEqual(seen, ['GET 1', 'GET 2', 'GET 1']);
    assert.equal(opened.length, 2);
    const post = await send('POST', '/orders', 'one order');
    assert.equal(post.kind, 'reset', 'the POST reset after its bytes went out is not sent again');
    assert.deepEqual(seen, ['GET 1', 'GET 2', 'GET 1', 'POST 2'], 'the server saw the POST once');
  } finally {
    upstream.close();
    server.closeAllConnections();
    server.close();
  }
});

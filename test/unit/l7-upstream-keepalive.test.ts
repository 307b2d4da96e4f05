// Kept-alive upstream HTTP/1.1 connections when the server closes them while idle (Node's default
// keepAliveTimeout is 5 s; the lab hung on it): the next request must go out on a new connection, not
// wait on the closed one. The agent's upstream connections allow half-open (the L4 relay needs it), as
// these do.

import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { RequestBody } from '../../agent/l7/proxy/request-body.js';
import { tcpUpstream } from './helpers/tcp-upstream.js';

const IDLE_CLOSE_MS = 200;
let server: http.Server;
let port = 0;

before(async () => {
  // Closes a connection idle for IDLE_CLOSE_MS with a FIN, as Node's keepAliveTimeout does, but without
  // its Keep-Alive hint: Node's client takes a hinted timeout as its own, and a sub-second one as none.
  server = http.createServer((req, res) => {
    const socket = req.socket as Socket & { idle?: NodeJS.Timeout };
    clearTimeout(socket.idle);
    res.once('finish', () => (socket.idle = setTimeout(() => socket.end(), IDLE_CLOSE_MS)));
    res.end(`served on ${req.socket.remotePort}`);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});

after(() => {
  server.closeAllConnections();
  server.close();
});

test('a keep-alive connection the server closed while idle is not reused: the next request answers at once', async () => {
  const { upstream, opened, target } = tcpUpstream(port);
  const get = async (): Promise<string> => {
    const exchange = upstream.send(target, { method: 'GET', path: '/', authority: 'server', headers: new Map() }, new RequestBody(Readable.from([]), true), 'h1');
    const timer = setTimeout(() => exchange.abort(), 3000);
    const result = await exchange.result;
    clearTimeout(timer);
    if (result.kind !== 'response') return assert.fail(`the request got ${result.kind}: ${result.message}`);
    const body = result.body;
    let text = '';
    body.on('data', (chunk: Buffer) => (text += chunk));
    await new Promise((r) => body.once('end', r));
    return text;
  };
  try {
    const first = await get();
    // The connection goes back to the pool a tick after the response ended.
    await new Promise((r) => setTimeout(r, 20));
    const second = await get();
    assert.equal(second, first, 'a second request right away reuses the kept-alive connection');
    // The server closes the idle connection (FIN); wait until ours has seen it.
    await new Promise((r) => setTimeout(r, IDLE_CLOSE_MS * 3));
    const started = Date.now();
    const third = await get();
    assert.notEqual(third, first, 'the request after the idle close went out on a new connection');
    assert.ok(Date.now() - started < 1000, `it answered in ${Date.now() - started} ms`);
    assert.equal(opened.length, 2);
    assert.ok(opened[0]!.destroyed, 'the connection the server closed was closed on our side too');
  } finally {
    upstream.close();
  }
});

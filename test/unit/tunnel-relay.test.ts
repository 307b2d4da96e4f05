// The relay between a client and an upstream: every byte arrives in order both ways, half-close is
// carried, the byte counts telemetry reports are right whether the sides are TCP sockets (counted by
// the sockets) or other streams such as an HTTP/2 stream (counted by chunk), and the idle timeout.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { Duplex, PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { type RelayResult, relay } from '../../agent/tunnel/relay.js';
import { KEEPALIVE_IDLE_MS } from '../../agent/tunnel/socket-options.js';
import { quietUntilClosed } from './helpers/idle-close.js';

/** The kernel's timer on the loopback TCP socket matching an `ss` filter, e.g. "keepalive,2min59sec,0". */
function timerOf(filter: string): string {
  const line = execFileSync('ss', ['-tnoH', 'state', 'established', filter], { encoding: 'utf8' }).trim();
  return /timer:\(([^)]*)\)/.exec(line)?.[1] ?? `none (${line || 'no such socket'})`;
}

/** A server that echoes and ends when its client ends. */
function echoServer(): Server {
  return createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

function connected(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    socket.once('connect', () => resolve(socket)).once('error', reject);
  });
}

/** Writes `payload` to `stream` in pieces, ends it, and resolves with everything read back. */
async function exchange(stream: Duplex, payload: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const ended = new Promise<void>((resolve, reject) => {
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', resolve).once('error', reject);
  });
  for (let at = 0; at < payload.length; at += 100_000) stream.write(payload.subarray(at, at + 100_000));
  stream.end();
  await ended;
  return Buffer.concat(chunks);
}

/** Two streams joined back to back, as an HTTP/2 stream looks to the relay: a Duplex that is no socket. */
function streamPair(): [Duplex, Duplex] {
  const toA = new PassThrough();
  const toB = new PassThrough();
  const a = Duplex.from({ readable: toA, writable: toB });
  const b = Duplex.from({ readable: toB, writable: toA });
  return [a, b];
}

describe('relay', () => {
  const echo = echoServer();
  let echoPort = 0;
  const payload = Buffer.alloc(3 * 1024 * 1024 + 17, 'abcdefghij');
  before(async () => {
    echoPort = await listen(echo);
  });
  after(() => echo.close());

  it('relays socket to socket, carries the FIN both ways and counts from the sockets', async () => {
    let result: Promise<RelayResult> | undefined;
    // The accepted socket reads while the upstream connects: bytes read before the relay count too.
    const front = createServer({ allowHalfOpen: true }, (client) => {
      result = connected(echoPort).then((upstream) => relay(client, upstream));
    });
    const port = await listen(front);
    try {
      const client = await connected(port);
      assert.deepEqual(await exchange(client, payload), payload);
      client.destroy();
      const counts = await result!;
      assert.equal(counts.bytesSent, payload.length);
      assert.equal(counts.bytesReceived, payload.length);
      assert.equal(counts.error, undefined);
    } finally {
      front.close();
    }
  });

  it('starts a socket accepted paused (pauseOnConnect, as the outbound listener accepts)', async () => {
    let result: Promise<RelayResult> | undefined;
    // Upstream a stream, as the outbound HBONE relay has it: the relay in JavaScript must start the socket.
    const front = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
      const [upstream, app] = streamPair();
      app.on('data', (chunk: Buffer) => app.write(chunk));
      app.once('end', () => app.end());
      result = relay(client, upstream);
    });
    const port = await listen(front);
    try {
      const client = await connected(port);
      assert.deepEqual(await exchange(client, payload), payload);
      client.destroy();
      assert.equal((await result!).bytesSent, payload.length);
    } finally {
      front.close();
    }
  });

  it('counts by chunk when the client side is a stream and the upstream a socket', async () => {
    const [outer, inner] = streamPair();
    const upstream = await connected(echoPort);
    const result = relay(inner, upstream);
    assert.deepEqual(await exchange(outer, payload), payload);
    outer.destroy();
    const counts = await result;
    assert.equal(counts.bytesSent, payload.length);
    assert.equal(counts.bytesReceived, payload.length);
  });

  it('counts by chunk when neither side is a socket', async () => {
    const [outer, inner] = streamPair();
    const [upstreamInner, upstreamOuter] = streamPair();
    upstreamOuter.on('data', (chunk: Buffer) => upstreamOuter.write(chunk.subarray(0, 10)));
    upstreamOuter.once('end', () => upstreamOuter.end());
    const result = relay(inner, upstreamInner);
    const back = await exchange(outer, payload);
    outer.destroy();
    upstreamOuter.destroy();
    const counts = await result;
    assert.equal(counts.bytesSent, payload.length);
    assert.equal(counts.bytesReceived, back.length);
  });

  it('keeps TCP keepalive on the relayed sockets, ztunnel\'s 180 s idle, in the kernel splice and in JavaScript', async () => {
    const idle = new RegExp(`^keepalive,(2min5\\dsec|3min),`);
    assert.equal(KEEPALIVE_IDLE_MS, 180_000);
    const upstreams: Socket[] = [];
    // Socket to socket: the kernel relays (kernel-relay.ts); socket to stream: JavaScript does.
    for (const toStream of [false, true]) {
      const front = createServer({ allowHalfOpen: true }, (client) => {
        if (toStream) return void relay(client, streamPair()[0]);
        void connected(echoPort).then((upstream) => {
          upstreams.push(upstream);
          return relay(client, upstream);
        });
      });
      const port = await listen(front);
      const client = await connected(port);
      client.write('x');
      await new Promise((r) => setTimeout(r, 200));
      try {
        assert.match(timerOf(`sport = :${port}`), idle, 'the accepted client socket has no keepalive');
        if (!toStream) assert.match(timerOf(`dport = :${echoPort} and sport = :${upstreams.at(-1)!.localPort}`), idle, 'the upstream socket has no keepalive');
        // The test's own client is not the relay's: no timer of ours there.
        assert.doesNotMatch(timerOf(`dport = :${port}`), /^keepalive/);
      } finally {
        client.destroy();
        front.close();
      }
    }
  });

  it('closes both sides once no byte moved either way for the idle time, never while bytes flow (in JavaScript)', async () => {
    const idleMs = 300;
    let result: Promise<RelayResult> | undefined;
    let proxied: Duplex | undefined;
    // Upstream a stream, as an HBONE stream is: JavaScript relays it, never the splice thread.
    const front = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
      const [upstream, app] = streamPair();
      proxied = upstream;
      app.resume();
      app.on('error', () => undefined); // the pair shares its buffers: the destroy reaches both ends
      result = relay(client, upstream, { idleTimeoutMs: idleMs });
    });
    const port = await listen(front);
    try {
      const client = await connected(port);
      const quiet = await quietUntilClosed(client, idleMs);
      assert.ok(quiet >= idleMs - 1 && quiet < idleMs + 400, `closed ${Math.round(quiet)} ms after the last byte; the idle time is ${idleMs} ms`);
      const counts = await result!;
      assert.equal(counts.bytesSent, 12);
      assert.deepEqual(counts.error, {
        side: 'downstream',
        message: 'idle timeout: no byte moved either way for 300 ms, so both sides were closed (ambit run --tcp-idle-timeout)',
        reason: 'idle-timeout',
      });
      assert.ok(proxied!.destroyed, 'the upstream side is closed too');
    } finally {
      front.close();
    }
  });

  it('reports the first error and tears down both sides', async () => {
    const [outer, inner] = streamPair();
    const upstream = await connected(echoPort);
    const result = relay(inner, upstream);
    outer.on('error', () => undefined); // the pair shares its buffers: the reset reaches both ends
    inner.destroy(new Error('stream reset by the peer'));
    const counts = await result;
    assert.deepEqual(counts.error, { side: 'downstream', message: 'stream reset by the peer' });
    assert.ok(upstream.destroyed);
    outer.destroy();
  });
});

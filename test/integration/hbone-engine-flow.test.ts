// The native HBONE engine's byte path: bulk transfer both ways with checksums (engine to engine, and
// engine to node:http2 with the 16 MiB connection window), flow control held end to end against a pod
// that stops reading (and reopened as soon as it reads again), and a CONNECT reset before the agent
// answered never reaching the pod.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { type Socket, createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { spiffeId } from '../../agent/state/model.js';
import type { ConnId } from '../../agent/tunnel/engine/events.js';
import { EngineProbe, type EngineServer, SocketPairs, type TestAnswer, certificateOf, connectAndAnswer, contextFor, dialEngine, handOver, openTunnel, startEngineServer } from '../fixtures/hbone/engine.js';
import { type TestEcho, type TestHboneServer, type TestTrust, closeServer, listen, openTrust, startEcho, startHboneServer, startStalledPod } from '../fixtures/hbone/mesh.js';

const TD = 'cluster.local';
const CLIENT = spiffeId(TD, 'default', 'flow-client');
const SERVER = spiffeId(TD, 'default', 'flow-server');
const NODE_SERVER = spiffeId(TD, 'default', 'flow-node-server');
const POD = '127.0.0.60';
const NODE_POD = '127.0.0.61';
const MiB = 1024 * 1024;

/** Sends `size` random bytes into `socket` and ends it; resolves with their digest once all are written. */
async function sendRandom(socket: Socket, size: number): Promise<string> {
  const hash = createHash('sha256');
  for (let sent = 0; sent < size; ) {
    const chunk = randomBytes(Math.min(256 * 1024, size - sent));
    hash.update(chunk);
    sent += chunk.length;
    if (!socket.write(chunk)) await once(socket, 'drain');
  }
  socket.end();
  return hash.digest('hex');
}

/** Reads `socket` to its end; resolves with the byte count and digest, failing after `timeoutMs`. */
function receiveDigest(socket: Socket, timeoutMs: number): Promise<{ bytes: number; digest: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${bytes} bytes within ${timeoutMs} ms`)), timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      hash.update(chunk);
    });
    socket.once('end', () => (clearTimeout(timer), resolve({ bytes, digest: hash.digest('hex') })));
    socket.once('error', (err) => (clearTimeout(timer), reject(err)));
  });
}

describe('HBONE engine byte path', () => {
  let trust: TestTrust;
  let echo: TestEcho;
  let nodeEcho: TestEcho;
  let server: EngineServer;
  let nodeServer: TestHboneServer;
  let client: EngineProbe;
  let pairs: SocketPairs;
  /** How the server answers: by default the fixture's connect-and-200. */
  let answer: (event: Parameters<typeof connectAndAnswer>[0]) => Promise<TestAnswer | undefined> = connectAndAnswer;

  before(async () => {
    trust = await openTrust(TD, [CLIENT, SERVER, NODE_SERVER]);
    echo = await startEcho(POD);
    nodeEcho = await startEcho(NODE_POD);
    server = await startEngineServer({ trust, pods: new Map([[POD, SERVER]]), answer: (event) => answer(event) });
    nodeServer = await startHboneServer(trust, new Map([[NODE_POD, NODE_SERVER]]));
    client = new EngineProbe();
    pairs = await new SocketPairs().start();
  });
  after(async () => {
    client.destroy();
    await server.close();
    await nodeServer.close();
    await echo.close();
    await nodeEcho.close();
    await pairs.close();
    await trust.close();
  });

  const dial = async (ip: string, port: number, expected: string): Promise<ConnId> => {
    const dialed = await dialEngine(client, ip, port, contextFor(await certificateOf(trust, CLIENT)), [expected]);
    if (!('conn' in dialed)) assert.fail(dialed.failed.message);
    return dialed.conn;
  };

  /** 64 MiB each way at once through an echo; both digests must match what was sent. */
  const bulkEcho = async (conn: ConnId, authority: string, size: number): Promise<void> => {
    const tunnel = await openTunnel(client, pairs, conn, authority);
    assert.equal(tunnel.status, 200);
    const received = receiveDigest(tunnel.app, 60_000);
    const sent = await sendRandom(tunnel.app, size);
    const got = await received;
    assert.equal(got.bytes, size);
    assert.equal(got.digest, sent);
    const end = await client.wait('streamEnd', (e) => e.stream === tunnel.stream);
    assert.deepEqual([end.cause, end.bytesIn, end.bytesOut], ['done', size, size]);
  };

  it('64 MiB each way, engine to engine, checksums equal', { timeout: 90_000 }, async () => {
    await bulkEcho(await dial(POD, server.port, SERVER), `${POD}:${echo.port}`, 64 * MiB);
  });

  it('64 MiB each way, engine client to the node:http2 server: the 16 MiB connection window does not stall it', { timeout: 90_000 }, async () => {
    await bulkEcho(await dial(NODE_POD, nodeServer.port, NODE_SERVER), `${NODE_POD}:${nodeEcho.port}`, 64 * MiB);
  });

  it('a pod that stops reading holds the sender back: the receiving engine buffers at most the stream window', { timeout: 60_000 }, async () => {
    // The pod accepts and never reads.
    const sink = await startStalledPod(POD);
    try {
      const conn = await dial(POD, server.port, SERVER);
      const tunnel = await openTunnel(client, pairs, conn, `${POD}:${sink.port}`);
      assert.equal(tunnel.status, 200);
      const peer = await server.probe.wait('connect', (e) => e.authority === `${POD}:${sink.port}`);
      let written = 0;
      const chunk = Buffer.alloc(256 * 1024, 1);
      // Write until the app's socket stops taking bytes for a second: everything downstream is full.
      let lastMove = Date.now();
      for (let i = 0; i < 400 && Date.now() - lastMove < 1000; i++) {
        if (tunnel.app.writableLength < 4 * MiB) {
          tunnel.app.write(chunk);
          written += chunk.length;
          lastMove = Date.now();
        }
        await sleep(10);
      }
      const stats = await server.probe.engine.connStats(peer.conn);
      assert.ok(stats, 'the server connection is open');
      // Bytes waiting for the pod are bounded by the stream window (4 MiB) the peer was given.
      assert.ok(stats.inBuffered <= 4 * MiB, `the receiving engine holds ${stats.inBuffered} bytes for the pod`);
      const clientStats = await client.engine.connStats(conn);
      assert.ok(clientStats && clientStats.outBuffered <= 256 * 1024, `the sending engine queued ${clientStats?.outBuffered} bytes`);
      assert.ok(tunnel.app.writableLength > 0, `the app could write all ${written} bytes: nothing held it back`);
      tunnel.app.destroy();
    } finally {
      await sink.close();
    }
  });

  it('a pod that stops reading and then reads again gets the rest at once: the window reopens as it drains', { timeout: 60_000 }, async () => {
    const sink = await startStalledPod(POD);
    try {
      const conn = await dial(POD, server.port, SERVER);
      const tunnel = await openTunnel(client, pairs, conn, `${POD}:${sink.port}`);
      assert.equal(tunnel.status, 200);
      let written = 0;
      const chunk = Buffer.alloc(256 * 1024, 1);
      // Past the 4 MiB stream window: the sender waits for the WINDOW_UPDATE that only the pod's reads release.
      let lastMove = Date.now();
      for (let i = 0; i < 400 && Date.now() - lastMove < 1000; i++) {
        if (tunnel.app.writableLength < 4 * MiB) {
          tunnel.app.write(chunk);
          written += chunk.length;
          lastMove = Date.now();
        }
        await sleep(10);
      }
      assert.ok(written > 4 * MiB, `only ${written} bytes went in before the path was full`);
      tunnel.app.end();
      // Nothing else moves on the connection: a WINDOW_UPDATE left unsent would wait for the next PING (10 s).
      const pod = sink.sockets[0]!;
      const received = receiveDigest(pod, 3_000);
      pod.resume();
      assert.equal((await received).bytes, written);
    } finally {
      await sink.close();
    }
  });

  it('a CONNECT reset before the agent answered never connects to the pod', { timeout: 30_000 }, async () => {
    let podAccepts = 0;
    const pod = createServer((socket) => {
      podAccepts++;
      socket.destroy();
    });
    const podPort = await listen(pod, POD);
    // The agent's admission takes 300 ms; it gives up when the engine says the stream ended.
    answer = async (event) => {
      const ended = server.probe.wait('streamEnd', (e) => e.stream === event.stream, 300).then(
        () => true,
        () => false,
      );
      if (await ended) return undefined;
      return connectAndAnswer(event);
    };
    try {
      const conn = await dial(POD, server.port, SERVER);
      const count = 20;
      const before = server.probe.engine.counters().resetBeforeAnswer;
      const tunnels = await Promise.all(
        Array.from({ length: count }, async () => {
          const { app, plain } = await pairs.pair();
          const opened = handOver(plain, (fd) => client.engine.openStream(conn, `${POD}:${podPort}`, {}, fd));
          if (!opened.ok) assert.fail(opened.error.message);
          return { app, stream: opened.value };
        }),
      );
      // Each reset once the server has handed its CONNECT to JavaScript.
      for (let i = 0; i < count; i++) await server.probe.wait('connect', () => server.probe.events.filter((e) => e.type === 'connect' && e.authority === `${POD}:${podPort}`).length >= count);
      for (const tunnel of tunnels) client.engine.resetStream(conn, tunnel.stream);
      for (const tunnel of tunnels) await client.wait('streamEnd', (e) => e.stream === tunnel.stream);
      await sleep(600);
      assert.equal(podAccepts, 0, 'connections to the pod for streams already reset');
      assert.equal(server.probe.engine.counters().resetBeforeAnswer - before, count);
      tunnels.forEach((t) => t.app.destroy());
    } finally {
      answer = connectAndAnswer;
      await closeServer(pod);
    }
  });
});

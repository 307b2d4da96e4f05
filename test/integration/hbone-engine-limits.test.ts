// The native HBONE engine's per-connection memory cap and per-stream idle timeout, as a client sees
// them: a peer whose streams make the engine hold more than maxConnectionMemory loses its connection
// (counted, reported once), and a carried stream in which no byte moved for streamIdleTimeoutMs is
// closed on both sides while a stream that keeps talking stays open.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { spiffeId } from '../../agent/state/model.js';
import type { ConnId } from '../../agent/tunnel/engine/events.js';
import type { EngineOptions } from '../../agent/tunnel/engine/native.js';
import { EngineProbe, type EngineServer, SocketPairs, certificateOf, contextFor, dialEngine, openTunnel, startEngineServer } from '../fixtures/hbone/engine.js';
import { type TestEcho, type TestTrust, openTrust, startEcho, startStalledPod } from '../fixtures/hbone/mesh.js';

const TD = 'cluster.local';
const CLIENT = spiffeId(TD, 'default', 'limits-client');
const SERVER = spiffeId(TD, 'default', 'limits-server');
const POD = '127.0.0.62';
const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * Resolves with how long after `since` the client's socket was ended or reset by the engine (its end
 * of the pair closed), or rejects after `timeoutMs`. The pair is half-open capable: 'end' is the sign.
 */
function endedWithin(socket: Socket, since: number, timeoutMs: number): Promise<number> {
  if (socket.readableEnded || socket.destroyed) return Promise.resolve(Date.now() - since);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the client's socket was still open after ${timeoutMs} ms`)), timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      resolve(Date.now() - since);
    };
    socket.once('end', done).once('close', done).once('error', () => undefined);
    socket.resume();
  });
}

describe('HBONE engine limits: memory per connection, idle streams', () => {
  let trust: TestTrust;
  let echo: TestEcho;
  let pairs: SocketPairs;
  const servers: EngineServer[] = [];
  const clients: EngineProbe[] = [];

  before(async () => {
    trust = await openTrust(TD, [CLIENT, SERVER]);
    echo = await startEcho(POD);
    pairs = await new SocketPairs().start();
  });
  after(async () => {
    clients.forEach((c) => c.destroy());
    for (const server of servers) await server.close();
    await echo.close();
    await pairs.close();
    await trust.close();
  });

  const connect = async (serverOptions: EngineOptions): Promise<{ server: EngineServer; client: EngineProbe; conn: ConnId }> => {
    const server = await startEngineServer({ trust, pods: new Map([[POD, SERVER]]), engine: serverOptions });
    servers.push(server);
    const client = new EngineProbe();
    clients.push(client);
    const dialed = await dialEngine(client, POD, server.port, contextFor(await certificateOf(trust, CLIENT)), [SERVER]);
    if (!('conn' in dialed)) assert.fail(dialed.failed.message);
    return { server, client, conn: dialed.conn };
  };

  it('a peer that makes the engine hold more than maxConnectionMemory loses its connection: counted, reported once', { timeout: 60_000 }, async () => {
    // Pods that accept and never read: what their sockets do not take, the engine holds (up to the windows).
    const sink = await startStalledPod(POD);
    try {
      const { server, client, conn } = await connect({ maxConnectionMemory: 512 * KiB });
      const tunnels = [];
      for (let i = 0; i < 3; i++) {
        const tunnel = await openTunnel(client, pairs, conn, `${POD}:${sink.port}`);
        assert.equal(tunnel.status, 200);
        tunnel.app.on('error', () => undefined);
        tunnels.push(tunnel);
      }
      const started = Date.now();
      const chunk = Buffer.alloc(256 * KiB, 7);
      // Each stream may send its 4 MiB window: far more than the cap, far less than the sockets below hold.
      const ended = server.probe.wait('connEnd', () => true, 30_000);
      for (let i = 0; i < 200; i++) {
        for (const tunnel of tunnels) if (!tunnel.app.destroyed && tunnel.app.writableLength < 8 * MiB) tunnel.app.write(chunk);
        await Promise.race([ended, sleep(20)]);
        if (server.probe.events.some((e) => e.type === 'connEnd')) break;
      }
      const end = await ended;
      assert.equal(end.cause, 'memory-limit', end.message);
      assert.match(end.message, /went over 524288 bytes of memory \(maxConnectionMemory\)/);
      assert.equal(server.probe.engine.counters().limitConnectionMemory, 1);
      const limits = server.probe.events.filter((e) => e.type === 'limit');
      assert.equal(limits.length, 1);
      assert.ok(limits[0]?.type === 'limit' && limits[0].limit === 'maxConnectionMemory' && limits[0].peer === CLIENT && /raise maxConnectionMemory/.test(limits[0].hint));
      // What the client sees: its HBONE connection ends, and so do the tunnels' sockets.
      assert.equal((await client.wait('connEnd', (e) => e.conn === conn)).conn, conn);
      for (const tunnel of tunnels) await endedWithin(tunnel.app, started, 10_000);
      tunnels.forEach((t) => t.app.destroy());
    } finally {
      await sink.close();
    }
  });

  it('a stream in which no byte moved for streamIdleTimeoutMs is closed on both sides; one that keeps talking is not', { timeout: 30_000 }, async () => {
    const { server, client, conn } = await connect({ streamIdleTimeoutMs: 600 });
    const talking = await openTunnel(client, pairs, conn, `${POD}:${echo.port}`);
    const quiet = await openTunnel(client, pairs, conn, `${POD}:${echo.port}`);
    assert.equal(talking.status, 200);
    assert.equal(quiet.status, 200);
    quiet.app.write('once');
    await once(quiet.app, 'data');
    const lastByte = Date.now();
    const quietClosed = endedWithin(quiet.app, lastByte, 5000);
    // A byte each way every 150 ms for 1.8 s: three timeouts' worth, never idle that long.
    for (let i = 0; i < 12; i++) {
      talking.app.write('.');
      await once(talking.app, 'data');
      await sleep(150);
    }
    const after = await quietClosed;
    assert.ok(after >= 550, `the quiet stream closed ${after} ms after its last byte, before its idle timeout`);
    const ended = await server.probe.wait('streamEnd', (e) => e.cause === 'idle-timeout');
    assert.equal(ended.bytesIn, 4);
    assert.equal(ended.bytesOut, 4);
    // The client's engine hears the reset (CANCEL) and closes the client's socket.
    assert.deepEqual([(await client.wait('streamEnd', (e) => e.stream === quiet.stream)).cause, (await client.wait('streamEnd', (e) => e.stream === quiet.stream)).code], ['peer-reset', 8]);
    assert.equal(talking.app.readableEnded, false, 'the stream that kept talking was closed');
    assert.equal(server.probe.engine.counters().streamsIdleClosed, 1);
    // Once it stops talking, it idles out too.
    await endedWithin(talking.app, Date.now(), 5000);
    assert.equal(server.probe.engine.counters().streamsIdleClosed, 2);
  });
});

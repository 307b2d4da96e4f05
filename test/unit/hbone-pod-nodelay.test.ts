// A request a client writes in two parts reaches the destination pod without waiting for the pod's
// delayed ACK: the HBONE server's socket to the pod runs without Nagle's algorithm, as the client side
// does. With Nagle there, the second part stays in the server's kernel until the pod ACKs the first,
// and a pod that answers only a whole request ACKs late (Linux's delayed ACK: 40 ms and more).

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type Socket, createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { spiffeId } from '../../agent/state/model.js';
import { HbonePool } from '../../agent/tunnel/hbone/pool.js';
import { type TestHboneServer, type TestTrust, closeServer, listen, openTrust, startHboneServer } from '../fixtures/hbone/mesh.js';

const TD = 'cluster.local';
const PRODUCTPAGE = spiffeId(TD, 'default', 'productpage');
const REVIEWS = spiffeId(TD, 'default', 'reviews');
const REVIEWS_IP = '127.0.0.2';
const PART = 100;
const ROUNDS = 12;

/** A pod that answers each request of two parts once both arrived, and reports each part's arrival. */
async function startTwoPartApp(): Promise<{ port: number; arrived: () => Promise<void>; close(): Promise<void> }> {
  const sockets: Socket[] = [];
  let waiting: (() => void) | undefined;
  const server = createServer((socket) => {
    sockets.push(socket);
    let held = 0;
    socket.on('data', (chunk: Buffer) => {
      held += chunk.length;
      waiting?.();
      if (held < 2 * PART) return;
      held -= 2 * PART;
      socket.write('answer');
    });
    socket.on('error', () => socket.destroy());
  });
  const port = await listen(server, REVIEWS_IP);
  return {
    port,
    arrived: () => new Promise((resolve) => (waiting = resolve)),
    close: () => {
      sockets.forEach((s) => s.destroy());
      return closeServer(server);
    },
  };
}

describe('HBONE server: the socket to the pod', () => {
  let trust: TestTrust;
  let hbone: TestHboneServer;
  let pool: HbonePool;
  let app: Awaited<ReturnType<typeof startTwoPartApp>>;

  before(async () => {
    trust = await openTrust(TD, [PRODUCTPAGE, REVIEWS]);
    app = await startTwoPartApp();
    // The default handler connects to the pod as the agent does: a plain connect, Nagle on.
    hbone = await startHboneServer(trust, new Map([[REVIEWS_IP, REVIEWS]]));
    pool = new HbonePool({ certificates: trust.certificates });
  });
  after(async () => {
    await pool.close(500);
    await hbone.close();
    await app.close();
    await trust.close();
  });

  it('carries the second part of a request at once, not after the pod acknowledged the first', async () => {
    const opened = await pool.open({
      source: { identity: PRODUCTPAGE, ip: '127.0.0.10' },
      bindSource: true,
      destination: { ip: REVIEWS_IP, port: hbone.port },
      expectedIdentities: [REVIEWS],
      authority: { ip: REVIEWS_IP, port: app.port },
    });
    assert.ok(opened.ok, opened.ok ? '' : opened.error.message);
    const tunnel = opened.value;
    const waitsMs: number[] = [];
    // Past the first exchanges the pod's kernel leaves quick-ACK mode and delays its ACKs, as on any
    // long-lived connection; every round is timed, the median judged.
    for (let round = 0; round < ROUNDS; round++) {
      const first = app.arrived();
      tunnel.write(Buffer.alloc(PART, 'a'));
      await first;
      const answer = once(tunnel, 'data');
      const sent = process.hrtime.bigint();
      tunnel.write(Buffer.alloc(PART, 'b'));
      await answer;
      waitsMs.push(Number(process.hrtime.bigint() - sent) / 1e6);
    }
    tunnel.destroy();
    const median = [...waitsMs].sort((a, b) => a - b)[Math.floor(ROUNDS / 2)]!;
    assert.ok(median < 20, `the second part took ${median.toFixed(1)} ms at the median to be answered (each round: ${waitsMs.map((w) => w.toFixed(1)).join(', ')} ms): held by Nagle's algorithm until the pod's delayed ACK`);
  });
});

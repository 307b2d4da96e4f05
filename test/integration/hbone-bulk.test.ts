// Bulk transfers through the HBONE server and pool, Node on both ends, with the windows in settings.ts:
// 64 MiB each way at once, on one stream and on eight, several times. ztunnel's 16 MiB connection
// window stalled exactly this (see settings.ts); the default must never stall.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Duplex } from 'node:stream';
import { spiffeId } from '../../agent/state/model.js';
import { HbonePool } from '../../agent/tunnel/hbone/pool.js';
import type { HbonePoolEvent } from '../../agent/tunnel/hbone/events.js';
import { type TestEcho, type TestHboneServer, type TestTrust, openTrust, startEcho, startHboneServer } from '../fixtures/hbone/mesh.js';

const TD = 'cluster.local';
const CLIENT = spiffeId(TD, 'default', 'bulk-client');
const SERVER = spiffeId(TD, 'default', 'bulk-server');
const POD_IP = '127.0.0.20';
const MiB = 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 0x5a);
const RUNS = 5;
const DEADLINE_MS = 60_000;

/** Writes `bytes` while reading the echo; resolves with the bytes read when the echo ends. */
function echoBulk(stream: Duplex, bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let received = 0;
    let sent = 0;
    stream.on('data', (chunk: Buffer) => (received += chunk.length));
    stream.once('end', () => resolve(received));
    stream.once('error', reject);
    const write = (): void => {
      while (sent < bytes) {
        sent += CHUNK.length;
        if (!stream.write(CHUNK)) return void stream.once('drain', write);
      }
      stream.end();
    };
    write();
  });
}

describe('HBONE bulk bidirectional transfer, Node to Node', () => {
  let trust: TestTrust;
  let echo: TestEcho;
  let hbone: TestHboneServer;
  before(async () => {
    trust = await openTrust(TD, [CLIENT, SERVER]);
    echo = await startEcho(POD_IP);
    hbone = await startHboneServer(trust, new Map([[POD_IP, SERVER]]));
  });
  after(async () => {
    await hbone.close();
    await echo.close();
    await trust.close();
  });

  for (const streams of [1, 8]) {
    it(`moves 64 MiB each way over ${streams} stream(s), ${RUNS} times, without a stall`, { timeout: RUNS * DEADLINE_MS }, async () => {
      const rates: number[] = [];
      for (let run = 0; run < RUNS; run++) {
        const events: HbonePoolEvent[] = [];
        const pool = new HbonePool({ certificates: trust.certificates, onEvent: (e) => events.push(e) });
        try {
          const started = performance.now();
          const opened = await Promise.all(
            Array.from({ length: streams }, () =>
              pool.open({ source: { identity: CLIENT, ip: '127.0.0.1' }, destination: { ip: POD_IP, port: hbone.port }, expectedIdentities: [SERVER], authority: { ip: POD_IP, port: echo.port } }),
            ),
          );
          const each = (64 * MiB) / streams;
          const transfers = opened.map((result) => {
            if (!result.ok) assert.fail(result.error.message);
            return echoBulk(result.value, each);
          });
          let timer: NodeJS.Timeout | undefined;
          const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`run ${run}: not done within ${DEADLINE_MS} ms: stalled`)), DEADLINE_MS)));
          const received = await Promise.race([Promise.all(transfers), deadline]).finally(() => clearTimeout(timer));
          assert.deepEqual(received, opened.map(() => each), `run ${run}: every byte came back`);
          assert.equal(events.filter((e) => e.type === 'connection-closed').length, 0, `run ${run}: no session was closed by the watchdog or keepalive`);
          rates.push(64 / ((performance.now() - started) / 1000));
        } finally {
          await pool.close(100);
        }
      }
      console.log(`# hbone bulk: ${streams} stream(s), 64 MiB each way: ${rates.map((r) => r.toFixed(0)).join(', ')} MiB/s each way`);
    });
  }
});

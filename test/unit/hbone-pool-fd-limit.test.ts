// At the open-files limit the pool cannot hand a pod's connection to the engine: the engine's dup of
// its fd fails with EMFILE. That is this process's shortage, not the HBONE connection's: the one stream
// fails (the caller refuses its client), the connection stays pooled, and once fds are free the next
// stream rides the same connection, with no new TCP connection and no new handshake. The limit is real:
// this process's soft RLIMIT_NOFILE is lowered with prlimit and every fd below it taken.
// Before, the pool retired the healthy connection as if it had failed and dialled a new one, which the
// same limit refused; after the limit, every stream needed a new connection.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync, readFileSync, readdirSync } from 'node:fs';
import type { Socket } from 'node:net';
import { after, before, it } from 'node:test';
import { spiffeId } from '../../agent/state/model.js';
import type { HbonePoolEvent } from '../../agent/tunnel/hbone/events.js';
import type { HboneOpenRequest } from '../../agent/tunnel/hbone/open-request.js';
import { HbonePool, defaultTcpDialer } from '../../agent/tunnel/hbone/pool.js';
import { HboneServer } from '../../agent/tunnel/hbone/server.js';
import { type TestEcho, type TestTrust, connectToAuthority, openTrust, podConnection, startEcho } from '../fixtures/hbone/mesh.js';

const TD = 'cluster.local';
const PRODUCTPAGE = spiffeId(TD, 'default', 'productpage');
const REVIEWS = spiffeId(TD, 'default', 'reviews');
const REVIEWS_IP = '127.0.0.2';
const CLIENT_IP = '127.0.0.10';

let trust: TestTrust;
let echo: TestEcho;
let server: HboneServer;
let port: number;
let pool: HbonePool;
/** TCP connections the pool made to the server: one per HBONE connection, so one per handshake. */
let dials = 0;
const events: HbonePoolEvent[] = [];

before(async () => {
  trust = await openTrust(TD, [PRODUCTPAGE, REVIEWS]);
  echo = await startEcho(REVIEWS_IP);
  server = new HboneServer({ certificates: trust.certificates, identityForAddress: (ip) => (ip === REVIEWS_IP ? REVIEWS : undefined), handler: connectToAuthority });
  ({ port } = await server.listen(0, REVIEWS_IP));
  pool = new HbonePool({
    certificates: trust.certificates,
    dialTcp: (target, local) => {
      dials++;
      return defaultTcpDialer(target, local);
    },
    onEvent: (event) => events.push(event),
  });
});

after(async () => {
  await pool?.close(500);
  await server?.close(500);
  await echo?.close();
  await trust?.close();
});

const request = (): HboneOpenRequest => ({
  source: { identity: PRODUCTPAGE, ip: CLIENT_IP },
  bindSource: true,
  destination: { ip: REVIEWS_IP, port },
  expectedIdentities: [REVIEWS],
  authority: { ip: REVIEWS_IP, port: echo.port },
});

/** What the pod gets back for `text` through its carried tunnel. */
async function echoed(pod: Socket, text: string): Promise<string> {
  let got = '';
  const onData = (chunk: Buffer): void => void (got += chunk.toString());
  pod.on('data', onData);
  pod.write(text);
  while (got.length < text.length) await once(pod, 'data');
  pod.off('data', onData);
  return got;
}

/** This process's soft and hard open-files limits. */
function nofile(): { soft: string; hard: string } {
  const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'))!;
  const [soft, hard] = line.replace('Max open files', '').trim().split(/\s+/);
  return { soft: soft!, hard: hard! };
}

const setSoftLimit = (soft: string, hard: string): void => void execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${soft}:${hard}`]);

/** Lowers the soft limit a little above what is open, then takes every fd left: the next fd anyone asks for is EMFILE. */
function exhaustFds(): { release(): void } {
  const { soft, hard } = nofile();
  setSoftLimit(String(readdirSync('/proc/self/fd').length + 32), hard);
  const held: number[] = [];
  try {
    for (let i = 0; i < 256; i++) held.push(openSync('/dev/null', 'r'));
    assert.fail('256 fds opened under a limit 32 above what was open: prlimit did not lower it');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EMFILE') {
      for (const fd of held) closeSync(fd);
      setSoftLimit(soft, hard);
      throw err;
    }
  }
  return {
    release: () => {
      for (const fd of held) closeSync(fd);
      setSoftLimit(soft, hard);
    },
  };
}

it('a stream refused at the open-files limit fails alone; the next one rides the same HBONE connection', { timeout: 30_000 }, async () => {
  const [first, refused, next] = [await podConnection(), await podConnection(), await podConnection()];
  try {
    const carried = await pool.carry(request(), first.accepted);
    if (!carried.ok) assert.fail(`the first stream failed: ${carried.error.message}`);
    assert.equal(await echoed(first.pod, 'before the limit'), 'before the limit');
    assert.equal(dials, 1);

    const limit = exhaustFds();
    let atLimit: Awaited<ReturnType<HbonePool['carry']>>;
    try {
      atLimit = await pool.carry(request(), refused.accepted);
    } finally {
      limit.release();
    }
    assert.ok(!atLimit.ok, 'a stream was opened with no fd left to give the engine');
    assert.match(atLimit.error.message, /EMFILE|too many open files/i);
    assert.deepEqual(events.filter((e) => e.type === 'connection-closed'), [], 'the HBONE connection was retired for this process\'s fd shortage');
    assert.deepEqual(pool.status().map((c) => [c.ready, c.streams]), [[true, 1]], 'the connection stays pooled with the first stream on it');

    const again = await pool.carry(request(), next.accepted);
    if (!again.ok) assert.fail(`the stream after the limit failed: ${again.error.message}`);
    assert.equal(dials, 1, 'the stream after the limit needed a new TCP connection and handshake');
    const reused = events.flatMap((e) => (e.type === 'stream-opened' ? [e.reused] : []));
    assert.deepEqual(reused, [false, true], 'streams opened: the first on a new connection, the one after the limit on it again');
    assert.equal(await echoed(next.pod, 'after the limit'), 'after the limit');
    assert.equal(await echoed(first.pod, 'the first stream still carried'), 'the first stream still carried');
  } finally {
    for (const c of [first, refused, next]) {
      c.pod.destroy();
      c.accepted.destroy();
      await c.close();
    }
  }
});

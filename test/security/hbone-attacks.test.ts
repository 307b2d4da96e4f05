// Attacks on the HBONE server (15008) by a peer that holds a valid mesh certificate, each sent frame by
// frame by python3-h2 (an HTTP/2 stack independent of Node's) and judged by what the attacker sees and
// what the pod behind the server sees: HTTP/2 rapid reset, CONTINUATION floods, SETTINGS and PING
// floods, header lists over the limit, WINDOW_UPDATE abuse, and the TLS handshake slowloris.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { type Server, type Socket, connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { spiffeId } from '../../agent/state/model.js';
import type { HboneTuning } from '../../agent/tunnel/hbone/settings.js';
import { type TestHboneServer, type TestTrust, closeServer, connectToAuthority, listen, openTrust, startHboneServer } from '../fixtures/hbone/mesh.js';
import { type PemFiles, PYTHON, requireTool, run, writePem } from '../fixtures/hbone/peers.js';

const TD = 'cluster.local';
const ATTACKER = spiffeId(TD, 'default', 'attacker');
const POD = spiffeId(TD, 'default', 'reviews');
const POD_IP = '127.0.0.2';
const ATTACKS = new URL('./fixtures/h2_attacks.py', import.meta.url).pathname;

interface AttackResult {
  readonly goaway: string | null;
  readonly resets: Record<string, string>;
  readonly statuses: Record<string, number>;
  readonly closed: boolean;
  readonly closed_after_s: number | null;
  readonly sent: number;
}

/** The pod behind the server: counts the TCP connections that reach it, and answers nothing. */
class CountingPod {
  accepted = 0;
  readonly #sockets = new Set<Socket>();
  readonly #server: Server = createServer((socket) => {
    this.accepted++;
    this.#sockets.add(socket);
    socket.on('error', () => socket.destroy()).once('close', () => this.#sockets.delete(socket));
  });
  port = 0;

  async start(): Promise<void> {
    this.port = await listen(this.#server, POD_IP);
  }

  close(): Promise<void> {
    this.#sockets.forEach((s) => s.destroy());
    return closeServer(this.#server);
  }
}

describe('HBONE server under attack by a peer with a valid certificate', () => {
  let trust: TestTrust;
  let dir: string;
  let pem: PemFiles;
  const pod = new CountingPod();

  before(async () => {
    await requireTool(PYTHON, ['-c', 'import h2, hpack'], 'python3-h2');
    trust = await openTrust(TD, [ATTACKER, POD]);
    dir = await mkdtemp(join(tmpdir(), 'ambit-h2-attacks-'));
    const certificate = await trust.certificates.fetch(ATTACKER);
    if (!certificate.ok) assert.fail(certificate.error.message);
    pem = await writePem(dir, 'attacker', certificate.value);
    await pod.start();
  });

  after(async () => {
    await pod.close();
    await trust?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function withServer<T>(tuning: Partial<HboneTuning>, body: (server: TestHboneServer) => Promise<T>): Promise<T> {
    const server = await startHboneServer(trust, new Map([[POD_IP, POD]]), { handler: connectToAuthority, tuning });
    try {
      return await body(server);
    } finally {
      await server.close();
    }
  }

  async function attack(server: TestHboneServer, mode: string, count = 0): Promise<AttackResult> {
    const args = [ATTACKS, mode, POD_IP, String(server.port), pem.cert, pem.key, pem.ca, `${POD_IP}:${pod.port}`, String(count)];
    const { stdout } = await run(PYTHON, args, { timeout: 60_000 });
    return JSON.parse(stdout) as AttackResult;
  }

  /** After an attack on one connection, the server still serves an honest one. */
  async function stillServes(server: TestHboneServer): Promise<void> {
    const r = await attack(server, 'connect');
    assert.deepEqual(r.statuses, { 1: 200 }, `an honest CONNECT after the attack: ${JSON.stringify(r)}`);
  }

  test('rapid reset: streams reset in the same write as their HEADERS never cost the pod a connection', async () => {
    await withServer({}, async (server) => {
      const before = pod.accepted;
      const r = await attack(server, 'rapid-reset', 500);
      assert.equal(r.sent, 500);
      // nghttp2 may also end the session for the reset rate; either way the pod must not pay for it.
      assert.ok(pod.accepted - before <= 5, `the pod accepted ${pod.accepted - before} connections for 500 streams reset before any answer`);
      assert.deepEqual(Object.values(r.statuses).filter((s) => s === 200), [], 'no reset stream was answered 200');
    });
  });

  test('CONTINUATION flood: a header block that never ends is cut after a bounded number of frames', async () => {
    await withServer({}, async (server) => {
      const r = await attack(server, 'continuation-flood', 20_000);
      assert.equal(r.closed || r.goaway !== null, true, `the server took all ${r.sent} CONTINUATION frames without ending the connection`);
      assert.ok(r.sent < 20_000, `the server took ${r.sent} CONTINUATION frames`);
    });
  });

  for (const mode of ['settings-flood', 'ping-flood'] as const) {
    test(`${mode}: a peer that never reads the acknowledgements is disconnected, not buffered for`, async () => {
      await withServer({}, async (server) => {
        const r = await attack(server, mode, 2_000_000);
        assert.ok(r.closed || r.goaway !== null, `the server kept acknowledging ${r.sent} frames to a peer that never read them`);
        assert.ok(r.sent < 2_000_000, `the server took all ${r.sent} frames`);
      });
    });
  }

  test('a header list over the limit refuses that stream only; the connection still opens CONNECTs', async () => {
    await withServer({}, async (server) => {
      const before = pod.accepted;
      const r = await attack(server, 'huge-headers', 100 * 1024); // over serverMaxHeaderListSize (64 KiB) even after HPACK
      assert.notEqual(r.statuses['1'], 200, 'a 100 KiB header list was answered 200');
      assert.equal(pod.accepted - before, 1, 'only the ordinary CONNECT after it reached the pod');
      assert.equal(r.closed, false, 'the connection stays open for other streams');
    });
  });

  // RFC 9113 names PROTOCOL_ERROR and FLOW_CONTROL_ERROR; node:http2 sends INTERNAL_ERROR for both. What
  // matters is that the connection ends rather than wrapping its window or spinning on empty updates.
  for (const mode of ['window-zero', 'window-overflow'] as const) {
    test(`WINDOW_UPDATE abuse (${mode}): the connection ends with a GOAWAY`, async () => {
      await withServer({}, async (server) => {
        const r = await attack(server, mode);
        assert.ok(['PROTOCOL_ERROR', 'FLOW_CONTROL_ERROR', 'INTERNAL_ERROR'].includes(r.goaway ?? ''), `GOAWAY ${r.goaway}, closed ${r.closed}`);
        await stillServes(server);
      });
    });
  }

  test('TLS handshake slowloris: a client that never finishes its handshake is cut at the connect timeout', async () => {
    await withServer({ connectTimeoutMs: 300 }, async (server) => {
      const started = Date.now();
      for (const hello of [Buffer.alloc(0), Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])]) {
        const socket = connect({ host: POD_IP, port: server.port });
        socket.on('connect', () => socket.write(hello));
        const closedAfter = await new Promise<number>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('the server held a silent TLS client for 5 s')), 5_000);
          socket.on('error', () => undefined).once('close', () => {
            clearTimeout(timer);
            resolve(Date.now() - started);
          });
          socket.resume();
        });
        assert.ok(closedAfter < 3_000, `closed after ${closedAfter} ms`);
      }
      await stillServes(server);
    });
  });
});

// HBONE interop with HTTP/2 stacks other than Node's: python3-h2 as a frame-level client (valid and
// invalid CONNECTs), Go's standard library as a client of our server and as a server for our pool.
// A missing tool fails the test with the Debian package to install; nothing is skipped.
// nghttp2's own client (Debian's nghttp2-client) is no peer: nghttp sends :scheme and :path with every
// request, so its CONNECT is one nghttp2 resets (RFC 9113 §8.5), and h2load takes no client certificate.

import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import type { WorkloadCertificate } from '../../agent/identity/workload-certificate.js';
import { type SpiffeId, spiffeId } from '../../agent/state/model.js';
import { HbonePool } from '../../agent/tunnel/hbone/pool.js';
import type { HboneInboundRequest } from '../../agent/tunnel/hbone/server.js';
import { type TestEcho, type TestHboneServer, type TestTrust, connectToAuthority, openTrust, readAll, startEcho, startHboneServer } from '../fixtures/hbone/mesh.js';
import { H2_CLIENT, PYTHON, type PemFiles, buildGoPeer, requireTool, run, startGoServer, writePem } from '../fixtures/hbone/peers.js';
import { tempDir } from '../fixtures/identity/test-ca.js';

const TD = 'cluster.local';
const CLIENT = spiffeId(TD, 'default', 'interop-client');
const NODE_SERVER = spiffeId(TD, 'default', 'node-server');
const GO_SERVER = spiffeId(TD, 'default', 'go-server');
const POD_IP = '127.0.0.30';
const GO_POD_IP = '127.0.0.31';

describe('HBONE interop with independent HTTP/2 stacks', () => {
  let trust: TestTrust;
  let echo: TestEcho;
  let goEcho: TestEcho;
  let hbone: TestHboneServer;
  let dir: string;
  let client: PemFiles;
  const seen: HboneInboundRequest[] = [];
  const children: ChildProcess[] = [];

  const fetchCert = async (identity: SpiffeId): Promise<WorkloadCertificate> => {
    const result = await trust.certificates.fetch(identity);
    if (!result.ok) assert.fail(result.error.message);
    return result.value;
  };

  before(async () => {
    trust = await openTrust(TD, [CLIENT, NODE_SERVER, GO_SERVER]);
    echo = await startEcho(POD_IP);
    goEcho = await startEcho(GO_POD_IP);
    hbone = await startHboneServer(trust, new Map([[POD_IP, NODE_SERVER]]), {
      handler: (request) => {
        seen.push(request);
        return connectToAuthority(request);
      },
    });
    dir = await tempDir('hbone-interop');
    client = await writePem(dir, 'client', await fetchCert(CLIENT));
  });
  after(async () => {
    for (const child of children) child.kill();
    await hbone.close();
    await echo.close();
    await goEcho.close();
    await trust.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('python3-h2 client: CONNECT echoes; :path/:scheme, extended CONNECT, GET and a wrong authority are refused', async () => {
    await requireTool(PYTHON, ['-c', 'import h2'], 'python3-h2');
    const { stdout } = await run(PYTHON, [H2_CLIENT, POD_IP, String(hbone.port), client.cert, client.key, client.ca, String(echo.port)], { timeout: 30_000 });
    const results = JSON.parse(stdout) as Record<string, { status: number | null; reset: string | null; echo: string | null }>;
    assert.deepEqual(results.connect, { status: 200, reset: null, echo: 'hello from python-h2' });
    // nghttp2 resets these before the server sees them; either way they never become a tunnel.
    assert.deepEqual(results['connect-with-path'], { status: null, reset: 'PROTOCOL_ERROR', echo: null });
    assert.deepEqual(results['extended-connect'], { status: null, reset: 'PROTOCOL_ERROR', echo: null });
    assert.equal(results.get?.status, 400);
    assert.equal(results['authority-mismatch']?.status, 400);
    const fromPython = seen.find((request) => request.headers.baggage === 'k8s.namespace.name=py');
    assert.equal(fromPython?.peerIdentity, CLIENT);
    assert.equal(fromPython?.headers.traceparent, `00-${'a'.repeat(32)}-${'b'.repeat(16)}-00`);
  });

  let peerBinary: Promise<string> | undefined;
  const goPeer = (): Promise<string> => (peerBinary ??= buildGoPeer(dir));

  it('Go client → our server: CONNECT with only :method and :authority, echoed', { timeout: 240_000 }, async () => {
    const binary = await goPeer();
    const { stdout } = await run(binary, ['client', `${POD_IP}:${hbone.port}`, `${POD_IP}:${echo.port}`, client.cert, client.key, client.ca, NODE_SERVER, 'hello from go'], { timeout: 20_000 });
    assert.equal(stdout.trim(), 'status 200 proto HTTP/2.0 echo hello from go');
    assert.ok(seen.some((request) => request.peerIdentity === CLIENT && request.headers.traceparent === undefined));
  });

  it('our pool → Go server: echo, and 100 concurrent streams on one connection', { timeout: 240_000 }, async () => {
    const binary = await goPeer();
    const server = await writePem(dir, 'go-server', await fetchCert(GO_SERVER));
    const { port, child } = await startGoServer(binary, `${GO_POD_IP}:0`, server);
    children.push(child);
    const pool = new HbonePool({ certificates: trust.certificates });
    try {
      const open = () => pool.open({ source: { identity: CLIENT, ip: '127.0.0.1' }, destination: { ip: GO_POD_IP, port }, expectedIdentities: [GO_SERVER], authority: { ip: GO_POD_IP, port: goEcho.port } });
      const first = await open();
      if (!first.ok) assert.fail(first.error.message);
      const reply = readAll(first.value);
      first.value.end('hello go server');
      assert.equal((await reply).toString(), 'hello go server');
      // Counted until the engine reports its end: without this wait the 100 below would be the 101st stream.
      for (const deadline = Date.now() + 5_000; pool.status()[0]?.streams !== 0; ) {
        if (Date.now() > deadline) assert.fail(`the first stream is still counted: ${JSON.stringify(pool.status())}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }

      const payload = Buffer.alloc(1024 * 1024, 3);
      const streams = await Promise.all(Array.from({ length: 100 }, open));
      const echoed = await Promise.all(
        streams.map((result) => {
          if (!result.ok) assert.fail(result.error.message);
          const done = readAll(result.value, 30_000);
          result.value.end(payload);
          return done;
        }),
      );
      assert.ok(echoed.every((body) => body.length === payload.length));
      assert.equal(pool.status().length, 1, 'Go advertises 250 streams; 100 fit on one connection');
    } finally {
      await pool.close(200);
    }
  });
});

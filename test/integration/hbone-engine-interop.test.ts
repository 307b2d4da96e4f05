// The native HBONE engine against every other HBONE stack we have: today's node:http2 server and client
// pool (agent/tunnel/h2), Go's standard library both ways, and python3-h2 as a frame-level client
// (valid and invalid CONNECTs). A missing tool fails the test with the Debian package to install.

import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { type SpiffeId, spiffeId } from '../../agent/state/model.js';
import { HbonePool } from '../../agent/tunnel/hbone/pool.js';
import { EngineProbe, type EngineServer, SocketPairs, certificateOf, contextFor, dialEngine, openTunnel, startEngineServer } from '../fixtures/hbone/engine.js';
import { type TestEcho, type TestHboneServer, type TestTrust, openTrust, readAll, startEcho, startHboneServer } from '../fixtures/hbone/mesh.js';
import { H2_CLIENT, PYTHON, buildGoPeer, requireTool, run, startGoServer, writePem } from '../fixtures/hbone/peers.js';
import { tempDir } from '../fixtures/identity/test-ca.js';

const TD = 'cluster.local';
const CLIENT = spiffeId(TD, 'default', 'engine-client');
const ENGINE_SERVER = spiffeId(TD, 'default', 'engine-server');
const NODE_SERVER = spiffeId(TD, 'default', 'node-server');
const GO_SERVER = spiffeId(TD, 'default', 'go-server');
const ENGINE_POD = '127.0.0.50';
const NODE_POD = '127.0.0.51';
const GO_POD = '127.0.0.52';

describe('HBONE engine interop', () => {
  let trust: TestTrust;
  const echoes = new Map<string, TestEcho>();
  let engineServer: EngineServer;
  let nodeServer: TestHboneServer;
  let client: EngineProbe;
  let pairs: SocketPairs;
  let dir: string;
  const children: ChildProcess[] = [];

  before(async () => {
    trust = await openTrust(TD, [CLIENT, ENGINE_SERVER, NODE_SERVER, GO_SERVER]);
    for (const pod of [ENGINE_POD, NODE_POD, GO_POD]) echoes.set(pod, await startEcho(pod));
    engineServer = await startEngineServer({ trust, pods: new Map([[ENGINE_POD, ENGINE_SERVER]]) });
    nodeServer = await startHboneServer(trust, new Map([[NODE_POD, NODE_SERVER]]));
    client = new EngineProbe();
    pairs = await new SocketPairs().start();
    dir = await tempDir('hbone-engine-interop');
  });
  after(async () => {
    for (const child of children) child.kill();
    client.destroy();
    await engineServer.close();
    await nodeServer.close();
    for (const echo of echoes.values()) await echo.close();
    await pairs.close();
    await trust.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** The engine client echoes `message` through `pod`'s server on `port`, expecting `server`. */
  const echoThrough = async (pod: string, port: number, server: SpiffeId, message: string): Promise<string> => {
    const context = contextFor(await certificateOf(trust, CLIENT));
    const dialed = await dialEngine(client, pod, port, context, [server]);
    if (!('conn' in dialed)) assert.fail(dialed.failed.message);
    const tunnel = await openTunnel(client, pairs, dialed.conn, `${pod}:${echoes.get(pod)!.port}`, { forwarded: 'for="127.0.0.1"' });
    assert.equal(tunnel.status, 200);
    const reply = readAll(tunnel.app);
    tunnel.app.end(message);
    return (await reply).toString();
  };

  it('engine client → engine server: CONNECT echoes, the server sees the headers', async () => {
    assert.equal(await echoThrough(ENGINE_POD, engineServer.port, ENGINE_SERVER, 'engine to engine'), 'engine to engine');
    const connect = await engineServer.probe.wait('connect');
    assert.equal(connect.headers.forwarded, 'for="127.0.0.1"');
    const peer = await engineServer.probe.wait('peer');
    assert.equal(peer.identity, CLIENT);
  });

  it('engine client → node:http2 server (agent/tunnel/h2/server.ts)', async () => {
    assert.equal(await echoThrough(NODE_POD, nodeServer.port, NODE_SERVER, 'engine to node'), 'engine to node');
    assert.ok(nodeServer.events.some((e) => e.type === 'tunnel-opened' && e.request.peerIdentity === CLIENT));
  });

  it('node:http2 pool (agent/tunnel/h2/client-pool.ts) → engine server', async () => {
    const pool = new HbonePool({ certificates: trust.certificates });
    try {
      const opened = await pool.open({ source: { identity: CLIENT, ip: '127.0.0.1' }, destination: { ip: ENGINE_POD, port: engineServer.port }, expectedIdentities: [ENGINE_SERVER], authority: { ip: ENGINE_POD, port: echoes.get(ENGINE_POD)!.port } });
      if (!opened.ok) assert.fail(opened.error.message);
      const reply = readAll(opened.value);
      opened.value.end('node to engine');
      assert.equal((await reply).toString(), 'node to engine');
    } finally {
      await pool.close(200);
    }
  });

  it('python3-h2 client → engine server: CONNECT echoes; :path/:scheme, extended CONNECT, GET and a wrong authority are refused', async () => {
    await requireTool(PYTHON, ['-c', 'import h2'], 'python3-h2');
    const pem = await writePem(dir, 'py', await certificateOf(trust, CLIENT));
    const { stdout } = await run(PYTHON, [H2_CLIENT, ENGINE_POD, String(engineServer.port), pem.cert, pem.key, pem.ca, String(echoes.get(ENGINE_POD)!.port)], { timeout: 30_000 });
    const results = JSON.parse(stdout) as Record<string, { status: number | null; reset: string | null; echo: string | null }>;
    assert.deepEqual(results.connect, { status: 200, reset: null, echo: 'hello from python-h2' });
    assert.deepEqual(results['connect-with-path'], { status: null, reset: 'PROTOCOL_ERROR', echo: null });
    assert.deepEqual(results['extended-connect'], { status: null, reset: 'PROTOCOL_ERROR', echo: null });
    assert.equal(results.get?.status, 400, JSON.stringify(results));
    assert.equal(results['authority-mismatch']?.status, 400);
    const fromPython = await engineServer.probe.wait('connect', (e) => e.headers.baggage === 'k8s.namespace.name=py');
    assert.equal(fromPython.headers.traceparent, `00-${'a'.repeat(32)}-${'b'.repeat(16)}-00`);
  });

  let goBinary: Promise<string> | undefined;
  const goPeer = (): Promise<string> => (goBinary ??= buildGoPeer(dir));

  it('Go client → engine server', { timeout: 240_000 }, async () => {
    const binary = await goPeer();
    const pem = await writePem(dir, 'go-client', await certificateOf(trust, CLIENT));
    const { stdout } = await run(binary, ['client', `${ENGINE_POD}:${engineServer.port}`, `${ENGINE_POD}:${echoes.get(ENGINE_POD)!.port}`, pem.cert, pem.key, pem.ca, ENGINE_SERVER, 'hello from go'], { timeout: 20_000 });
    assert.equal(stdout.trim(), 'status 200 proto HTTP/2.0 echo hello from go');
  });

  it('engine client → Go server, 100 concurrent 1 MiB echoes on one connection', { timeout: 240_000 }, async () => {
    const binary = await goPeer();
    const go = await startGoServer(binary, `${GO_POD}:0`, await writePem(dir, 'go-server', await certificateOf(trust, GO_SERVER)));
    children.push(go.child);
    const context = contextFor(await certificateOf(trust, CLIENT));
    const dialed = await dialEngine(client, GO_POD, go.port, context, [GO_SERVER]);
    if (!('conn' in dialed)) assert.fail(dialed.failed.message);
    const payload = Buffer.alloc(1024 * 1024, 7);
    const tunnels = await Promise.all(Array.from({ length: 100 }, () => openTunnel(client, pairs, dialed.conn, `${GO_POD}:${echoes.get(GO_POD)!.port}`)));
    const echoed = await Promise.all(
      tunnels.map((tunnel) => {
        assert.equal(tunnel.status, 200);
        const reply = readAll(tunnel.app, 60_000);
        tunnel.app.end(payload);
        return reply;
      }),
    );
    assert.ok(echoed.every((body) => body.equals(payload)));
  });
});

// The native HBONE engine's connections over their life: identities checked both ways, certificate
// rotation (new connections take the new context, an open one keeps its own), drain, idle close, and
// the per-peer limits (pending CONNECTs, connections per identity and per source address), each counted
// and reported once.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { WorkloadCertificateManager } from '../../agent/identity/certificate-manager.js';
import { spiffeId } from '../../agent/state/model.js';
import type { EngineEvent } from '../../agent/tunnel/engine/events.js';
import { EngineProbe, type EngineServer, SocketPairs, certificateOf, contextFor, dialEngine, handOver, openTunnel, startEngineServer } from '../fixtures/hbone/engine.js';
import { type TestEcho, type TestTrust, closeServer, listen, openTrust, readAll, startEcho } from '../fixtures/hbone/mesh.js';

const TD = 'cluster.local';
const CLIENT = spiffeId(TD, 'default', 'life-client');
const SERVER = spiffeId(TD, 'default', 'life-server');
const OTHER = spiffeId(TD, 'default', 'someone-else');
const POD = '127.0.0.70';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

describe('HBONE engine connection lifecycle', () => {
  let trust: TestTrust;
  let echo: TestEcho;
  let pairs: SocketPairs;
  const servers: EngineServer[] = [];
  const clients: EngineProbe[] = [];

  before(async () => {
    trust = await openTrust(TD, [CLIENT, SERVER, OTHER]);
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

  const server = async (engine: ConstructorParameters<typeof EngineProbe>[0] = {}, answer?: Parameters<typeof startEngineServer>[0]['answer']): Promise<EngineServer> => {
    const started = await startEngineServer({ trust, pods: new Map([[POD, SERVER]]), engine, ...(answer ? { answer } : {}) });
    servers.push(started);
    return started;
  };
  const client = (options: ConstructorParameters<typeof EngineProbe>[0] = {}): EngineProbe => {
    const probe = new EngineProbe(options);
    clients.push(probe);
    return probe;
  };
  const echoOnce = async (probe: EngineProbe, conn: Parameters<typeof openTunnel>[2], message: string): Promise<string> => {
    const tunnel = await openTunnel(probe, pairs, conn, `${POD}:${echo.port}`);
    assert.equal(tunnel.status, 200);
    const reply = readAll(tunnel.app);
    tunnel.app.end(message);
    return (await reply).toString();
  };

  it('a server presenting another identity than expected fails the connection, naming both', async () => {
    const s = await server();
    const c = client();
    const dialed = await dialEngine(c, POD, s.port, contextFor(await certificateOf(trust, CLIENT)), [OTHER]);
    assert.ok('failed' in dialed, 'connected to the wrong identity');
    assert.equal(dialed.failed.cause, 'identity');
    assert.match(dialed.failed.message, new RegExp(`presented ${SERVER}, not ${OTHER}`));
  });

  it("a client whose chain leads to another CA is refused in the handshake; it hears 'refused-by-server'", async () => {
    const s = await server();
    const foreign = await openTrust(TD, [CLIENT]);
    try {
      const c = client();
      const dialed = await dialEngine(c, POD, s.port, contextFor(await certificateOf(foreign, CLIENT)), [SERVER]);
      // The server's root is not the foreign client's either: either side may be the first to refuse.
      assert.ok('failed' in dialed, 'a client of another CA connected');
      assert.ok(['refused-by-server', 'handshake', 'untrusted'].includes(dialed.failed.cause), dialed.failed.cause);
      const refused = await s.probe.wait('connEnd', (e) => e.cause === 'untrusted' || e.cause === 'handshake');
      assert.match(refused.message, /certificate|alert|verif/i);
    } finally {
      await foreign.close();
    }
  });

  it('rotation: a new context serves new connections while an open one keeps its own', async () => {
    const s = await server();
    const c = client();
    let old: ReturnType<typeof contextFor> | undefined = contextFor(await certificateOf(trust, CLIENT));
    const first = await dialEngine(c, POD, s.port, old, [SERVER]);
    if (!('conn' in first)) assert.fail(first.failed.message);
    // The renewed certificate: a new key and serial from the same CA, as the manager hands out on renewal.
    const renewedManager = new WorkloadCertificateManager({ caClient: trust.ca.clientFor('node-a') });
    const renewed = await renewedManager.fetch(CLIENT);
    renewedManager.close();
    if (!renewed.ok) assert.fail(renewed.error.message);
    old = undefined;
    gc();
    const second = await dialEngine(c, POD, s.port, contextFor(renewed.value), [SERVER]);
    if (!('conn' in second)) assert.fail(second.failed.message);
    // In TLS 1.3 the client is connected once it has sent its certificate, before the server has judged it:
    // wait for the server's second peer event rather than read its events at once.
    const peerEvents = (): EngineEvent[] => s.probe.events.filter((e) => e.type === 'peer');
    await s.probe.wait('peer', () => peerEvents().length >= 2);
    const peers = peerEvents().slice(-2);
    assert.equal(peers.length, 2);
    assert.ok(peers[0]?.type === 'peer' && peers[1]?.type === 'peer' && !peers[0].chainDer[0]!.equals(peers[1].chainDer[0]!), 'both connections presented the same leaf');
    assert.equal(await echoOnce(c, first.conn, 'old context'), 'old context');
    assert.equal(await echoOnce(c, second.conn, 'new context'), 'new context');
  });

  it('drain: GOAWAY, a stream that ends in time ends cleanly, one still open at the deadline is reset, then drained', { timeout: 20_000 }, async () => {
    const s = await server();
    const c = client();
    const dialed = await dialEngine(c, POD, s.port, contextFor(await certificateOf(trust, CLIENT)), [SERVER]);
    if (!('conn' in dialed)) assert.fail(dialed.failed.message);
    const finishing = await openTunnel(c, pairs, dialed.conn, `${POD}:${echo.port}`);
    const lingering = await openTunnel(c, pairs, dialed.conn, `${POD}:${echo.port}`);
    const lingeringCut = new Promise<string>((resolve) => {
      lingering.app.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      lingering.app.on('end', () => resolve('a clean end (FIN)'));
    });
    const drained = s.probe.engine.drain(1500);
    await c.wait('goaway', (e) => e.conn === dialed.conn);
    const refusedAfter = await openTunnel(c, pairs, dialed.conn, `${POD}:${echo.port}`);
    assert.equal(refusedAfter.status, 0, 'a stream opened after GOAWAY was answered');
    const reply = readAll(finishing.app);
    finishing.app.end('still served while draining');
    assert.equal((await reply).toString(), 'still served while draining');
    assert.equal((await c.wait('streamEnd', (e) => e.stream === finishing.stream)).cause, 'done');
    await drained;
    const end = await s.probe.wait('connEnd', (e) => e.cause === 'drain');
    assert.match(end.message, /deadline/);
    assert.notEqual((await c.wait('streamEnd', (e) => e.stream === lingering.stream)).cause, 'done');
    assert.equal(await lingeringCut, 'ECONNRESET', 'a stream cut at the drain deadline must reach its pod as a reset');
    const late = await dialEngine(c, POD, s.port, contextFor(await certificateOf(trust, CLIENT)), [SERVER]);
    assert.ok('failed' in late, 'a drained engine took a new connection');
  });

  it('an idle connection closes after idleTimeoutMs', async () => {
    const s = await server();
    const c = client({ idleTimeoutMs: 600 });
    const dialed = await dialEngine(c, POD, s.port, contextFor(await certificateOf(trust, CLIENT)), [SERVER]);
    if (!('conn' in dialed)) assert.fail(dialed.failed.message);
    assert.equal(await echoOnce(c, dialed.conn, 'then idle'), 'then idle');
    const end = await c.wait('connEnd', (e) => e.conn === dialed.conn, 5000);
    assert.equal(end.cause, 'idle');
    assert.equal(c.engine.counters().idleClosed, 1);
  });

  it('maxPendingConnects: CONNECTs past the cap are refused (REFUSED_STREAM), counted, reported once', async () => {
    // The agent never answers: every CONNECT stays pending.
    const s = await server({ maxPendingConnects: 2 }, () => new Promise(() => undefined));
    const c = client();
    const dialed = await dialEngine(c, POD, s.port, contextFor(await certificateOf(trust, CLIENT)), [SERVER]);
    if (!('conn' in dialed)) assert.fail(dialed.failed.message);
    const tunnels = await Promise.all(Array.from({ length: 5 }, () => pairs.pair()));
    const streams = tunnels.map(({ plain }) => {
      const opened = handOver(plain, (fd) => c.engine.openStream(dialed.conn, `${POD}:${echo.port}`, {}, fd));
      if (!opened.ok) assert.fail(opened.error.message);
      return opened.value;
    });
    const refused = [];
    for (const stream of streams.slice(2)) refused.push(await c.wait('streamEnd', (e) => e.stream === stream));
    assert.deepEqual(refused.map((e) => [e.cause, e.code]), [['peer-reset', 7], ['peer-reset', 7], ['peer-reset', 7]]);
    assert.equal(s.probe.engine.counters().limitPendingConnects, 3);
    const limits = s.probe.events.filter((e) => e.type === 'limit');
    assert.equal(limits.length, 1);
    assert.ok(limits[0]?.type === 'limit' && limits[0].limit === 'maxPendingConnects' && limits[0].peer === CLIENT && /raise maxPendingConnects/.test(limits[0].hint));
    tunnels.forEach(({ app }) => app.destroy());
  });

  it('maxConnectionsPerIdentity: a second connection from one identity is refused, counted, reported once', async () => {
    const s = await server({ maxConnectionsPerIdentity: 1 });
    const c = client();
    const context = contextFor(await certificateOf(trust, CLIENT));
    const first = await dialEngine(c, POD, s.port, context, [SERVER]);
    assert.ok('conn' in first);
    for (let i = 0; i < 2; i++) {
      const extra = await dialEngine(c, POD, s.port, context, [SERVER]);
      // TLS 1.3: the client is through its handshake before the server counts it, so it may see it live first.
      if ('conn' in extra) await c.wait('connEnd', (e) => e.conn === extra.conn);
    }
    assert.equal(s.probe.engine.counters().limitConnectionsPerIdentity, 2);
    assert.equal(s.probe.events.filter((e) => e.type === 'limit').length, 1);
    assert.equal(await echoOnce(c, (first as { conn: Parameters<typeof openTunnel>[2] }).conn, 'the first still works'), 'the first still works');
  });

  it('maxConnectionsPerAddress: another identity from the same source address is refused too, counted, reported once', async () => {
    const s = await server({ maxConnectionsPerAddress: 1, maxConnectionsPerIdentity: 1024 });
    const c = client();
    const first = await dialEngine(c, POD, s.port, contextFor(await certificateOf(trust, CLIENT)), [SERVER]);
    assert.ok('conn' in first);
    // A node NATing many pods, or one attacker with many stolen identities: the address is what they share.
    const extra = await dialEngine(c, POD, s.port, contextFor(await certificateOf(trust, OTHER)), [SERVER]);
    if ('conn' in extra) await c.wait('connEnd', (e) => e.conn === extra.conn);
    assert.equal(s.probe.engine.counters().limitConnectionsPerAddress, 1);
    const limits = s.probe.events.filter((e) => e.type === 'limit');
    assert.deepEqual(limits.map((e) => e.type === 'limit' && e.limit), ['maxConnectionsPerAddress']);
    assert.equal(await echoOnce(c, (first as { conn: Parameters<typeof openTunnel>[2] }).conn, 'the first still works'), 'the first still works');
  });
  it("a stream cut by its connection's end resets the pod's socket: a download's reader sees the cut, not a clean end", async () => {
    // A pod serving an endless download, reached through a tunnel whose server side then dies.
    const chunk = Buffer.alloc(64 * 1024, 'd');
    const source = createServer((socket) => {
      socket.on('error', () => undefined);
      const pump = (): void => {
        while (socket.writable && socket.write(chunk));
      };
      socket.on('drain', pump);
      pump();
    });
    const sourcePort = await listen(source, POD);
    try {
      const s = await startEngineServer({ trust, pods: new Map([[POD, SERVER]]) });
      const c = client();
      const dialed = await dialEngine(c, POD, s.port, contextFor(await certificateOf(trust, CLIENT)), [SERVER]);
      if (!('conn' in dialed)) assert.fail(dialed.failed.message);
      const tunnel = await openTunnel(c, pairs, dialed.conn, `${POD}:${sourcePort}`);
      assert.equal(tunnel.status, 200);
      await once(tunnel.app, 'data');
      const ended = new Promise<string>((resolve) => {
        tunnel.app.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
        tunnel.app.on('end', () => resolve('a clean end (FIN)'));
      });
      await s.close();
      assert.equal(await ended, 'ECONNRESET', 'the reader of a cut download must see a reset');
      assert.equal((await c.wait('streamEnd', (e) => e.stream === tunnel.stream)).cause, 'conn-closed');
    } finally {
      await closeServer(source);
    }
  });
});

// An inbound HBONE tunnel's flow, through the real server and pool on loopback: the handler returns one
// ConnectionFlow, which the server opens at the 200 (counted, listed live) and finishes at the
// stream's end with the engine's byte counts; a live-connection close (a policy re-check, a drain)
// cuts the client's stream.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Duplex } from 'node:stream';
import pino from 'pino';
import { spiffeId } from '../../agent/state/model.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { type ConnectionDescription, ConnectionTelemetry } from '../../agent/telemetry/connections.js';
import { MeshMetrics } from '../../agent/telemetry/metrics.js';
import { ConnectionFlows } from '../../agent/tunnel/connection-flow.js';
import { HbonePool } from '../../agent/tunnel/hbone/pool.js';
import { LiveConnections } from '../../agent/tunnel/live-connections.js';
import { type TestHboneServer, type TestTrust, connectUpstream, openTrust, readAll, startEcho, startHboneServer } from '../fixtures/hbone/mesh.js';
import { parsePrometheusText, samplesOf } from './helpers/prometheus-text.js';

const TD = 'cluster.local';
const CLIENT = spiffeId(TD, 'default', 'client');
const SERVER = spiffeId(TD, 'default', 'server');
const SERVER_IP = '127.0.0.2';
const silent = pino({ level: 'silent' });

async function waitFor(check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('inbound HBONE flows', () => {
  let trust: TestTrust;
  let hbone: TestHboneServer;
  let pool: HbonePool;
  let echo: Awaited<ReturnType<typeof startEcho>>;
  const metrics = new MeshMetrics('test');
  const live = new LiveConnections(new WorkloadStore(), silent);
  const flows = new ConnectionFlows(new ConnectionTelemetry(metrics, silent), live);

  const counted = async (name: string): Promise<number> => samplesOf(parsePrometheusText(await metrics.registry.metrics()), name, { reporter: 'destination' }).reduce((sum, s) => sum + s.value, 0);

  before(async () => {
    trust = await openTrust(TD, [CLIENT, SERVER]);
    echo = await startEcho(SERVER_IP);
    hbone = await startHboneServer(trust, new Map([[SERVER_IP, SERVER]]), {
      handler: async (request) => {
        const decision = await connectUpstream(request.authority.ip, request.authority.port);
        if (decision.kind === 'refused') return decision;
        const addr = `${request.authority.ip}:${request.authority.port}`;
        const description: ConnectionDescription = { direction: 'inbound', src: { addr: `${request.peerAddress.ip}:${request.peerAddress.port}`, identity: request.peerIdentity }, dst: { addr, hboneAddr: addr, identity: SERVER }, securityPolicy: 'mutual_tls' };
        return { ...decision, flow: flows.flow([description], { transport: 'hbone' }) };
      },
    });
    pool = new HbonePool({ certificates: trust.certificates });
  });
  after(async () => {
    await pool.close(500);
    await hbone.close();
    await echo.close();
    live.close();
    await trust.close();
  });

  const open = async (): Promise<Duplex> => {
    const tunnel = await pool.open({ source: { identity: CLIENT, ip: '127.0.0.1' }, destination: { ip: SERVER_IP, port: hbone.port }, expectedIdentities: [SERVER], authority: { ip: SERVER_IP, port: echo.port } });
    if (!tunnel.ok) assert.fail(tunnel.error.message);
    return tunnel.value;
  };

  it('is listed while it is carried, and counted once at its end with the bytes the engine moved', async () => {
    const stream = await open();
    await waitFor(() => live.size === 1, 'the tunnel to be listed live');
    assert.deepEqual(live.list().map((c) => [c.direction, c.transport, c.srcIdentity, c.dstIdentity]), [['inbound', 'hbone', CLIENT, SERVER]]);
    const reply = readAll(stream);
    stream.end('hello, flow');
    assert.equal((await reply).toString(), 'hello, flow');
    await waitFor(() => live.size === 0, 'the tunnel to leave the live list');
    assert.equal(await counted('istio_tcp_connections_opened_total'), 1);
    assert.equal(await counted('istio_tcp_connections_closed_total'), 1);
    assert.equal(await counted('istio_tcp_received_bytes_total'), 'hello, flow'.length, 'bytes from the client, as the engine counted them');
    assert.equal(await counted('istio_tcp_sent_bytes_total'), 'hello, flow'.length, 'bytes back to the client');
  });

  it('is cut by a live-connection close: the client\'s stream ends and the flow is finished', async () => {
    const stream = await open();
    await waitFor(() => live.size === 1, 'the tunnel to be listed live');
    assert.equal((await new Promise<Buffer>((resolve) => {
      stream.once('data', resolve);
      stream.write('ping');
    })).toString(), 'ping');
    // The pool's end of its socket pair allows half-open: the engine's reset shows as its end.
    const ended = new Promise<void>((resolve) => {
      stream.once('end', () => resolve());
      stream.once('close', () => resolve());
    });
    stream.on('error', () => undefined);
    live.closeAll('denied by a new policy');
    await Promise.race([ended, sleep(5_000).then(() => assert.fail('the client\'s stream was not cut within 5 s'))]);
    await waitFor(() => live.size === 0, 'the tunnel to leave the live list');
    assert.equal(await counted('istio_tcp_connections_closed_total'), 2);
  });
});

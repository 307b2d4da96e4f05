// Double HBONE through `ambit gateway`, in one process on loopback: a client pod on network net1 dials a
// Service whose only endpoint is on net2; the client agent's plan and opener tunnel to net2's east-west
// gateway, which authorizes the client and relays the inner tunnel to the destination's HBONE server.
// The destination must see the source pod's identity (mTLS end to end), the gateway's relay must carry
// only TLS records, and a client the gateway's AuthorizationPolicy does not allow must be refused there.

import assert from 'node:assert/strict';
import { type Server, type Socket, connect, createServer } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { HbonePool } from '../../agent/tunnel/hbone/pool.js';
import { OutboundOpener } from '../../agent/tunnel/outbound-open.js';
import { type PlanContext, planOutbound } from '../../agent/tunnel/outbound-plan.js';
import { CLIENT, CLIENT_IP, type DoubleHboneMesh, GATEWAY, GATEWAY_IP, HOSTNAME, INTRUDER, INTRUDER_IP, REVIEWS, REVIEWS_IP, VIP, startDoubleHboneMesh } from '../fixtures/hbone/double-hbone-mesh.js';
import { closeServer, listen } from '../fixtures/hbone/mesh.js';
import type { MeshMetrics } from '../../agent/telemetry/metrics.js';

const CONTEXT: PlanContext = { node: 'a', clusterId: 'cluster1', pick: () => 0 };
const MESSAGE = 'a request only the reviews pod may read';

/** A TCP relay that records every byte each way: the wire between the gateway and the destination node. */
async function startTap(): Promise<{ port: number; toDestination: Buffer[]; toGateway: Buffer[]; server: Server; targetPort: { value: number } }> {
  const toDestination: Buffer[] = [];
  const toGateway: Buffer[] = [];
  const targetPort = { value: 0 };
  const server = createServer({ allowHalfOpen: true }, (gateway) => {
    const destination = connect({ host: REVIEWS_IP, port: targetPort.value, allowHalfOpen: true });
    const cut = (): void => {
      gateway.destroy();
      destination.destroy();
    };
    gateway.on('error', cut);
    destination.on('error', cut);
    gateway.on('data', (chunk: Buffer) => void (toDestination.push(chunk), destination.write(chunk)));
    destination.on('data', (chunk: Buffer) => void (toGateway.push(chunk), gateway.write(chunk)));
    gateway.on('end', () => destination.end());
    destination.on('end', () => gateway.end());
  });
  return { port: await listen(server, '127.0.0.1'), toDestination, toGateway, server, targetPort };
}

/** TLS records end to end: content types 20-23 (handshake, alert, CCS, data), legacy version 3.x. */
function tlsRecordTypes(bytes: Buffer): number[] {
  const types: number[] = [];
  for (let at = 0; at < bytes.length; ) {
    assert.ok(at + 5 <= bytes.length, `a truncated TLS record header at ${at} of ${bytes.length}`);
    const type = bytes[at]!;
    assert.ok(type >= 20 && type <= 23 && bytes[at + 1] === 3, `byte ${at} starts no TLS record: ${bytes.subarray(at, at + 8).toString('hex')}`);
    types.push(type);
    at += 5 + bytes.readUInt16BE(at + 3);
  }
  return types;
}

/** The samples of `name` whose labels include `labels`, as the registry holds them. */
async function samples(metrics: MeshMetrics, name: string, labels: Readonly<Record<string, string>>): Promise<{ labels: Partial<Record<string, string | number>>; value: number }[]> {
  const metric = metrics.registry.getSingleMetric(name);
  assert.ok(metric, `no metric ${name}`);
  const { values } = await metric.get();
  return values.filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want));
}

function exchange(stream: Duplex, message: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => resolve(Buffer.concat(chunks).toString()));
    stream.once('error', reject);
    stream.end(message);
  });
}

describe('double HBONE through ambit gateway', () => {
  let mesh: DoubleHboneMesh;
  let pool: HbonePool;
  let tap: Awaited<ReturnType<typeof startTap>>;

  before(async () => {
    tap = await startTap();
    // The gateway reaches the endpoint's 15008 through the tap, which records the wire.
    mesh = await startDoubleHboneMesh((destinationPort) => {
      tap.targetPort.value = destinationPort;
      return connect({ host: '127.0.0.1', port: tap.port, allowHalfOpen: true }) as Socket;
    });
    pool = new HbonePool({ certificates: mesh.trust.certificates });
  });

  after(async () => {
    await pool?.close(100);
    await mesh?.close();
    if (tap) await closeServer(tap.server);
  });

  it('the destination sees the source pod, and the gateway relays only TLS records', async () => {
    const { snapshot, seenByDestination, gatewayEvents, dialled, echo } = mesh;
    const client = snapshot.workloadsByIp.get(CLIENT_IP)!;
    const plan = planOutbound(snapshot, { workload: client, ip: CLIENT_IP, port: 40000 }, { ip: VIP, port: 9080 }, CONTEXT);
    assert.equal(plan.transport, 'double-hbone', JSON.stringify(plan.transport === 'refused' ? plan.reason : plan.transport));
    if (plan.transport !== 'double-hbone') return;
    assert.equal(plan.authority, `${HOSTNAME}:9080`);
    assert.deepEqual(plan.request.outer.expectedIdentities, [GATEWAY]);
    assert.deepEqual(plan.request.inner.expectedIdentities, [REVIEWS]);
    assert.deepEqual(
      plan.telemetry.map((d) => [d.dst.addr, d.dst.hboneAddr, d.dst.identity]),
      [[`${GATEWAY_IP}:${plan.gateway.address.port}`, `${HOSTNAME}:9080`, REVIEWS]],
    );

    const opened = await new OutboundOpener({ hbone: pool, connectAsClient: async () => 'unused: no plain connection here' }).open(plan);
    assert.ok(opened.ok, opened.ok ? '' : opened.reason);
    const tunnelClosed = mesh.nextGatewayEvent('tunnel-closed');
    assert.equal(await exchange(opened.stream, MESSAGE), MESSAGE);
    await tunnelClosed;

    // The destination: the source pod's proven identity, the Service mapped to the pod's port, the client's network.
    assert.equal(seenByDestination.length, 1);
    const inner = seenByDestination[0]!;
    assert.equal(inner.peerIdentity, CLIENT);
    assert.deepEqual(inner.service, { hostname: HOSTNAME, port: 9080 });
    assert.deepEqual(inner.authority, { ip: REVIEWS_IP, port: echo.port });
    assert.equal(inner.headers.originNetwork, 'net1');
    // The gateway: the client's identity on the outer tunnel, forwarded to the endpoint's HBONE port.
    const outer = gatewayEvents.find((e) => e.type === 'tunnel-opened');
    assert.ok(outer && outer.type === 'tunnel-opened');
    assert.equal(outer.request.peerIdentity, CLIENT);
    assert.deepEqual(dialled, [`${REVIEWS_IP}:15008`]);
    // The wire behind the gateway: TLS records only, both ways, application data among them, never the message.
    const sent = Buffer.concat(tap.toDestination);
    const received = Buffer.concat(tap.toGateway);
    assert.ok(tlsRecordTypes(sent).includes(23) && tlsRecordTypes(received).includes(23), 'application data travelled as TLS records');
    assert.equal(sent[0], 22, 'the first byte the destination got is a TLS handshake record (the ClientHello)');
    for (const bytes of [sent, received]) assert.equal(bytes.indexOf(MESSAGE), -1, 'the message crossed the gateway in the clear');

    // The gateway's metrics: one tunnel opened and closed, reported as a gateway (source), from the
    // client's proven identity to the Service's endpoint, with the bytes the engine moved each way. The
    // client's workload is unknown: its TCP peer here is not the client pod's address.
    const tunnel = {
      reporter: 'source',
      source_principal: CLIENT,
      source_workload: 'unknown',
      destination_service: HOSTNAME,
      destination_workload: 'reviews',
      destination_principal: REVIEWS,
      destination_cluster: 'cluster2',
      request_protocol: 'tcp',
      response_flags: '-',
      connection_security_policy: 'mutual_tls',
    };
    const value = async (name: string): Promise<number[]> => (await samples(mesh.gatewayMetrics, name, tunnel)).map((s) => s.value);
    assert.deepEqual(await value('istio_tcp_connections_opened_total'), [1]);
    assert.deepEqual(await value('istio_tcp_connections_closed_total'), [1]);
    assert.deepEqual(await value('istio_tcp_received_bytes_total'), [sent.length], 'received: what the client sent, as the destination got it');
    assert.deepEqual(await value('istio_tcp_sent_bytes_total'), [received.length], 'sent: what the destination answered');
  });

  it('a client the gateway does not authorize is refused at the gateway (401), before any endpoint', async () => {
    const { snapshot, seenByDestination, gatewayEvents, dialled } = mesh;
    const before = { destination: seenByDestination.length, dialled: dialled.length };
    const intruder = snapshot.workloadsByIp.get(INTRUDER_IP)!;
    const plan = planOutbound(snapshot, { workload: intruder, ip: INTRUDER_IP, port: 40001 }, { ip: VIP, port: 9080 }, CONTEXT);
    assert.equal(plan.transport, 'double-hbone');
    if (plan.transport !== 'double-hbone') return;
    const opened = await new OutboundOpener({ hbone: pool, connectAsClient: async () => 'unused' }).open(plan);
    assert.equal(opened.ok, false);
    if (opened.ok) return;
    assert.equal(opened.flag, 'DENY');
    assert.match(opened.reason, /^the east-west gateway: CONNECT reviews\.shop\.svc\.cluster\.local:9080 via 127\.0\.0\.50:\d+ was answered 401/);
    const refusal = gatewayEvents.find((e) => e.type === 'stream-refused');
    assert.ok(refusal && refusal.type === 'stream-refused');
    assert.equal(refusal.peerIdentity, INTRUDER);
    assert.match(refusal.reason, /no ALLOW AuthorizationPolicy for istio-system\/eastwest matches/);
    // Counted as a failed connection with ztunnel's DENY flag, never as opened.
    const refused = { reporter: 'source', source_principal: INTRUDER, destination_service: HOSTNAME, connection_security_policy: 'mutual_tls' };
    assert.deepEqual((await samples(mesh.gatewayMetrics, 'istio_tcp_connections_failed_total', refused)).map((s) => [s.labels['response_flags'], s.value]), [['DENY', 1]]);
    assert.deepEqual(await samples(mesh.gatewayMetrics, 'istio_tcp_connections_opened_total', refused), []);
    assert.deepEqual({ destination: seenByDestination.length, dialled: dialled.length }, before);
  });

  it('the gateway forwards only tunnels that name a Service: an address authority is answered 400', async () => {
    const { dialled, gatewayPort } = mesh;
    const before = dialled.length;
    const opened = await pool.open({ source: { identity: CLIENT, ip: CLIENT_IP }, destination: { ip: GATEWAY_IP, port: gatewayPort }, expectedIdentities: [GATEWAY], authority: { ip: GATEWAY_IP, port: 9080 } });
    assert.equal(opened.ok, false);
    if (opened.ok) return;
    assert.equal(opened.error.status, 400);
    assert.equal(dialled.length, before, 'no endpoint was dialled');
  });
});

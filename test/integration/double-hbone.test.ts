// Double HBONE through `ambit gateway`, in one process on loopback: a client pod on network net1 dials a
// Service whose only endpoint is on net2; the client agent's plan and opener tunnel to net2's east-west
// gateway, which authorizes the client and relays the inner tunnel to the destination's HBONE server.
// The destination must see the source pod's identity (mTLS end to end), the gateway's relay must carry
// only TLS records, and a client the gateway's AuthorizationPolicy does not allow must be refused there.

import assert from 'node:assert/strict';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { formatDiagnostic } from '../../agent/config/diagnostics.js';
import { parseConfigFile } from '../../agent/config/parse-file.js';
import { EastWestGateway } from '../../agent/gateway/east-west-gateway.js';
import { buildSnapshot } from '../../agent/state/build.js';
import { type MeshSnapshot, type Workload, spiffeId } from '../../agent/state/model.js';
import { WorkloadStore } from '../../agent/state/store.js';
import type { HboneServerEvent } from '../../agent/tunnel/hbone/events.js';
import { HbonePool } from '../../agent/tunnel/hbone/pool.js';
import { type HboneInboundRequest, HboneServer } from '../../agent/tunnel/hbone/server.js';
import { resolveServicePort } from '../../agent/tunnel/inbound-hbone.js';
import { OutboundOpener } from '../../agent/tunnel/outbound-open.js';
import { type PlanContext, planOutbound } from '../../agent/tunnel/outbound-plan.js';
import { type TestEcho, type TestTrust, closeServer, connectUpstream, listen, openTrust, startEcho } from '../fixtures/hbone/mesh.js';

const TD = 'cluster.local';
const CLIENT = spiffeId(TD, 'shop', 'client');
const INTRUDER = spiffeId(TD, 'shop', 'intruder');
const REVIEWS = spiffeId(TD, 'shop', 'reviews');
const GATEWAY = spiffeId(TD, 'istio-system', 'eastwest');
const REVIEWS_IP = '127.0.0.20';
const GATEWAY_IP = '127.0.0.50';
const VIP = '10.96.0.20';
const HOSTNAME = 'reviews.shop.svc.cluster.local';
const CONTEXT: PlanContext = { node: 'a', clusterId: 'cluster1', pick: () => 0 };
const MESSAGE = 'a request only the reviews pod may read';

/** The mesh as both networks' agents see it; the gateway's AuthorizationPolicy lets only shop/client through. */
function meshSnapshot(appPort: number, gatewayPort: number): MeshSnapshot {
  const pod = (ns: string, name: string, node: string, ip: string, labels: string) => `---
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: ${ns}, labels: {${labels}}}
spec: {nodeName: ${node}, serviceAccountName: ${name}, containers: [{name: c, ports: [{containerPort: ${appPort}}]}]}
status: {podIP: ${ip}}
`;
  const parsed = parseConfigFile(
    `---
apiVersion: v1
kind: Node
metadata: {name: a}
status: {addresses: [{type: InternalIP, address: 172.31.0.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: b}
status: {addresses: [{type: InternalIP, address: 172.31.0.2}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: istio-system}
${pod('shop', 'client', 'a', '127.0.0.10', 'app: client')}${pod('shop', 'intruder', 'a', '127.0.0.11', 'app: intruder')}${pod('shop', 'reviews', 'b', REVIEWS_IP, 'app: reviews')}${pod('istio-system', 'eastwest', 'b', GATEWAY_IP, 'app: eastwest')}---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {clusterIP: ${VIP}, selector: {app: reviews}, ports: [{name: tcp, port: 9080, targetPort: ${appPort}}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: eastwest-allow, namespace: istio-system}
spec:
  selector: {matchLabels: {app: eastwest}}
  rules:
  - from: [{source: {principals: ['${TD}/ns/shop/sa/client']}}]
`,
    'double-hbone.yaml',
  );
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic), []);
  const built = buildSnapshot(parsed.objects, { version: 1, trustDomain: TD, clusterDomain: 'cluster.local' });
  // The client's side is net1; reviews and the gateway are on net2, which the gateway at GATEWAY_IP reaches.
  const placed = (w: Workload): Workload =>
    w.namespace === 'shop' && (w.name === 'client' || w.name === 'intruder')
      ? { ...w, network: 'net1' }
      : { ...w, network: 'net2', networkGateway: { destination: { address: GATEWAY_IP }, hboneMtlsPort: gatewayPort } };
  const workloads = new Map([...built.workloads].map(([key, w]) => [key, placed(w)]));
  return { ...built, workloads, workloadsByIp: new Map([...built.workloadsByIp].map(([ip, w]) => [ip, workloads.get(w.key)!])) };
}

/** A TCP relay that records every byte each way: the wire between the gateway and the destination node. */
async function startTap(targetPort: number): Promise<{ port: number; toDestination: Buffer[]; toGateway: Buffer[]; server: Server }> {
  const toDestination: Buffer[] = [];
  const toGateway: Buffer[] = [];
  const server = createServer({ allowHalfOpen: true }, (gateway) => {
    const destination = connect({ host: REVIEWS_IP, port: targetPort, allowHalfOpen: true });
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
  return { port: await listen(server, '127.0.0.1'), toDestination, toGateway, server };
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
  let trust: TestTrust;
  let echo: TestEcho;
  let destination: HboneServer;
  let gateway: EastWestGateway;
  let pool: HbonePool;
  let tap: Awaited<ReturnType<typeof startTap>>;
  let snapshot: MeshSnapshot;
  const store = new WorkloadStore();
  const seenByDestination: HboneInboundRequest[] = [];
  const gatewayEvents: HboneServerEvent[] = [];
  const dialled: string[] = [];

  before(async () => {
    trust = await openTrust(TD, [CLIENT, INTRUDER, REVIEWS, GATEWAY]);
    echo = await startEcho(REVIEWS_IP);
    // The destination node's HBONE server, resolving a Service authority as the node agent does.
    destination = new HboneServer({
      certificates: trust.certificates,
      identityForAddress: (ip) => (ip === REVIEWS_IP ? REVIEWS : undefined),
      resolveService: (service, podIp) => {
        const port = resolveServicePort(store.current, service, podIp);
        return typeof port === 'string' ? port : { ip: podIp, port };
      },
      handler: (request) => {
        seenByDestination.push(request);
        return connectUpstream(request.authority.ip, request.authority.port);
      },
    });
    const { port: destinationPort } = await destination.listen(0, REVIEWS_IP);
    tap = await startTap(destinationPort);
    gateway = new EastWestGateway({
      store,
      certificates: trust.certificates,
      identity: GATEWAY,
      workloadKey: 'istio-system/eastwest',
      // The endpoint's 15008, reached here through the tap that records the wire.
      dialEndpoint: (endpoint) => {
        dialled.push(`${endpoint.ip}:${endpoint.port}`);
        return connect({ host: '127.0.0.1', port: tap.port, allowHalfOpen: true }) as Socket;
      },
      onEvent: (event) => gatewayEvents.push(event),
    });
    const { port: gatewayPort } = (await gateway.listen(0, GATEWAY_IP)) as AddressInfo;
    snapshot = meshSnapshot(echo.port, gatewayPort);
    store.replace(snapshot);
    pool = new HbonePool({ certificates: trust.certificates });
  });

  after(async () => {
    await pool?.close(100);
    await gateway?.close(100);
    await destination?.close(100);
    if (tap) await closeServer(tap.server);
    await echo?.close();
    await trust?.close();
  });

  it('the destination sees the source pod, and the gateway relays only TLS records', async () => {
    const client = snapshot.workloadsByIp.get('127.0.0.10')!;
    const plan = planOutbound(snapshot, { workload: client, ip: '127.0.0.10', port: 40000 }, { ip: VIP, port: 9080 }, CONTEXT);
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
    assert.equal(await exchange(opened.stream, MESSAGE), MESSAGE);

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
  });

  it('a client the gateway does not authorize is refused at the gateway (401), before any endpoint', async () => {
    const before = { destination: seenByDestination.length, dialled: dialled.length };
    const intruder = snapshot.workloadsByIp.get('127.0.0.11')!;
    const plan = planOutbound(snapshot, { workload: intruder, ip: '127.0.0.11', port: 40001 }, { ip: VIP, port: 9080 }, CONTEXT);
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
    assert.deepEqual({ destination: seenByDestination.length, dialled: dialled.length }, before);
  });
});

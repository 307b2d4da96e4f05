// Two node agents' data paths in this one process, on loopback, built from the agent's own classes: on
// node-a the outbound proxy (15001's code) with its HBONE pool, on node-b the HBONE server with the
// inbound handler, both with real certificates from the embedded CA, real telemetry and live-connection
// tracking. Pods are 127.0.x.y addresses; the server pod runs an echo and a sink app.

import { mkdtemp, rm } from 'node:fs/promises';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfigFile } from '../../agent/config/load.js';
import { WorkloadCertificateManager } from '../../agent/identity/certificate-manager.js';
import { EmbeddedCa } from '../../agent/identity/embedded-ca.js';
import { enrolledIdentitiesOnNode } from '../../agent/identity/node-authorization.js';
import { buildSnapshot } from '../../agent/state/build.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { ConnectionTelemetry } from '../../agent/telemetry/connections.js';
import { createLogger } from '../../agent/telemetry/log.js';
import { MeshMetrics } from '../../agent/telemetry/metrics.js';
import type { Address } from '../../agent/tunnel/destination.js';
import { HbonePool } from '../../agent/tunnel/hbone/pool.js';
import { type TcpDialer, defaultTcpDialer } from '../../agent/tunnel/hbone/pool.js';
import { HboneServer } from '../../agent/tunnel/hbone/server.js';
import { InboundHbone } from '../../agent/tunnel/inbound-hbone.js';
import { LiveConnections } from '../../agent/tunnel/live-connections.js';
import { OutboundProxy } from '../../agent/tunnel/outbound.js';

const TRUST_DOMAIN = 'cluster.local';
/** The client pod (node-a), the server pod (node-b), and an address outside the mesh (passthrough). */
export const CLIENT_IP = '127.0.77.1';
export const SERVER_IP = '127.0.77.2';
export const OUTSIDE_IP = '127.0.77.3';

const MESH_YAML = `
apiVersion: v1
kind: Namespace
metadata: {name: bench, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: bench, labels: {app: client}}
spec: {nodeName: node-a, serviceAccountName: client, containers: [{name: app, command: [load]}]}
status: {podIP: ${CLIENT_IP}}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: bench, labels: {app: server}}
spec: {nodeName: node-b, serviceAccountName: server, containers: [{name: app, command: [echo]}]}
status: {podIP: ${SERVER_IP}}
`;

/** An app on a pod address: the echo answers every byte, the sink reads and calls back at the end. */
export interface App {
  readonly address: Address;
  readonly server: Server;
}

/** How the client reaches an app: straight, through node-a's relay only, or through both agents over HBONE. */
export type Path = 'direct' | 'relay' | 'hbone';

export interface BenchMesh {
  /** Where a client connection for `path` to `app` must go; the outbound proxy is told the app's address. */
  dial(path: Path, app: App): Socket;
  readonly echo: App;
  readonly echoOutside: App;
  /** Called with the bytes a sink connection read, when its client ends it. */
  readonly sink: App;
  readonly sinkOutside: App;
  onSinkEnd: (bytes: number) => void;
  close(): Promise<void>;
}

function listen(server: Server, host: string): Promise<Address> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve({ ip: host, port: (server.address() as AddressInfo).port }));
  });
}

async function echoApp(host: string): Promise<App> {
  // As bench/lib/echo-server.ts: each chunk written back as it arrives, no Nagle delay.
  const server = createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
    socket.on('data', (chunk: Buffer) => socket.write(chunk));
    socket.on('end', () => socket.end());
    socket.on('error', () => socket.destroy());
  });
  return { address: await listen(server, host), server };
}

async function sinkApp(host: string, mesh: { onSinkEnd: (bytes: number) => void }): Promise<App> {
  const server = createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
    let bytes = 0;
    // One byte first: the client starts its clock once the whole path (tunnel included) is up.
    socket.write('R');
    socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
    socket.on('end', () => {
      mesh.onSinkEnd(bytes);
      socket.end();
    });
    socket.on('error', () => socket.destroy());
  });
  return { address: await listen(server, host), server };
}

/** A connection from `sourceIp` (any 127/8 address is local), as the agents' transparent connect does. */
function connectFrom(sourceIp: string, destination: Address): Promise<Socket | string> {
  return new Promise((resolve) => {
    const socket = connect({ host: destination.ip, port: destination.port, localAddress: sourceIp, allowHalfOpen: true, noDelay: true });
    socket.once('connect', () => resolve(socket));
    socket.once('error', (err) => resolve(`connecting to ${destination.ip}:${destination.port} from ${sourceIp} failed: ${err.message}`));
  });
}

/** Builds the two agents' data paths and the apps; `close()` undoes all of it. */
export async function startBenchMesh(): Promise<BenchMesh> {
  const parsed = parseConfigFile(MESH_YAML, 'hbone-relay-mesh.yaml');
  const errors = parsed.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length > 0) throw new Error(`the bench's mesh YAML does not parse: ${JSON.stringify(errors)}`);
  const snapshot = buildSnapshot(parsed.objects, { version: 1, trustDomain: TRUST_DOMAIN, clusterDomain: 'cluster.local' });
  const store = new WorkloadStore();
  store.replace(snapshot);
  const log = createLogger('warn', { component: 'hbone-relay-bench' });

  const stateDir = await mkdtemp(join(tmpdir(), 'ambit-hbone-relay-bench-'));
  const ca = await EmbeddedCa.open({ stateDir, trustDomain: TRUST_DOMAIN, identitiesOnNode: (node) => enrolledIdentitiesOnNode(store.current, node) });
  if (!ca.ok) throw new Error(`the bench's CA: ${ca.error.message}`);
  const certificatesA = new WorkloadCertificateManager({ caClient: ca.value.clientFor('node-a') });
  const certificatesB = new WorkloadCertificateManager({ caClient: ca.value.clientFor('node-b') });

  const mesh = { onSinkEnd: (_bytes: number): void => undefined };
  const [echo, echoOutside, sink, sinkOutside] = await Promise.all([echoApp(SERVER_IP), echoApp(OUTSIDE_IP), sinkApp(SERVER_IP, mesh), sinkApp(OUTSIDE_IP, mesh)]);

  // node-b: the HBONE server on the server pod's address, an ephemeral port instead of 15008.
  const liveB = new LiveConnections(store, log);
  const telemetryB = new ConnectionTelemetry(new MeshMetrics('bench'), log, { store, clusterId: 'Kubernetes' });
  const inbound = new InboundHbone({ node: 'node-b', store, telemetry: telemetryB, live: liveB, connectAsClient: connectFrom });
  const hbone = new HboneServer({
    certificates: certificatesB,
    identityForAddress: (ip) => {
      const workload = store.current?.workloadsByIp.get(ip);
      return workload && workload.node === 'node-b' && workload.enrollment.enrolled ? workload.identity : undefined;
    },
    handler: inbound.handler,
    log,
  });
  const hbonePort = (await hbone.listen(0, SERVER_IP)).port;

  // node-a: the outbound proxy; its pool dials 15008, which the dialer maps to the server's port.
  const dialTcp: TcpDialer = (target, localAddress) => defaultTcpDialer({ ...target, port: hbonePort }, localAddress);
  const pool = new HbonePool({ certificates: certificatesA, dialTcp, log });
  const liveA = new LiveConnections(store, log);
  const telemetryA = new ConnectionTelemetry(new MeshMetrics('bench'), log, { store, clusterId: 'Kubernetes' });
  let nextDestination: Address | undefined;
  const outbound = new OutboundProxy({
    node: 'node-a',
    store,
    telemetry: telemetryA,
    live: liveA,
    log,
    hbone: pool,
    clusterId: 'Kubernetes',
    // eBPF would know where the client was going; the bench says it just before each connection.
    originalDestination: () => nextDestination,
    connectAsClient: connectFrom,
  });
  const outboundAddress = await listen(outbound.server, '127.0.0.1');

  return {
    echo,
    echoOutside,
    sink,
    sinkOutside,
    set onSinkEnd(callback: (bytes: number) => void) {
      mesh.onSinkEnd = callback;
    },
    get onSinkEnd() {
      return mesh.onSinkEnd;
    },
    dial(path, app) {
      if (path === 'direct') return connect({ host: app.address.ip, port: app.address.port, localAddress: CLIENT_IP, noDelay: true });
      nextDestination = app.address;
      return connect({ host: outboundAddress.ip, port: outboundAddress.port, localAddress: CLIENT_IP, noDelay: true });
    },
    async close() {
      await new Promise<void>((resolve) => outbound.server.close(() => resolve()));
      await pool.close(200);
      await hbone.close(200);
      for (const app of [echo, echoOutside, sink, sinkOutside]) app.server.close();
      liveA.close();
      liveB.close();
      telemetryA.close();
      telemetryB.close();
      certificatesA.close();
      certificatesB.close();
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}

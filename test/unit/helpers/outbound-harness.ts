// The agent's outbound side in-process, for tests of where a pod's connection goes: the outbound
// listener (with the L7 proxy for HTTP ports) over a snapshot built from YAML, its client pod at
// 10.1.1.1 on node `a`, a real client socket handed over as eBPF would hand it, and upstream connections
// made from loopback (the pod's address is not on this machine).

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, type Server, type Socket, connect, createServer, isIP } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { formatDiagnostic } from '../../../agent/config/diagnostics.js';
import { parseConfigFile } from '../../../agent/config/parse-file.js';
import type { HostResolver } from '../../../agent/dns/host-resolver.js';
import { OutboundHttpProxy } from '../../../agent/l7/proxy/outbound-http.js';
import type { CompletedRequest } from '../../../agent/l7/proxy/request-record.js';
import { buildSnapshot } from '../../../agent/state/build.js';
import { WorkloadStore } from '../../../agent/state/store.js';
import { ConnectionTelemetry } from '../../../agent/telemetry/connections.js';
import { MeshMetrics } from '../../../agent/telemetry/metrics.js';
import type { HbonePool } from '../../../agent/tunnel/hbone/pool.js';
import { LiveConnections } from '../../../agent/tunnel/live-connections.js';
import { OutboundProxy } from '../../../agent/tunnel/outbound.js';

/** The node, namespace and enrolled client pod every harness has; tests add their ServiceEntries and rules. */
export const CLIENT_POD_YAML = `---
apiVersion: v1
kind: Node
metadata: {name: a}
status: {addresses: [{type: InternalIP, address: 172.31.0.1}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop}
spec: {nodeName: a, serviceAccountName: client, containers: [{name: c}]}
status: {podIP: 10.1.1.1}
`;

export interface OutboundHarness {
  readonly store: WorkloadStore;
  /** The agent's log records (the access log's `connection failed` among them). */
  readonly log: Record<string, unknown>[];
  /** Each request the L7 proxy finished, with its response flags. */
  readonly requests: CompletedRequest[];
  /** The pod sends `bytes` to `host`'s mesh address (of `family`) on `servicePort`; resolves with all it got back before the close. */
  dial(host: string, servicePort: number, bytes: string, family?: 4 | 6): Promise<string>;
  close(): void;
}

export async function outboundHarness(yaml: string, options: { readonly hostResolver?: HostResolver } = {}): Promise<OutboundHarness> {
  const parsed = parseConfigFile(`${CLIENT_POD_YAML}${yaml}`, 'harness.yaml');
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic), []);
  const store = new WorkloadStore();
  store.replace(buildSnapshot(parsed.objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' }));
  const client = store.current!.workloadsByIp.get('10.1.1.1')!;
  const records: Record<string, unknown>[] = [];
  const requests: CompletedRequest[] = [];
  const sink = new Writable({ write: (chunk: Buffer, _encoding, done) => (records.push(JSON.parse(chunk.toString()) as Record<string, unknown>), done()) });
  const log = pino({ level: 'debug' }, sink);
  const http = new OutboundHttpProxy({ node: 'a', store, log, onRequestComplete: (r) => requests.push(r) });
  const proxy = new OutboundProxy({
    node: 'a',
    store,
    telemetry: new ConnectionTelemetry(new MeshMetrics('test'), log, { store }),
    live: new LiveConnections(store, log),
    log,
    // Nothing here is enrolled on another node: no HBONE connection is ever asked for.
    hbone: {} as HbonePool,
    clusterId: 'Kubernetes',
    originalDestination: () => undefined,
    connectAsClient: async (_sourceIp, destination) => {
      const socket = connect(destination.port, destination.ip);
      return await new Promise<Socket | string>((resolve) => {
        socket.once('connect', () => resolve(socket));
        socket.once('error', (err) => resolve(err.message));
      });
    },
    http,
    ...(options.hostResolver ? { hostResolver: options.hostResolver } : {}),
  });
  const entrance: Server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, () => undefined);
  entrance.listen(0, '127.0.0.1');
  await once(entrance, 'listening');

  return {
    store,
    log: records,
    requests,
    async dial(host, servicePort, bytes, family = 4) {
      const vip = store.current!.servicesByHostname.get(host)?.vips.find((v) => isIP(v) === family);
      assert.ok(vip, `${host} has a mesh address`);
      const accepted = once(entrance, 'connection') as Promise<[Socket]>;
      const socket = connect((entrance.address() as AddressInfo).port, '127.0.0.1');
      const [handed] = await accepted;
      proxy.handleFrom(handed, client, { ip: vip, port: servicePort });
      socket.on('error', () => undefined);
      socket.write(bytes);
      const chunks: Buffer[] = [];
      socket.on('data', (d: Buffer) => chunks.push(d));
      // Not events.once: a reset (a refused connection) is an 'error' it would reject on; 'close' follows it.
      await new Promise((resolve) => socket.once('close', resolve));
      return Buffer.concat(chunks).toString();
    },
    close() {
      entrance.close();
      http.close();
    },
  };
}

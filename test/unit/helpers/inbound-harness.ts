// The destination-side HTTP proxy in-process for policy tests: a loopback listener whose connections
// stand for admitted tunnels from bookinfo's productpage (mTLS identity) to reviews-v1:9080, relayed to a
// real InboundHttpProxy, and a real Node server as the pod that records what it received.

import http from 'node:http';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { InboundHttpProxy, type InboundHttpTunnel } from '../../../agent/l7/proxy/inbound-http.js';
import { LocalRateLimiter } from '../../../agent/policy/rate-limit.js';
import type { MeshSnapshot, SpiffeId } from '../../../agent/state/model.js';
import { WorkloadStore } from '../../../agent/state/store.js';
import { MeshMetrics } from '../../../agent/telemetry/metrics.js';
import { RequestTelemetry } from '../../../agent/telemetry/requests.js';
import { RequestTracer } from '../../../agent/telemetry/tracing.js';
import { relay } from '../../../agent/tunnel/relay.js';

export const PRODUCTPAGE = 'spiffe://cluster.local/ns/bookinfo/sa/default' as SpiffeId;

export interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

export interface InboundHarness {
  readonly store: WorkloadStore;
  /** What the pod received, in order. */
  readonly podRequests: { readonly url: string; readonly headers: http.IncomingHttpHeaders }[];
  /** The agent's log lines (JSON objects). */
  readonly logLines: Record<string, unknown>[];
  request(path: string, headers?: http.OutgoingHttpHeaders): Promise<Answer>;
  close(): Promise<void>;
}

export async function inboundHarness(snapshot: MeshSnapshot): Promise<InboundHarness> {
  const store = new WorkloadStore();
  store.replace(snapshot);
  const logLines: Record<string, unknown>[] = [];
  const logSink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') logLines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const log = pino({ level: 'info' }, logSink);
  const metrics = new MeshMetrics('test');
  const tracer = RequestTracer.disabled('node-b');
  const proxy = new InboundHttpProxy({
    store,
    log,
    rateLimiter: new LocalRateLimiter({ registry: metrics.registry }),
    telemetry: new RequestTelemetry(metrics, pino({ level: 'silent' }), { store }),
    tracer,
  });
  const podRequests: { url: string; headers: http.IncomingHttpHeaders }[] = [];
  const pod = http.createServer((req, res) => {
    podRequests.push({ url: req.url ?? '', headers: req.headers });
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end('from the pod'));
  });
  await new Promise<void>((r) => pod.listen(0, '127.0.0.1', r));
  const sockets = new Set<Socket>();
  const front: Server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    const current = store.current!;
    const workload = current.workloads.get('bookinfo/reviews-v1')!;
    const source = current.workloads.get('bookinfo/productpage-v1')!;
    const tunnel: InboundHttpTunnel = {
      connection: {
        direction: 'inbound',
        src: { addr: `${source.ips[0]}:${socket.remotePort}`, workload: source, identity: PRODUCTPAGE },
        dst: { addr: '10.244.1.21:9080', workload, identity: workload.identity },
        securityPolicy: 'mutual_tls',
      },
      sourceIp: source.ips[0]!,
      sourcePort: socket.remotePort ?? 0,
      sourceIdentity: PRODUCTPAGE,
      destination: { ip: '10.244.1.21', port: 9080 },
      workload,
      protocol: 'HTTP',
      connect: () =>
        new Promise((resolve) => {
          const s = connect((pod.address() as AddressInfo).port, '127.0.0.1', () => resolve(s));
          s.once('error', (err) => resolve(err.message));
        }),
    };
    void relay(socket, proxy.open(tunnel));
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  return {
    store,
    podRequests,
    logLines,
    request: (path, headers = {}) =>
      new Promise((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port: (front.address() as AddressInfo).port, path, agent, headers: { host: 'reviews:9080', ...headers } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
        });
        req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')));
        req.once('error', reject);
        req.end();
      }),
    close: async () => {
      agent.destroy();
      for (const s of sockets) s.destroy();
      front.close();
      pod.closeAllConnections();
      pod.close();
      await tracer.shutdown();
    },
  };
}

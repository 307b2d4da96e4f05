// Both L7 proxies in-process on loopback, as an attacker's bytes meet them: a front listener for the
// destination side (each connection an admitted tunnel from productpage to reviews-v1:9080, relayed to
// InboundHttpProxy as the tunnel code relays it), one for the source side (each connection a captured
// connection from productpage to the reviews Service, whose upstreams are tunnels into that destination
// front), one for the source side whose upstreams reach the pod directly (a destination without an L7
// proxy of its own: the pod reads what the source forwards), and a real Node server as the pod,
// recording every request that reaches it. Plus a raw HTTP/1.1 client for what clients never send, and
// a one-request HTTP/2 client.

import { createHash } from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { type Logger, pino } from 'pino';
import type { HttpServerLimits } from '../../../agent/l7/proxy/http-servers.js';
import { httpDestinationOf } from '../../../agent/l7/proxy/http-destination.js';
import { InboundHttpProxy } from '../../../agent/l7/proxy/inbound-http.js';
import { OutboundHttpProxy } from '../../../agent/l7/proxy/outbound-http.js';
import type { PathNormalization } from '../../../agent/l7/request-target.js';
import { RateLimiter } from '../../../agent/policy/rate-limit.js';
import type { SpiffeId } from '../../../agent/state/model.js';
import { WorkloadStore } from '../../../agent/state/store.js';
import { MeshMetrics } from '../../../agent/telemetry/metrics.js';
import { RequestTelemetry } from '../../../agent/telemetry/requests.js';
import { RequestTracer } from '../../../agent/telemetry/tracing.js';
import { relay } from '../../../agent/tunnel/relay.js';
import { mesh } from '../../unit/helpers/l7-mesh.js';

/**
 * DENY on /admin and below, and on `x-user: admin`; everything else is allowed. The source side's
 * route answers /admin itself (403 "route: no admin"), so that it too judges a path, and rewrites
 * /old to /new/ (so "/old/x" becomes "/new//x" before normalization).
 */
export const NO_ADMIN = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {exact: /admin}}, {uri: {prefix: /admin/}}]
    directResponse: {status: 403, body: {string: "route: no admin"}}
  - match: [{uri: {prefix: /old}}]
    rewrite: {uri: /new/}
    route: [{destination: {host: reviews}}]
  - route: [{destination: {host: reviews}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin", "/admin/*"]}}]
  - when: [{key: "request.headers[x-user]", values: ["admin"]}]
`;

const PRODUCTPAGE = 'spiffe://cluster.local/ns/bookinfo/sa/default' as SpiffeId;

export interface PodRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly rawHeaders: readonly string[];
  /** The body as the pod read it: its length so far, and its SHA-256 once it ended. */
  readonly body: { bytes: number; sha256?: string };
}

export interface L7Proxies {
  /** Connections here are tunnels admitted to reviews-v1:9080 (the destination agent's proxy). */
  readonly inboundPort: number;
  /** Connections here are productpage's, captured on their way to reviews:9080 (the source agent's proxy). */
  readonly outboundPort: number;
  /** The same, with upstreams straight to the pod: what the source forwards is what the pod reads. */
  readonly outboundDirectPort: number;
  /** Every request the pod received, in order. */
  readonly podRequests: PodRequest[];
  /** The agents' store: replace its snapshot to apply other configuration, as a watch does. */
  readonly store: WorkloadStore;
  close(): Promise<void>;
}

export interface L7ProxiesOptions {
  readonly policies?: string;
  readonly limits?: HttpServerLimits;
  readonly pathNormalization?: PathNormalization;
  /** The agents' logger; default silent. */
  readonly log?: Logger;
  /** The destination agent's request metrics and access log; default a private registry and `log`. */
  readonly metrics?: MeshMetrics;
  readonly accessLog?: Logger;
  /** Both agents' tracer; default tracing off. */
  readonly tracer?: RequestTracer;
}

export async function startL7Proxies(options: L7ProxiesOptions = {}): Promise<L7Proxies> {
  const store = new WorkloadStore();
  store.replace(mesh(options.policies ?? NO_ADMIN));
  const log = options.log ?? pino({ level: 'silent' });
  const metrics = options.metrics ?? new MeshMetrics('test');
  const tuning = { ...(options.limits ? { limits: options.limits } : {}), ...(options.pathNormalization ? { pathNormalization: options.pathNormalization } : {}) };
  const inbound = new InboundHttpProxy({
    store,
    log,
    rateLimiter: new RateLimiter({ registry: metrics.registry, log }),
    telemetry: new RequestTelemetry(metrics, options.accessLog ?? log, { store }),
    tracer: options.tracer ?? RequestTracer.disabled(),
    ...tuning,
  });
  const outbound = new OutboundHttpProxy({ node: 'node-a', store, log, ...tuning, ...(options.tracer ? { tracer: options.tracer } : {}) });
  const podRequests: PodRequest[] = [];
  const pod = http.createServer((req, res) => {
    const body: PodRequest['body'] = { bytes: 0 };
    const hash = createHash('sha256');
    podRequests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body });
    req.on('data', (chunk: Buffer) => {
      body.bytes += chunk.length;
      hash.update(chunk);
    });
    req.on('end', () => {
      body.sha256 = hash.digest('hex');
      res.writeHead(200, { 'content-type': 'text/plain' }).end(`pod saw ${req.url}`);
    });
  });
  await new Promise<void>((r) => pod.listen(0, '127.0.0.1', r));
  const podPort = (pod.address() as AddressInfo).port;
  const sockets = new Set<Socket>();
  const track = (s: Socket): Socket => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    return s;
  };
  const dial = (port: number): Promise<Socket | string> =>
    new Promise((resolve) => {
      const s = track(connect(port, '127.0.0.1', () => resolve(s)));
      s.once('error', (err) => resolve(err.message));
    });

  const inboundFront = createServer({ allowHalfOpen: true }, (socket) => {
    track(socket);
    const snapshot = store.current!;
    const workload = snapshot.workloads.get('bookinfo/reviews-v1')!;
    const source = snapshot.workloads.get('bookinfo/productpage-v1')!;
    void relay(
      socket,
      inbound.open({
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
        connect: () => dial(podPort),
      }),
    );
  });
  await new Promise<void>((r) => inboundFront.listen(0, '127.0.0.1', r));
  const inboundPort = (inboundFront.address() as AddressInfo).port;

  const outboundFront = async (upstreamPort: number): Promise<Server> => {
    const server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => {
      track(socket);
      const snapshot = store.current!;
      const originalDst = { ip: '10.96.0.21', port: 9080 };
      void outbound.handle({
        socket,
        source: snapshot.workloads.get('bookinfo/productpage-v1')!,
        sourceIp: '10.244.1.10',
        sourcePort: socket.remotePort ?? 0,
        originalDst,
        destination: httpDestinationOf(snapshot, originalDst)!,
        // Every endpoint is reached through one listener, as HBONE (or plain TCP) would carry it there.
        openUpstream: () => dial(upstreamPort),
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return server;
  };
  const fronts = [inboundFront, await outboundFront(inboundPort), await outboundFront(podPort)];

  return {
    inboundPort,
    outboundPort: (fronts[1]!.address() as AddressInfo).port,
    outboundDirectPort: (fronts[2]!.address() as AddressInfo).port,
    podRequests,
    store,
    close: async () => {
      for (const s of sockets) s.destroy();
      for (const f of fronts) f.close();
      inbound.close();
      outbound.close();
      pod.closeAllConnections();
      await new Promise<void>((r) => pod.close(() => r()));
    },
  };
}

export interface RawReply {
  /** Everything the proxy sent back. */
  readonly text: string;
  /** The status of the first response, or undefined when none came. */
  readonly status: number | undefined;
  /** Whether the proxy closed the connection (rather than the test giving up after `waitMs`). */
  readonly closedByPeer: boolean;
  readonly elapsedMs: number;
}

/**
 * Writes `bytes` (latin1) to `port` and collects the answer until the proxy closes the connection, or
 * `waitMs` passes (then the test closes it: a bound, and a finding when the proxy should have).
 */
export function rawHttp1(port: number, bytes: string, waitMs = 3000, endAfterWrite = false): Promise<RawReply> {
  const started = performance.now();
  return new Promise((resolve) => {
    let text = '';
    let closedByPeer = true;
    const s = connect(port, '127.0.0.1', () => (endAfterWrite ? s.end(Buffer.from(bytes, 'latin1')) : s.write(Buffer.from(bytes, 'latin1'))));
    const timer = setTimeout(() => {
      closedByPeer = false;
      s.destroy();
    }, waitMs);
    s.on('data', (d: Buffer) => (text += d.toString('latin1')));
    s.on('error', () => undefined);
    s.once('close', () => {
      clearTimeout(timer);
      const status = /^HTTP\/1\.1 (\d{3})/.exec(text)?.[1];
      resolve({ text, status: status === undefined ? undefined : Number(status), closedByPeer, elapsedMs: performance.now() - started });
    });
  });
}

/** One HTTP/2 (h2c) request on a session of its own; resolves with its status. */
export function h2Get(port: number, headers: http2.OutgoingHttpHeaders): Promise<number> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => undefined);
  return new Promise<number>((resolve, reject) => {
    const stream = session.request({ ':authority': 'reviews:9080', ...headers });
    stream.on('response', (h) => resolve(Number(h[':status'])));
    stream.on('error', reject);
    stream.resume();
    stream.end();
  }).finally(() => session.close());
}

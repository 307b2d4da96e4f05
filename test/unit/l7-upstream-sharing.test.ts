// Upstream connections of the outbound HTTP proxy are shared by one source pod's client connections to
// one destination while any of them is open, and never between pods: a client that opens a connection
// per request reuses the pod's kept-alive upstream connection (in a node, an HBONE stream) instead of
// opening one per client connection. After the last client connection closed, they stay for the linger
// (a client that comes back finds them), and close at its end, or at once when the pod leaves the mesh.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { httpDestinationOf } from '../../agent/l7/proxy/http-destination.js';
import { OutboundHttpProxy } from '../../agent/l7/proxy/outbound-http.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { mesh } from './helpers/l7-mesh.js';

const RATINGS = { ip: '10.96.0.31', port: 9080 };
const store = new WorkloadStore();
/** Short, so that the test sees the linger end; the pod-gone case below ends it sooner than this. */
const LINGER_MS = 300;
const proxy = new OutboundHttpProxy({ node: 'n', store, log: pino({ level: 'silent' }), upstreamLingerMs: LINGER_MS });
/** Every connection the ratings pod accepted, in order. */
const podConnections: Socket[] = [];
let pod: http.Server;
let podPort = 0;
/** While set, the pod holds its answers until this many requests are in (see the burst test). */
let burst: { readonly size: number; readonly held: (() => void)[] } | undefined;
/** One listener per source pod: the client connection's pod is the listener it reached. */
const fronts = new Map<string, { server: Server; port: number }>();

before(async () => {
  store.replace(mesh());
  pod = http.createServer((req, res) => {
    req.resume();
    req.once('end', () => {
      if (burst === undefined) return res.end('rated');
      // A burst's requests are answered together, once all of them are in: each needs a connection.
      burst.held.push(() => res.end('rated'));
      if (burst.held.length === burst.size) burst.held.splice(0).forEach((answer) => answer());
    });
  });
  pod.on('connection', (s: Socket) => podConnections.push(s));
  pod.listen(0, '127.0.0.1');
  await once(pod, 'listening');
  podPort = (pod.address() as AddressInfo).port;
  for (const [key, ip] of [['bookinfo/productpage-v1', '10.244.1.10'], ['other/sleep', '10.244.2.50']] as const) {
    const server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => {
      const snapshot = store.current!;
      void proxy.handle({
        socket,
        source: snapshot.workloads.get(key)!,
        sourceIp: ip,
        sourcePort: socket.remotePort ?? 0,
        originalDst: RATINGS,
        destination: httpDestinationOf(snapshot, RATINGS)!,
        openUpstream: () =>
          new Promise((resolve) => {
            const s = connect(podPort, '127.0.0.1', () => resolve(s));
            s.once('error', (err) => resolve(err.message));
          }),
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    fronts.set(key, { server, port: (server.address() as AddressInfo).port });
  }
});

after(() => {
  proxy.close();
  for (const { server } of fronts.values()) server.close();
  pod.closeAllConnections();
  pod.close();
});

/** A client connection of its own (no agent), kept open until the caller ends it. */
async function clientConnection(source: string): Promise<{ get: () => Promise<string>; close: () => Promise<void> }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const port = fronts.get(source)!.port;
  const get = (): Promise<string> =>
    new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/ratings/0', agent, headers: { host: 'ratings:9080' } }, (res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk));
          res.once('end', () => resolve(`${res.statusCode} ${body}`));
        })
        .once('error', reject);
    });
  return {
    get,
    close: async () => {
      const sockets = Object.values(agent.freeSockets).flat();
      agent.destroy();
      await Promise.all(sockets.map((s) => (s!.closed ? undefined : once(s!, 'close'))));
    },
  };
}

test('client connections of one pod share its upstream connection; another pod has its own; it outlives the last client for the linger', async () => {
  const first = await clientConnection('bookinfo/productpage-v1');
  assert.equal(await first.get(), '200 rated');
  assert.equal(podConnections.length, 1);

  // A second client connection of the same pod, and then a third after the second closed: one upstream connection.
  const second = await clientConnection('bookinfo/productpage-v1');
  assert.equal(await second.get(), '200 rated');
  await second.close();
  const third = await clientConnection('bookinfo/productpage-v1');
  assert.equal(await third.get(), '200 rated');
  assert.equal(podConnections.length, 1, 'the same pod\'s client connections reuse its upstream connection');

  // Another pod carries another identity and address: a connection of its own.
  const other = await clientConnection('other/sleep');
  assert.equal(await other.get(), '200 rated');
  assert.equal(podConnections.length, 2, 'another pod does not use the first pod\'s upstream connection');
  await other.close();
  await once(podConnections[1]!, 'close');

  // The first pod's upstream connection outlives its last client connection: a client that comes back
  // within the linger uses it; after the linger it is closed, and the next client opens a new one.
  await first.close();
  await third.close();
  const back = await clientConnection('bookinfo/productpage-v1');
  assert.equal(await back.get(), '200 rated');
  assert.equal(podConnections.length, 2, 'a client back within the linger reuses the kept upstream connection');
  await back.close();
  const lastClosed = Date.now();
  await once(podConnections[0]!, 'close');
  assert.ok(Date.now() - lastClosed >= LINGER_MS - 50, `the kept connection closed ${Date.now() - lastClosed} ms after the last client, before the ${LINGER_MS} ms linger`);
  const again = await clientConnection('bookinfo/productpage-v1');
  assert.equal(await again.get(), '200 rated');
  assert.equal(podConnections.length, 3, 'after the linger, a new client connection opens a new upstream connection');
  await again.close();
  await once(podConnections[2]!, 'close');
});

test('a pod that leaves the mesh takes its kept upstream connections with it, before the linger ends', async () => {
  const client = await clientConnection('other/sleep');
  assert.equal(await client.get(), '200 rated');
  const upstream = podConnections.at(-1)!;
  await client.close();
  const snapshot = store.current!;
  const workloads = new Map([...snapshot.workloads].filter(([key]) => key !== 'other/sleep'));
  const removedAt = Date.now();
  store.replace({ ...snapshot, version: snapshot.version + 1, workloads });
  await once(upstream, 'close');
  assert.ok(Date.now() - removedAt < LINGER_MS / 2, `closed ${Date.now() - removedAt} ms after the pod left, as if by the linger`);
  store.replace(snapshot);
});

test('the upstream connections a burst opened are all kept for the next burst', async () => {
  const SIZE = 24;
  const before = podConnections.length;
  const clients = await Promise.all(Array.from({ length: SIZE }, () => clientConnection('bookinfo/productpage-v1')));
  for (let round = 1; round <= 2; round++) {
    burst = { size: SIZE, held: [] };
    assert.deepEqual(await Promise.all(clients.map((c) => c.get())), Array(SIZE).fill('200 rated'));
    burst = undefined;
    assert.equal(podConnections.length - before, SIZE, `after burst ${round} of ${SIZE} concurrent requests: ${podConnections.length - before} upstream connections opened`);
  }
  await Promise.all(clients.map((c) => c.close()));
});

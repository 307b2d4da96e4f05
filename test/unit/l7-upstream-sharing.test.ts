// Upstream connections of the outbound HTTP proxy are shared by one source pod's client connections to
// one destination while any of them is open, and never between pods: a client that opens a connection
// per request reuses the pod's kept-alive upstream connection (in a node, an HBONE stream) instead of
// opening one per client connection, and the last client connection to close closes it.

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
const proxy = new OutboundHttpProxy({ node: 'n', store, log: pino({ level: 'silent' }) });
/** Every connection the ratings pod accepted, in order. */
const podConnections: Socket[] = [];
let pod: http.Server;
let podPort = 0;
/** One listener per source pod: the client connection's pod is the listener it reached. */
const fronts = new Map<string, { server: Server; port: number }>();

before(async () => {
  store.replace(mesh());
  pod = http.createServer((req, res) => {
    req.resume();
    req.once('end', () => res.end('rated'));
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

test('client connections of one pod share its upstream connection; another pod has its own; the last client closes it', async () => {
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

  // The first pod's upstream connection lives while any of its client connections does, and no longer.
  await first.close();
  assert.equal(podConnections[0]!.closed, false, 'a client connection is still open');
  await third.close();
  if (!podConnections[0]!.closed) await once(podConnections[0]!, 'close');
  const again = await clientConnection('bookinfo/productpage-v1');
  assert.equal(await again.get(), '200 rated');
  assert.equal(podConnections.length, 3, 'after the last client connection closed, a new one opens a new upstream connection');
  await again.close();
});

// The request path's per-request objects have one shape each, whichever way a request ends: V8 then
// reads their fields through monomorphic inline caches. When an object's fields depended on the request
// (`...(x ? { x } : {})`, a field added only on refusal), each variant was a hidden class of its own and
// the code reading them went megamorphic (`LoadIC_Megamorphic` in perf of the L7 proxy, bench/README.md).
// V8's own %HaveSameMap says whether two objects share their hidden class.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { type AddressInfo, type Socket, connect, createServer } from 'node:net';
import { test } from 'node:test';
import v8 from 'node:v8';
import { pino } from 'pino';
import { parseConfigFile } from '../../agent/config/load.js';
import { type DownstreamRequest, http1Downstream } from '../../agent/l7/proxy/downstream.js';
import { httpDestinationOf } from '../../agent/l7/proxy/http-destination.js';
import { OutboundHttpProxy } from '../../agent/l7/proxy/outbound-http.js';
import type { CompletedRequest } from '../../agent/l7/proxy/request-record.js';
import { DEFAULT_PATH_NORMALIZATION } from '../../agent/l7/request-target.js';
import { buildSnapshot } from '../../agent/state/build.js';
import { WorkloadStore } from '../../agent/state/store.js';

v8.setFlagsFromString('--allow-natives-syntax');
const haveSameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean;

const MESH = `
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {containers: [{name: app, command: [c]}]}
status: {podIP: 10.250.0.10}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: shop, labels: {app: server}}
spec: {containers: [{name: app, command: [s], ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 10.250.0.20}
---
apiVersion: v1
kind: Service
metadata: {name: server, namespace: shop}
spec: {clusterIP: 10.96.250.20, selector: {app: server}, ports: [{name: http, port: 80, targetPort: 8080}]}
`;

/** One raw HTTP/1.1 request on a new connection, closed by the server after it; resolves with the status code. */
async function send(port: number, target: string): Promise<number> {
  const socket = connect(port, '127.0.0.1');
  socket.write(`GET ${target} HTTP/1.1\r\nhost: server.shop.svc.cluster.local\r\nconnection: close\r\n\r\n`);
  const chunks: Buffer[] = [];
  for await (const chunk of socket) chunks.push(chunk as Buffer);
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(Buffer.concat(chunks).toString('latin1'))?.[1] ?? 0);
}

test('a refused target and a proxied one are the same DownstreamRequest shape', async () => {
  const seen: DownstreamRequest[] = [];
  const server = http.createServer((req, res) => {
    const d = http1Downstream(req, res, DEFAULT_PATH_NORMALIZATION);
    seen.push(d);
    d.writeHead(d.refused ? d.refused.status : 200, { 'content-length': 0 });
    d.response.end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  try {
    assert.equal(await send(port, '/item'), 200);
    assert.equal(await send(port, '/a%00b'), 400);
    assert.equal(seen[1]!.refused?.status, 400);
    assert.ok(haveSameMap(seen[0]!, seen[1]!), 'the refused request has a hidden class of its own');
  } finally {
    server.close();
  }
});

test('a relayed request and one the proxy answered itself report records of one shape', async () => {
  const backend = http.createServer((req, res) => res.end('ok'));
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  const backendPort = (backend.address() as AddressInfo).port;
  const store = new WorkloadStore();
  store.replace(buildSnapshot(parseConfigFile(MESH, 'shapes.yaml').objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' }));
  const records: CompletedRequest[] = [];
  const proxy = new OutboundHttpProxy({ node: 'n', store, log: pino({ level: 'silent' }), onRequestComplete: (r) => records.push(r) });
  const originalDst = { ip: '10.96.250.20', port: 80 };
  const front = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => {
    const snapshot = store.current!;
    void proxy.handle({
      socket,
      source: snapshot.workloads.get('shop/client')!,
      sourceIp: '10.250.0.10',
      sourcePort: socket.remotePort ?? 0,
      originalDst,
      destination: httpDestinationOf(snapshot, originalDst)!,
      openUpstream: () =>
        new Promise<Socket | string>((resolve) => {
          const s = connect(backendPort, '127.0.0.1', () => resolve(s));
          s.once('error', (err) => resolve(err.message));
        }),
    });
  });
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
  const { port } = front.address() as AddressInfo;
  try {
    assert.equal(await send(port, '/item'), 200);
    assert.equal(await send(port, '/a%00b'), 400);
    assert.equal(records.length, 2);
    assert.equal(records[0]!.upstreamHost, '10.250.0.20:8080');
    assert.equal(records[1]!.upstreamHost, undefined);
    assert.ok(haveSameMap(records[0]!, records[1]!), 'the locally answered request has a record shape of its own');
  } finally {
    front.close();
    backend.close();
    proxy.close();
  }
});

// ServiceEntry resolution DNS on the connection path: a pod's connection to the entry's address goes
// through the agent's outbound proxy, which resolves the endpoint's host name at the agent's DNS upstream
// (a server written here, answering names no one else knows with loopback addresses), caches the answer
// by its TTL, and fails a connection whose name does not resolve with DNS_RESOLUTION_FAILED.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, type Server, createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { HostResolver, MAX_TTL_S } from '../../agent/dns/host-resolver.js';
import { type OutboundHarness, outboundHarness } from './helpers/outbound-harness.js';
import { TestDnsServer } from './helpers/test-dns-server.js';

const ENTRIES = `---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: backend, namespace: shop}
spec:
  hosts: [backend.payments.example]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 9000, name: tcp, protocol: TCP, targetPort: PORT}]
  endpoints: [{address: backend.nowhere.test}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: shop}
spec:
  hosts: [api.nowhere.test]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: PORT, name: tcp, protocol: TCP}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: gone, namespace: shop}
spec:
  hosts: [gone.payments.example]
  location: MESH_EXTERNAL
  resolution: DNS_ROUND_ROBIN
  ports: [{number: 9000, name: tcp, protocol: TCP, targetPort: PORT}]
  endpoints: [{address: missing.nowhere.test}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: shop}
spec:
  hosts: [web.payments.example]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: HTTP_PORT}]
  endpoints: [{address: web.nowhere.test}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dual, namespace: shop}
spec:
  hosts: [dual.nowhere.test]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: PORT, name: tcp, protocol: TCP}]
`;

/** A TCP server on `ip` that answers each connection with where it is and what it was sent. */
async function namedServer(ip: string, port: number): Promise<Server> {
  const server = createServer((socket) => socket.once('data', (d: Buffer) => socket.end(`${ip} got ${d.toString()}`)));
  server.listen(port, ip);
  await once(server, 'listening');
  return server;
}

const dns = new TestDnsServer();
const servers: Server[] = [];
let clock = 1_000_000;
let port = 0;
let mesh: OutboundHarness;

before(async () => {
  const dnsPort = await dns.start();
  const first = await namedServer('127.0.0.2', 0);
  port = (first.address() as AddressInfo).port;
  servers.push(first, await namedServer('127.0.0.3', port), await namedServer('::1', port));
  const web = createHttpServer((req, res) => res.end(`web at ${req.socket.localAddress} got ${req.url}`));
  web.listen(0, '127.0.0.2');
  await once(web, 'listening');
  servers.push(web);
  const httpPort = (web.address() as AddressInfo).port;
  const yaml = ENTRIES.replaceAll('HTTP_PORT', String(httpPort)).replaceAll('PORT', String(port));
  mesh = await outboundHarness(yaml, { hostResolver: new HostResolver({ upstream: { ip: '127.0.0.1', port: dnsPort }, now: () => clock }) });
});

after(() => {
  dns.close();
  mesh.close();
  for (const s of servers) s.close();
});

const dial = (host: string, servicePort: number, bytes = 'hello', family: 4 | 6 = 4): Promise<string> => mesh.dial(host, servicePort, bytes, family);

describe('ServiceEntry resolution DNS on the connection path', () => {
  it('an endpoint written as a host name is resolved at the agent\'s DNS upstream and reached at its address', async () => {
    dns.answers.set('backend.nowhere.test', { ip: '127.0.0.2', ttl: 30 });
    assert.equal(await dial('backend.payments.example', 9000), '127.0.0.2 got hello');
    assert.deepEqual(dns.asked, ['backend.nowhere.test A']);
  });

  it('honours the TTL: a changed answer is used once the cached one expires, not before', async () => {
    dns.answers.set('backend.nowhere.test', { ip: '127.0.0.3', ttl: 30 });
    clock += 29_000;
    assert.equal(await dial('backend.payments.example', 9000), '127.0.0.2 got hello', 'within the TTL the cached answer holds');
    clock += 2_000;
    assert.equal(await dial('backend.payments.example', 9000), '127.0.0.3 got hello', 'past the TTL the name is asked again');
    assert.deepEqual(dns.asked, ['backend.nowhere.test A', 'backend.nowhere.test A']);
  });

  it('resolution DNS without endpoints resolves the host itself; a TTL past the ceiling is cut to it', async () => {
    dns.answers.set('api.nowhere.test', { ip: '127.0.0.3', ttl: 86_400 });
    assert.equal(await dial('api.nowhere.test', port), '127.0.0.3 got hello');
    dns.answers.set('api.nowhere.test', { ip: '127.0.0.2', ttl: 86_400 });
    clock += (MAX_TTL_S + 1) * 1000;
    assert.equal(await dial('api.nowhere.test', port), '127.0.0.2 got hello');
  });

  it('the answers of the family the pod dialled are preferred, as ztunnel prefers the downstream\'s family', async () => {
    dns.answers.set('dual.nowhere.test', { ip: '127.0.0.2', ttl: 30 });
    dns.answers6.set('dual.nowhere.test', { ip: '::1', ttl: 30 });
    assert.equal(await dial('dual.nowhere.test', port, 'v6', 6), '::1 got v6');
    assert.equal(await dial('dual.nowhere.test', port, 'v4', 4), '127.0.0.2 got v4');
  });

  it('an HTTP port goes through the L7 proxy, whose upstream connection resolves the endpoint\'s name', async () => {
    dns.answers.set('web.nowhere.test', { ip: '127.0.0.2', ttl: 30 });
    const reply = await dial('web.payments.example', 80, 'GET /hello HTTP/1.1\r\nhost: web.payments.example\r\nconnection: close\r\n\r\n');
    assert.match(reply, /^HTTP\/1\.1 200 OK/);
    assert.match(reply, /web at 127\.0\.0\.2 got \/hello$/);
  });

  it('a name that does not resolve fails the connection with DNS_RESOLUTION_FAILED and says which name', async () => {
    assert.equal(await dial('gone.payments.example', 9000), '');
    const failed = mesh.log.find((r) => r.msg === 'connection failed');
    assert.ok(failed, 'the failure is in the access log');
    assert.equal(failed.response_flags, 'DNS_RESOLUTION_FAILED');
    assert.match(String(failed.error), /endpoint missing\.nowhere\.test of gone\.payments\.example does not resolve: missing\.nowhere\.test does not exist \(NXDOMAIN from 127\.0\.0\.1:\d+\)/);
  });
});

// The DNS proxy as a pod's resolver sees it: Node's c-ares resolver (an independent DNS client) asks the
// proxy over UDP, a framed query asks it over TCP; mesh names (a Kubernetes Service, a ServiceEntry host
// with its automatic address, that host under a search domain) are answered from the snapshot, the
// rest comes back unchanged from the pod's own server (a stand-in upstream on loopback).

import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { parseConfigFile } from '../../agent/config/parse-file.js';
import { DnsProxy } from '../../agent/dns/dns-proxy.js';
import { capturesDns } from '../../agent/dns/mesh-answer.js';
import { RCODE_FORMERR, TYPE_A, encodeResponse, parseQuery } from '../../agent/dns/wire.js';
import { buildSnapshot } from '../../agent/state/build.js';
import { WorkloadStore } from '../../agent/state/store.js';

const YAML = `---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop}
spec: {nodeName: a, containers: [{name: c}]}
status: {podIP: 127.0.0.1}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {clusterIP: 10.96.0.7, ports: [{name: http, port: 9080}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments, namespace: shop}
spec:
  hosts: [api.payments.example]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 192.0.2.10}]
`;

/** What the stand-in upstream answers for every A question: an address no mesh object has. */
const UPSTREAM_ANSWER = '203.0.113.9';

describe('DNS proxy', () => {
  const store = new WorkloadStore();
  const upstream = createSocket('udp4');
  let upstreamPort = 0;
  let upstreamQueries = 0;
  const proxy = new DnsProxy({ store, log: pino({ level: 'silent' }), upstreamOf: () => ({ ip: '127.0.0.1', port: upstreamPort }) });
  let port = 0;
  const resolver = new Resolver({ timeout: 2000, tries: 1 });
  let vip = '';

  before(async () => {
    const parsed = parseConfigFile(YAML, 'dns.yaml');
    store.replace(buildSnapshot(parsed.objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' }));
    vip = store.current?.servicesByHostname.get('api.payments.example')?.vips[0] ?? '';
    assert.match(vip, /^240\.240\./);
    upstream.on('message', (message, rinfo) => {
      upstreamQueries++;
      const q = parseQuery(message);
      if (q.ok) upstream.send(encodeResponse(q.query, 0, [{ type: TYPE_A, address: Uint8Array.from(UPSTREAM_ANSWER.split('.').map(Number)) }], 60, false), rinfo.port, rinfo.address);
    });
    await new Promise<void>((resolve) => upstream.bind(0, '127.0.0.1', resolve));
    upstreamPort = upstream.address().port;
    port = (await proxy.listen('127.0.0.1', 0)).port;
    resolver.setServers([`127.0.0.1:${port}`]);
  });
  after(() => {
    proxy.close();
    upstream.close();
  });

  it('answers a ServiceEntry host with its automatic address, and the host under the pod\'s search domain too, without asking upstream', async () => {
    const before = upstreamQueries;
    assert.deepEqual(await resolver.resolve4('api.payments.example'), [vip]);
    assert.deepEqual(await resolver.resolve4('api.payments.example.shop.svc.cluster.local'), [vip]);
    assert.deepEqual(await resolver.resolve4('API.Payments.Example'), [vip]);
    assert.match((await resolver.resolve6('api.payments.example'))[0] ?? '', /^2001:2::/);
    assert.equal(upstreamQueries, before);
  });

  it('answers a Kubernetes Service by its full name', async () => {
    assert.deepEqual(await resolver.resolve4('reviews.shop.svc.cluster.local'), ['10.96.0.7']);
    // No IPv6 address: an empty answer (NODATA), not a forward.
    await assert.rejects(resolver.resolve6('reviews.shop.svc.cluster.local'), (err: NodeJS.ErrnoException) => err.code === 'ENODATA');
  });

  it('forwards every other name to the upstream server and returns its reply', async () => {
    const before = upstreamQueries;
    assert.deepEqual(await resolver.resolve4('www.example.org'), [UPSTREAM_ANSWER]);
    // A Kubernetes name under a search domain is not the mesh's to alias: kube-dns decides it.
    assert.deepEqual(await resolver.resolve4('reviews.shop.svc.cluster.local.shop.svc.cluster.local'), [UPSTREAM_ANSWER]);
    assert.equal(upstreamQueries, before + 2);
  });

  it('answers over TCP with RFC 7766 framing', async () => {
    const query = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, ...Buffer.from('api'), 8, ...Buffer.from('payments'), 7, ...Buffer.from('example'), 0, 0, 1, 0, 1]);
    const reply = await new Promise<Buffer>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port }, () => socket.write(Buffer.concat([Buffer.from([0, query.length]), query])));
      let got = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        got = Buffer.concat([got, chunk]);
        if (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0)) {
          socket.end();
          resolve(got.subarray(2));
        }
      });
      socket.on('error', reject);
      socket.setTimeout(3000, () => reject(new Error('no TCP reply in 3 s')));
    });
    assert.equal(reply.readUInt16BE(0), 0x1234);
    assert.equal(reply.readUInt16BE(6), 1, 'one answer');
    assert.deepEqual([...reply.subarray(reply.length - 4)], vip.split('.').map(Number));
  });

  it('an enrolled pod is captured unless annotated ambient.istio.io/dns-capture: "false"', () => {
    const client = store.current?.workloadsByIp.get('127.0.0.1');
    assert.ok(client);
    assert.equal(capturesDns(client), true);
    assert.equal(capturesDns({ ...client, annotations: { 'ambient.istio.io/dns-capture': 'false' } }), false);
    assert.equal(capturesDns({ ...client, enrollment: { enrolled: false, reason: 'pod-opt-out' } }), false);
  });

  it('a malformed question gets FORMERR with its id, and is never forwarded', async () => {
    const before = upstreamQueries;
    // The name's label claims 40 bytes; the message ends after 3.
    const bad = Buffer.from([0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 40, 0x61, 0x62, 0x63]);
    const reply = await new Promise<Buffer>((resolve, reject) => {
      const socket = createSocket('udp4');
      const timer = setTimeout(() => reject(new Error('no reply in 3 s')), 3000);
      socket.on('message', (m) => {
        clearTimeout(timer);
        socket.close();
        resolve(m);
      });
      socket.send(bad, port, '127.0.0.1');
    });
    assert.equal(reply.readUInt16BE(0), 0xabcd);
    assert.equal(reply.readUInt16BE(2) & 0xf, RCODE_FORMERR);
    assert.equal(upstreamQueries, before);
  });
});

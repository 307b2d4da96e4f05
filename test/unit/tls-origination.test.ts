// DestinationRule trafficPolicy.tls origination for a MESH_EXTERNAL ServiceEntry's HTTP port: the pod
// sends plain HTTP through the agent's outbound L7 proxy, and a real TLS server (node:https, a test CA)
// sees the request arrive over TLS with the SNI the rule implies and, for MUTUAL, the client certificate
// from files or a credentialName directory; a server the rule's CA does not vouch for is a 503 with UF.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { createSecureServer } from 'node:http2';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { ECDSA_P256, generateP256KeyPair, privateKeyToPem, x509 } from '../../agent/identity/pki.js';
import { type TestCa, makePluggedInCa, tempDir } from '../fixtures/identity/test-ca.js';
import { HostResolver } from '../../agent/dns/host-resolver.js';
import { type OutboundHarness, outboundHarness } from './helpers/outbound-harness.js';
import { TestDnsServer } from './helpers/test-dns-server.js';

const HOSTS = ['simple.payments.example', 'sni.payments.example', 'mutual.payments.example', 'secret.payments.example', 'wrongca.payments.example', 'plain.payments.example', 'h2.payments.example', 'edition.news.example'];

/** A certificate signed by `ca` for `names` (DNS SANs), for a server or a client. */
async function issue(ca: TestCa, subject: string, names: readonly string[], usage: 'server' | 'client'): Promise<{ cert: string; key: string }> {
  const keys = await generateP256KeyPair();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: usage === 'server' ? '5e' : 'c1',
    subject: `CN=${subject}`,
    issuer: new x509.X509Certificate(ca.signingPem).subject,
    publicKey: keys.publicKey,
    signingKey: ca.signingKeys.privateKey,
    signingAlgorithm: ECDSA_P256,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    extensions: [
      new x509.SubjectAlternativeNameExtension(names.map((value) => ({ type: 'dns' as const, value }))),
      new x509.ExtendedKeyUsageExtension([usage === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
    ],
  });
  return { cert: cert.toString('pem'), key: await privateKeyToPem(keys.privateKey) };
}

function entry(host: string, port: number, protocol = 'HTTP', ip = '127.0.0.2'): string {
  return `---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${host.split('.')[0]}, namespace: shop}
spec:
  hosts: [${host}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: ${protocol}, targetPort: ${port}}]
  endpoints: [{address: ${ip}}]
`;
}

function rule(host: string, tls: string): string {
  return `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ${host.split('.')[0]}, namespace: shop}
spec:
  host: ${host}
  trafficPolicy:
    tls: ${tls}
`;
}

let mesh: OutboundHarness;
const dns = new TestDnsServer();
const closers: (() => void)[] = [];

before(async () => {
  const dir = await tempDir('tls-origination');
  const ca = await makePluggedInCa(join(dir, 'ca'), { intermediate: false });
  const other = await makePluggedInCa(join(dir, 'other-ca'), { intermediate: false });
  const server = await issue(ca, 'payments', HOSTS, 'server');
  const client = await issue(ca, 'shop-client', ['client.shop.example'], 'client');
  const files = { ca: join(dir, 'root.pem'), other: join(dir, 'other-root.pem'), cert: join(dir, 'client.pem'), key: join(dir, 'client-key.pem'), secret: join(dir, 'secret') };
  await writeFile(files.ca, ca.rootPem);
  await writeFile(files.other, other.rootPem);
  await writeFile(files.cert, client.cert);
  await writeFile(files.key, client.key);
  // credentialName as a generic Secret is mounted: one file per key (key, cert, cacert).
  await mkdir(files.secret);
  await writeFile(join(files.secret, 'cert'), client.cert);
  await writeFile(join(files.secret, 'key'), client.key);
  await writeFile(join(files.secret, 'cacert'), ca.rootPem);

  // Tells what arrived: the SNI, the ALPN chosen, and the client certificate if one was sent and verified.
  const https = createServer({ cert: `${server.cert}\n${ca.signingPem}`, key: server.key, ca: ca.rootPem, requestCert: true, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, (req, res) => {
    const socket = req.socket as TLSSocket;
    const peer = socket.getPeerCertificate();
    const clientName = socket.authorized ? peer.subject.CN : 'none';
    res.end(`tls sni=${socket.servername} alpn=${socket.alpnProtocol} client=${clientName} host=${req.headers.host}`);
  });
  https.listen(0, '127.0.0.2');
  await once(https, 'listening');
  closers.push(() => https.close());
  const port = (https.address() as AddressInfo).port;

  // The same over HTTP/2 (a port of protocol HTTP2): ALPN h2, one stream per request.
  const h2 = createSecureServer({ cert: `${server.cert}\n${ca.signingPem}`, key: server.key, ALPNProtocols: ['h2'] }, (req, res) => {
    const socket = req.socket as TLSSocket;
    res.end(`tls sni=${socket.servername} alpn=${socket.alpnProtocol} version=${req.httpVersion} host=${req.headers[':authority']}`);
  });
  h2.listen(0, '127.0.0.3');
  await once(h2, 'listening');
  closers.push(() => h2.close());
  const h2Port = (h2.address() as AddressInfo).port;

  // Modelled on Istio's egress TLS origination task (plain HTTP on port 80, TLS to the server's port, a
  // per-port DestinationRule tls SIMPLE), the server's port reached by targetPort; a name only the DNS
  // server here knows, and the test CA instead of the public roots.
  const egressTask = `---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: edition-news, namespace: shop}
spec:
  hosts: [edition.news.example]
  ports:
  - {number: 80, name: http-port, protocol: HTTP, targetPort: ${port}}
  - {number: 443, name: https-port, protocol: HTTPS}
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: edition-news, namespace: shop}
spec:
  host: edition.news.example
  trafficPolicy:
    portLevelSettings:
    - port: {number: 80}
      tls: {mode: SIMPLE, caCertificates: ${files.ca}}
`;
  dns.answers.set('edition.news.example', { ip: '127.0.0.2', ttl: 60 });
  const dnsPort = await dns.start();
  closers.push(() => dns.close());

  const yaml = [
    egressTask,
    ...HOSTS.filter((h) => h !== 'h2.payments.example' && h !== 'edition.news.example').map((h) => entry(h, port)),
    entry('h2.payments.example', h2Port, 'HTTP2', '127.0.0.3'),
    rule('h2.payments.example', `{mode: SIMPLE, caCertificates: ${files.ca}}`),
    rule('simple.payments.example', `{mode: SIMPLE, caCertificates: ${files.ca}}`),
    rule('sni.payments.example', `{mode: SIMPLE, caCertificates: ${files.ca}, sni: api.elsewhere.example, subjectAltNames: [sni.payments.example]}`),
    rule('mutual.payments.example', `{mode: MUTUAL, caCertificates: ${files.ca}, clientCertificate: ${files.cert}, privateKey: ${files.key}}`),
    rule('secret.payments.example', `{mode: MUTUAL, credentialName: ${files.secret}}`),
    rule('wrongca.payments.example', `{mode: SIMPLE, caCertificates: ${files.other}}`),
  ].join('');
  mesh = await outboundHarness(yaml, { hostResolver: new HostResolver({ upstream: { ip: '127.0.0.1', port: dnsPort } }) });
  closers.push(() => mesh.close());
});

after(() => closers.forEach((close) => close()));

const get = (host: string): Promise<string> => mesh.dial(host, 80, `GET / HTTP/1.1\r\nhost: ${host}\r\nconnection: close\r\n\r\n`);

describe('DestinationRule tls origination to a MESH_EXTERNAL host', () => {
  it('SIMPLE: the pod\'s plain request reaches the server over TLS, the SNI being the ServiceEntry host, verified with the rule\'s CA', async () => {
    const reply = await get('simple.payments.example');
    assert.match(reply, /^HTTP\/1\.1 200 OK/);
    assert.match(reply, /tls sni=simple\.payments\.example alpn=http\/1\.1 client=none host=simple\.payments\.example$/);
  });

  it('SIMPLE with sni and subjectAltNames: the SNI sent is the rule\'s, the certificate is matched against its names', async () => {
    assert.match(await get('sni.payments.example'), /tls sni=api\.elsewhere\.example alpn=http\/1\.1 client=none/);
  });

  it('MUTUAL: the client certificate from clientCertificate/privateKey files, or from a credentialName directory, reaches the server', async () => {
    assert.match(await get('mutual.payments.example'), /tls sni=mutual\.payments\.example alpn=http\/1\.1 client=shop-client/);
    assert.match(await get('secret.payments.example'), /tls sni=secret\.payments\.example alpn=http\/1\.1 client=shop-client/);
  });

  it('an HTTP2 port: the upstream connection offers ALPN h2 and the request travels as HTTP/2 over it', async () => {
    assert.match(await get('h2.payments.example'), /tls sni=h2\.payments\.example alpn=h2 version=2\.0 host=h2\.payments\.example\r\n/);
  });

  it('in the shape of Istio\'s egress TLS origination task: resolution DNS, port 80 to the TLS port, portLevelSettings tls SIMPLE', async () => {
    assert.match(await get('edition.news.example'), /tls sni=edition\.news\.example alpn=http\/1\.1 client=none host=edition\.news\.example$/);
    assert.deepEqual(dns.asked, ['edition.news.example A']);
  });

  it('a server the rule\'s CA does not vouch for: 503 with UF, as Istio reports an upstream TLS failure', async () => {
    const reply = await get('wrongca.payments.example');
    assert.match(reply, /^HTTP\/1\.1 503 /);
    assert.match(reply, /upstream connect error or disconnect\/reset before headers\. reset reason: connection failure/);
    const request = mesh.requests.find((r) => r.authority === 'wrongca.payments.example');
    assert.ok(request, 'the request was recorded');
    assert.ok(request.flags.includes('UF'), `flags ${request.flags.join(',')}`);
    assert.match(request.detail ?? '', /TLS origination to wrongca\.payments\.example failed/);
  });

  it('without a DestinationRule the request goes as the pod sent it, plain, and the TLS server cannot answer it', async () => {
    assert.doesNotMatch(await get('plain.payments.example'), /tls sni=/);
  });
});

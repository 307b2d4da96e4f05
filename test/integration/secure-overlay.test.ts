// The secure overlay in the lab: enrolled pods on different nodes talk only through HBONE (mutual TLS
// 1.3, ALPN h2, SPIFFE identities from one plugged-in CA), independent HBONE peers (python3-h2, Go) get
// Istio's answers from an Ambit node, policy is enforced on the proven identity and on live
// connections, certificates rotate under open connections, and SIGTERM drains.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spiffeId } from '../../agent/state/model.js';
import { type TestTrust, openTrust } from '../fixtures/hbone/mesh.js';
import { FIXTURES, H2_CLIENT, H2_HOLD, PYTHON, type PemFiles, buildGoPeer, requireTool, writePem } from '../fixtures/hbone/peers.js';
import { makePluggedInCa } from '../fixtures/identity/test-ca.js';
import { HeldConnection } from './helpers/held-connection.js';
import { LabProcess } from './helpers/lab-process.js';
import { ambit, eventually, requireBuiltAmbit, requireRoot } from './helpers/lab-cli.js';
import { PacketCapture } from './helpers/packet-capture.js';
import { LabSession, twoNodesYaml } from './helpers/lab-session.js';

const LAB = `tov${process.pid % 1000}`;
const TD = 'cluster.local';
const WEB_B = '10.246.2.10';
const ECHO_B = '10.246.2.30';
const ECHO_ID = spiffeId(TD, 'shop', 'echo');
const CLIENT_ID = spiffeId(TD, 'shop', 'client');
const PEER_ID = spiffeId(TD, 'shop', 'ztunnel-peer');

const webServer = `require('http').createServer((q, s) => s.end(process.env.POD_NAME + ' ' + q.socket.remoteAddress.replace('::ffff:', '') + ' ' + q.url + '\\n')).listen(8080)`;
const echoServer = `require('net').createServer({ allowHalfOpen: true }, (s) => s.pipe(s)).listen(9000)`;

function meshYaml(extra = ''): string {
  const pod = (name: string, node: string, ip: string, sa: string, command: string[]): string => `
---
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: shop, labels: { app: ${name.replace(/-[ab]$/, '')} } }
spec:
  nodeName: ${node}
  serviceAccountName: ${sa}
  containers:
    - name: main
      command: ${JSON.stringify(command)}
      env: [{ name: POD_NAME, valueFrom: { fieldRef: { fieldPath: metadata.name } } }]
status: { podIP: ${ip} }`;
  const sa = (name: string): string => `---\napiVersion: v1\nkind: ServiceAccount\nmetadata: { name: ${name}, namespace: shop }\n`;
  return `${twoNodesYaml(79, 246)}---
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { istio.io/dataplane-mode: ambient } }
${sa('web')}${sa('echo')}${sa('client')}${sa('intruder')}
${pod('web-b', 'beta', WEB_B, 'web', ['node', '-e', webServer])}
${pod('echo-b', 'beta', ECHO_B, 'echo', ['node', '-e', echoServer])}
${pod('client', 'alpha', '10.246.1.20', 'client', ['sleep', 'infinity'])}
${pod('intruder', 'alpha', '10.246.1.21', 'intruder', ['sleep', 'infinity'])}
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec:
  clusterIP: 10.98.0.10
  selector: { app: web }
  ports: [{ name: http, port: 80, targetPort: 8080 }]
${extra}`;
}

let session: LabSession;
// Generous: every exec starts a Node process in a namespace, seconds each when the machine is busy.
const exec = (target: string, argv: readonly string[], timeoutMs = 45_000) => session.exec(target, argv, timeoutMs);
const agentLog = (node: string): Promise<string> => session.agentLog(node);
const metrics = async (node: string): Promise<string> => (await exec(`node/${node}`, ['curl', '-s', 'http://127.0.0.1:15020/metrics'])).stdout;

/** Sends "hi" to ip:port from `pod` over a fresh connection and returns what came back. */
async function echoOnce(pod: string, ip: string, port: number): Promise<string> {
  const script = `const s = require('net').connect(${port}, '${ip}', () => s.end('hi')); let b = ''; s.on('data', (d) => (b += d)); s.on('error', () => {}); s.on('close', () => console.log(b)); setTimeout(() => s.destroy(), 3000);`;
  return (await exec(pod, ['node', '-e', script])).stdout.trim();
}

async function curl(pod: string, url: string): Promise<{ code: number | null; body: string }> {
  const r = await exec(pod, ['curl', '-s', '--max-time', '3', url]);
  return { code: r.code, body: r.stdout.trim() };
}

const READINESS_POLL = `const http = require('http');
setInterval(() => { const at = Date.now(); const q = http.get('http://127.0.0.1:15021/healthz/ready', { timeout: 500 }, (r) => { console.log(JSON.stringify({ at, code: r.statusCode })); r.resume(); });
  q.on('timeout', () => q.destroy()); q.on('error', (e) => console.log(JSON.stringify({ at, code: 0, error: e.code }))); }, 100);
setTimeout(() => process.exit(0), 60000);`;

const hold = (pod: string, ip: string, port: number, limitMs: number): HeldConnection => new HeldConnection(LAB, pod, ip, port, limitMs);

describe('the secure overlay in the lab', { timeout: 540_000 }, () => {
  let dir: string;
  let caDir: string;
  let yamlPath: string;
  let peer: TestTrust;
  let peerPem: PemFiles;
  const held: HeldConnection[] = [];

  const applyOnBeta = (yaml: string): Promise<number> => session.apply(yaml);

  before(async () => {
    requireRoot();
    requireBuiltAmbit();
    dir = await mkdtemp(join(tmpdir(), 'ambit-overlay-test-'));
    caDir = join(dir, 'cacerts');
    // An intermediate signs, so chains carry it: what an operator's plugged-in CA looks like.
    await makePluggedInCa(caDir, { intermediate: true });
    peer = await openTrust(TD, [PEER_ID], caDir);
    const issued = await peer.certificates.fetch(PEER_ID);
    if (!issued.ok) assert.fail(issued.error.message);
    peerPem = await writePem(dir, 'peer', issued.value);
    yamlPath = join(dir, 'mesh.yaml');
    session = new LabSession(LAB, yamlPath);
    writeFileSync(yamlPath, meshYaml());
    const up = await ambit(['lab', 'up', '--lab', LAB, '--timeout', '90', '--ca-dir', caDir, '--cert-ttl', '30s', '--socks5', yamlPath], 120_000);
    assert.equal(up.code, 0, `lab up failed:\n${up.stdout}\n${up.stderr}`);
  });

  after(async () => {
    held.forEach((h) => h.kill());
    await ambit(['lab', 'down', '--lab', LAB]);
    await peer?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('carries pod-to-pod and pod-to-Service traffic between nodes only inside TLS 1.3 with ALPN h2', async () => {
    const nodeNs = `ambit-${LAB}-n-alpha`;
    const links = JSON.parse((await exec('node/alpha', ['ip', '-j', 'addr', 'show'])).stdout) as { ifname: string; addr_info?: { local?: string }[] }[];
    const uplink = links.find((l) => l.addr_info?.some((a) => a.local === '172.31.79.11'))?.ifname;
    assert.ok(uplink, 'node alpha has no device holding its InternalIP');
    const capture = await PacketCapture.start(nodeNs, uplink, join(dir, 'between-nodes.pcap'));
    const marker = `secret-${process.pid}-${Date.now()}`;
    let wire: Buffer;
    try {
      const direct = await curl('shop/client', `http://${WEB_B}:8080/${marker}-pod`);
      assert.equal(direct.body, `web-b 10.246.1.20 /${marker}-pod`, 'web-b answers and sees the client pod\'s own address');
      const viaService = await curl('shop/client', `http://web.shop/${marker}-svc`);
      assert.equal(viaService.body, `web-b 10.246.1.20 /${marker}-svc`);
      await capture.settled();
    } finally {
      wire = await capture.stop();
    }
    assert.equal(wire.indexOf(marker), -1, 'the application\'s bytes crossed the network in the clear');
    assert.notEqual(wire.indexOf(Buffer.from([0x00, 0x10, 0x00, 0x05, 0x00, 0x03, 0x02, 0x68, 0x32])), -1, 'no ClientHello offering exactly ALPN h2 between the nodes');
    // supported_versions in the ServerHello selects 0x0304: TLS 1.3.
    assert.notEqual(wire.indexOf(Buffer.from([0x00, 0x2b, 0x00, 0x02, 0x03, 0x04])), -1, 'no TLS 1.3 ServerHello between the nodes');
    assert.notEqual(wire.indexOf(Buffer.from([0x3a, 0xa0])), -1, 'no segment to or from port 15008 (0x3aa0)');
  });

  it('takes a pod\'s SOCKS5 connections on its own 127.0.0.1:15080 into the tunnel, with the pod\'s identity', async () => {
    // Opened once the pod's processes run in its namespace (the agents look again every 5 s).
    const socks = (pod: string, url: string, flag = '--socks5-hostname') => exec(pod, ['curl', '-s', '--max-time', '3', flag, '127.0.0.1:15080', url]);
    await eventually('the client pod\'s SOCKS5 listener', async () => ((await socks('shop/client', `http://${WEB_B}:8080/ready`, '--socks5')).code === 0 ? true : undefined), 20_000);
    // By Service name on the pod's search path, and by pod address: web-b on the other node sees the client pod's own address.
    assert.equal((await socks('shop/client', 'http://web/socks-svc')).stdout.trim(), 'web-b 10.246.1.20 /socks-svc');
    assert.equal((await socks('shop/client', 'http://web.shop.svc.cluster.local/socks-fqdn')).stdout.trim(), 'web-b 10.246.1.20 /socks-fqdn');
    assert.equal((await socks('shop/intruder', `http://${WEB_B}:8080/socks-pod`, '--socks5')).stdout.trim(), 'web-b 10.246.1.21 /socks-pod');
    // A name nobody knows: "host unreachable" (curl exit 97: the proxy refused the connection).
    assert.equal((await socks('shop/client', 'http://nowhere.shop.svc.cluster.local/')).code, 97);
    // Nothing of it on the node's own loopback: only the pod's processes reach its listener.
    assert.equal((await exec('node/alpha', ['curl', '-s', '--max-time', '3', '--socks5', '127.0.0.1:15080', `http://${WEB_B}:8080/`])).code, 7);
    // Node beta's agent authenticated the tunnel as the client pod's identity.
    await eventually('beta to log the SOCKS5 request as the client pod\'s', async () => {
      const records = (await agentLog('beta')).split('\n').filter((l) => l.includes('"path":"/socks-svc"') && l.includes('"direction":"inbound"'));
      return records.some((l) => l.includes(`"src.identity":"${CLIENT_ID}"`)) ? true : undefined;
    });
  });

  it('presents the pod\'s SPIFFE certificate on 15008 and refuses clients without a certificate, from another CA or trust domain', async () => {
    const shown = await exec('node/alpha', ['sh', '-c', `openssl s_client -connect ${ECHO_B}:15008 -alpn h2 -noservername -showcerts </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName`]);
    assert.match(shown.stdout, new RegExp(`URI:${ECHO_ID.replaceAll('/', '\\/')}`), `openssl did not show ${ECHO_ID}: ${shown.stdout}${shown.stderr}`);
    const session = await exec('node/alpha', ['sh', '-c', `openssl s_client -connect ${ECHO_B}:15008 -alpn h2 -noservername </dev/null 2>&1`]);
    assert.match(session.stdout, /TLSv1\.3/);
    assert.match(session.stdout, /ALPN protocol: h2/);

    const probe = async (pem?: PemFiles): Promise<{ settingsBytes: number; closedByServer: boolean }> => {
      const args = [join(FIXTURES, 'tls-probe.mjs'), ECHO_B, '15008', ...(pem ? [pem.cert, pem.key] : [])];
      const r = await exec('node/alpha', ['node', ...args]);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as { settingsBytes: number; closedByServer: boolean };
    };
    assert.deepEqual(await probe(), { settingsBytes: 0, closedByServer: true }, 'a client without a certificate got HTTP/2');
    const foreign = await openTrust(TD, [PEER_ID]);
    const otherDomain = await openTrust('other.example', [spiffeId('other.example', 'shop', 'client')], caDir);
    try {
      const foreignCert = await foreign.certificates.fetch(PEER_ID);
      const otherCert = await otherDomain.certificates.fetch(spiffeId('other.example', 'shop', 'client'));
      if (!foreignCert.ok || !otherCert.ok) assert.fail('the test CAs did not issue');
      assert.deepEqual(await probe(await writePem(dir, 'foreign', foreignCert.value)), { settingsBytes: 0, closedByServer: true }, 'a certificate from another CA was accepted');
      assert.deepEqual(await probe(await writePem(dir, 'other-domain', otherCert.value)), { settingsBytes: 0, closedByServer: true }, 'another trust domain was accepted');
    } finally {
      await foreign.close();
      await otherDomain.close();
    }
    const accepted = await probe(peerPem);
    assert.ok(accepted.settingsBytes > 0 && !accepted.closedByServer, `a certificate from the mesh CA was refused: ${JSON.stringify(accepted)}`);
    const beta = await agentLog('beta');
    assert.match(beta, /refused HBONE connection from 172\.31\.79\.11:\d+ to 10\.246\.2\.30: the client sent no certificate/);
    assert.match(beta, /refused HBONE connection from 172\.31\.79\.11:\d+ to 10\.246\.2\.30: .*other\.example/);
  });

  it('answers an independent python3-h2 peer as Istio does: CONNECT tunnels, malformed requests are refused', async () => {
    await requireTool(PYTHON, ['-c', 'import h2'], 'python3-h2');
    const r = await exec('node/alpha', [PYTHON, H2_CLIENT, ECHO_B, '15008', peerPem.cert, peerPem.key, peerPem.ca, '9000'], 30_000);
    assert.equal(r.code, 0, r.stderr);
    const results = JSON.parse(r.stdout) as Record<string, { status: number | null; reset: string | null; echo: string | null }>;
    assert.deepEqual(results.connect, { status: 200, reset: null, echo: 'hello from python-h2' });
    assert.deepEqual(results['connect-with-path'], { status: null, reset: 'PROTOCOL_ERROR', echo: null });
    assert.deepEqual(results['extended-connect'], { status: null, reset: 'PROTOCOL_ERROR', echo: null });
    assert.equal(results.get?.status, 400);
    assert.equal(results['authority-mismatch']?.status, 400);
    assert.match(await agentLog('beta'), /"src\.identity":"spiffe:\/\/cluster\.local\/ns\/shop\/sa\/ztunnel-peer","dst\.addr":"10\.246\.2\.30:9000".*"direction":"inbound".*"msg":"connection complete"/);
  });

  it('tunnels for an independent Go (net/http) peer holding a certificate from the same plugged-in CA', { timeout: 240_000 }, async () => {
    const binary = await buildGoPeer(dir);
    const r = await exec('node/alpha', [binary, 'client', `${ECHO_B}:15008`, `${ECHO_B}:9000`, peerPem.cert, peerPem.key, peerPem.ca, ECHO_ID, 'hello from go'], 30_000);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'status 200 proto HTTP/2.0 echo hello from go');
  });

  it('enforces AuthorizationPolicy on the peer\'s identity, and closes live connections a new policy denies within 1 s', async () => {
    const connection = hold('shop/client', ECHO_B, 9000, 60_000);
    held.push(connection);
    await connection.opened();
    try {
      await applyOnBeta(
        meshYaml(`---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: echo-from-client, namespace: shop }
spec:
  selector: { matchLabels: { app: echo } }
  action: ALLOW
  rules: [{ from: [{ source: { principals: ["cluster.local/ns/shop/sa/client"] } }], to: [{ operation: { ports: ["9000"] } }] }]
`),
      );
      await connection.stillEchoes();
      assert.equal(await echoOnce('shop/client', ECHO_B, 9000), 'hi', 'the allowed principal was refused');
      assert.equal(await echoOnce('shop/intruder', ECHO_B, 9000), '', 'a principal the policy does not allow got through');
      assert.match(await agentLog('beta'), /"src\.identity":"spiffe:\/\/cluster\.local\/ns\/shop\/sa\/intruder".*"error":"no ALLOW AuthorizationPolicy for shop\/echo-b matches","response_flags":"DENY","msg":"connection failed"/);
      assert.match(await agentLog('alpha'), /"src\.workload":"intruder".*"dst\.hbone_addr":"10\.246\.2\.30:9000".*"response_flags":"DENY","msg":"connection failed"/);

      // From the moment the edit is on disk to the moment the client's own socket closed (its clock).
      const editedAt = await applyOnBeta(
        meshYaml(`---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: no-client, namespace: shop }
spec:
  action: DENY
  rules: [{ from: [{ source: { namespaces: ["shop"], principals: ["*/sa/client"] } }] }]
`),
      );
      const ended = await connection.ended; // bounded: the client gives up after 60 s
      assert.equal(ended.closedBy, 'peer', `the live connection was not closed by the new DENY policy: ${JSON.stringify(ended)}`);
      const closedAfterMs = ended.at - editedAt;
      console.log(`# the client saw its connection closed ${closedAfterMs} ms after the policy was written`);
      assert.ok(closedAfterMs <= 1_000, `the denied connection was closed ${closedAfterMs} ms after the policy was written; the promise is 1 s`);
      assert.match(await agentLog('beta'), /closing a live connection: denied by AuthorizationPolicy shop\/no-client/);
      const m = await metrics('beta');
      assert.match(m, /^istio_tcp_connections_failed_total\{reporter="destination",.*source_principal="spiffe:\/\/cluster\.local\/ns\/shop\/sa\/intruder",.*response_flags="DENY",connection_security_policy="mutual_tls"\} [1-9]/m);
    } finally {
      await applyOnBeta(meshYaml());
    }
  });

  it('counts a tunnel whose pod refuses the port as failed with CONNECT on both sides', async () => {
    const r = await curl('shop/client', `http://${ECHO_B}:9999/`);
    assert.notEqual(r.code, 0);
    assert.match(await agentLog('beta'), /"dst\.addr":"10\.246\.2\.30:9999".*"response_flags":"CONNECT","msg":"connection failed"/);
    assert.match(await metrics('alpha'), /^istio_tcp_connections_failed_total\{reporter="source",.*destination_workload="echo",.*response_flags="CONNECT",connection_security_policy="mutual_tls"\} [1-9]/m);
  });

  it('rotates 30 s certificates under a long-lived tunnel, which outlives every certificate it started with', { timeout: 120_000 }, async () => {
    // When the certificate a node's 15008 presents for a pod (a new handshake, as a peer sees it) expires.
    const presentedUntil = async (from: string, podIp: string): Promise<number> => {
      const shown = await exec(from, ['sh', '-c', `openssl s_client -connect ${podIp}:15008 -alpn h2 -noservername </dev/null 2>/dev/null | openssl x509 -noout -enddate -dateopt iso_8601`]);
      const at = Date.parse(shown.stdout.trim().replace(/^notAfter=/, '').replace(' ', 'T'));
      assert.ok(Number.isFinite(at), `no certificate presented on ${podIp}:15008: ${shown.stdout}${shown.stderr}`);
      return at;
    };
    const ends = [['node/alpha', ECHO_B], ['node/beta', '10.246.1.20']] as const;
    const connection = hold('shop/client', ECHO_B, 9000, 70_000);
    held.push(connection);
    await connection.opened();
    // Renewed before expiry, not issued again once expired: 5 s before the certificate presented now
    // runs out, each end must present a newer one. (A certificate fetched on demand after expiry would
    // pass every other check here: the held tunnel and the request below ride HBONE connections whose
    // handshakes came first.)
    const first = await Promise.all(ends.map(async ([from, podIp]) => ({ from, podIp, until: await presentedUntil(from, podIp) })));
    for (const { from, podIp, until } of first.sort((a, b) => a.until - b.until)) {
      await new Promise((r) => setTimeout(r, Math.max(0, until - 5_000 - Date.now()))); // the event here is time passing
      const later = await presentedUntil(from, podIp);
      assert.ok(later > until, `${podIp}:15008 still presents the certificate valid until ${new Date(until).toISOString()} 5 s before it expires: not renewed`);
    }
    // Every certificate in use when the connection opened (both ends', and the pooled HBONE session's,
    // however old) was issued before it with a 30 s lifetime: all have expired 30 s after the open.
    const allExpired = connection.openedAt + 30_000 + 1_000;
    await new Promise((r) => setTimeout(r, Math.max(0, allExpired - Date.now()))); // the event here is time passing
    await connection.stillEchoes();
    assert.equal(await Promise.race([connection.ended.then((e) => e.closedBy), 'open']), 'open');
    const fresh = await curl('shop/client', `http://${WEB_B}:8080/after-rotation`);
    assert.equal(fresh.body, 'web-b 10.246.1.20 /after-rotation');
    connection.kill();
  });

  it('drains on SIGTERM: readiness off, GOAWAY, new connections refused, open streams finish inside the deadline and are cut after it', async () => {
    const DRAIN_MS = 5_000; // lab up's agents run with the default --drain-timeout
    const cut = hold('shop/client', ECHO_B, 9000, 60_000);
    const finisher = hold('shop/client', ECHO_B, 9000, 60_000);
    held.push(cut, finisher);
    await requireTool(PYTHON, ['-c', 'import h2'], 'python3-h2');
    const h2 = new LabProcess(LAB, 'node/alpha', [PYTHON, H2_HOLD, ECHO_B, '15008', peerPem.cert, peerPem.key, peerPem.ca, '9000', '60']);
    // Beta's readiness, asked every 100 ms from its node by one process: each answer with the time it was asked.
    const readiness = new LabProcess(LAB, 'node/beta', ['node', '-e', READINESS_POLL]);
    try {
      await Promise.all([cut.opened(), finisher.opened(), h2.line('the python-h2 stream to open', (e) => e['event'] === 'open' && e['status'] === 200), readiness.line('beta to be ready', (e) => e['code'] === 200)]);
      const status = JSON.parse(readFileSync(`/run/ambit/lab/${LAB}/status.json`, 'utf8')) as { processes: { id: string; pid?: number }[] };
      const pid = status.processes.find((p) => p.id === 'node/beta')?.pid;
      assert.ok(pid, 'no pid for node/beta\'s agent');
      const signalled = Date.now();
      process.kill(pid, 'SIGTERM');
      const goaway = await h2.line('GOAWAY from beta', (e) => e['event'] === 'goaway' || e['event'] === 'end');
      assert.equal(goaway['event'], 'goaway', `the python-h2 peer got no GOAWAY: ${JSON.stringify(goaway)}`);
      assert.ok(Number(goaway['last_stream_id']) >= Number(goaway['stream']), `GOAWAY did not let the open stream finish: ${JSON.stringify(goaway)}`);
      // Not accepted: the closed listener's SYNs are steered to no socket and dropped (a timeout), or refused.
      const refused = await h2.line('the new connection attempt', (e) => e['event'] === 'new-connection');
      assert.notEqual(refused['result'], 'accepted', `a new connection to 15008 was accepted during the drain: ${JSON.stringify(refused)}`);
      const answer = await readiness.line('beta\'s readiness to turn false', (e) => Number(e['at']) >= signalled && e['code'] !== 200);
      assert.equal(answer['code'], 503, `readiness during the drain answered ${JSON.stringify(answer)}`);
      assert.ok(Number(answer['at']) - signalled < DRAIN_MS, 'readiness was still true when the drain deadline passed');
      await cut.stillEchoes();
      finisher.finish();
      const finished = await finisher.ended;
      assert.ok(finished.closedBy === 'self' && finished.echoed === finished.sent, `a stream ended by its client inside the deadline did not finish whole: ${JSON.stringify(finished)}`);
      assert.ok(finished.at - signalled < DRAIN_MS, `the finishing stream closed ${finished.at - signalled} ms after SIGTERM`);
      const ended = await cut.ended;
      assert.equal(ended.closedBy, 'peer', JSON.stringify(ended));
      const h2End = await h2.line('the python-h2 stream to end', (e) => e['event'] === 'end');
      assert.ok(Number(h2End['echoed']) > Number(goaway['echoed']), `the python-h2 stream stopped echoing at GOAWAY: ${JSON.stringify(h2End)}`);
      // Cut after the deadline, not before; the upper bound allows a busy machine's timer and exit delays.
      for (const [who, at] of [['the Node client', ended.at], ['the python-h2 client', Number(h2End['at'])]] as const) {
        assert.ok(at - signalled >= DRAIN_MS && at - signalled < DRAIN_MS + 3_000, `${who}'s stream was cut ${at - signalled} ms after SIGTERM; the drain deadline is ${DRAIN_MS} ms`);
      }
      console.log(`# SIGTERM to beta: GOAWAY seen by the python-h2 peer ${Number(goaway['at']) - signalled} ms after, readiness 503 at ${Number(answer['at']) - signalled} ms, the finishing stream closed whole at ${finished.at - signalled} ms, open streams cut at ${ended.at - signalled} and ${Number(h2End['at']) - signalled} ms (deadline ${DRAIN_MS} ms)`);
      assert.match(await agentLog('beta'), /drain deadline \(5000 ms\) passed; closing the connections still open/);
    } finally {
      h2.kill();
      readiness.kill();
    }
  });
});

// SOCKS5 to forbidden destinations: a pod asks its listener for what only the node should reach (its
// loopback with the admin server's /quitquitquit, 0.0.0.0, link-local and the metadata service,
// multicast, broadcast, the node's own addresses, the agent's ports anywhere, a name that resolves to
// loopback). Each gets RFC 1928's "not allowed by ruleset" (0x02) and nothing on the node receives a
// connection. In-process on loopback: the pod's listener serving code (serveSocksConnection) with the
// node's real addresses and the real admin server; the dial behind it would relay anything it is given
// (to local addresses only: the test never sends traffic off the machine). The lab test
// test/integration/socks5-passthrough.test.ts runs the refusal inside a real agent on the real kernel.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { type AddressInfo, BlockList, type Server, type Socket, connect, createServer } from 'node:net';
import { networkInterfaces } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { AdminServer } from '../../agent/admin/admin-server.js';
import { parseConfigFile } from '../../agent/config/load.js';
import { buildSnapshot } from '../../agent/state/build.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { NodeAddresses } from '../../agent/system/node-addresses.js';
import type { Address } from '../../agent/tunnel/destination.js';
import { type DestinationRules, judgeDestination, unmapIpv4 } from '../../agent/tunnel/socks5/destination-policy.js';
import { SOCKS5_REPLY } from '../../agent/tunnel/socks5/handshake.js';
import { serveSocksConnection } from '../../agent/tunnel/socks5/pod-listeners.js';

const silent = pino({ level: 'silent' });
const POD = 'shop/client';

/** Node addresses given outright, for the pure rules. */
function addressBlock(ips: readonly string[]): BlockList {
  const block = new BlockList();
  for (const ip of ips) block.addAddress(ip, ip.includes(':') ? 'ipv6' : 'ipv4');
  return block;
}

function meshStore(): WorkloadStore {
  const parsed = parseConfigFile(
    `apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop}
spec: {nodeName: n1, containers: [{name: app, command: [c]}]}
status: {podIP: 10.250.7.10}
`,
    'socks5-destinations.yaml',
  );
  const store = new WorkloadStore();
  store.replace(buildSnapshot(parsed.objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' }));
  return store;
}

/** A SOCKS5 request for `ip` (v4, v6) or a name, as raw bytes after the greeting. */
function request(host: string, port: number): Buffer {
  const p = [port >> 8, port & 0xff];
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) return Buffer.from([5, 1, 0, 1, ...host.split('.').map(Number), ...p]);
  if (host.includes(':')) {
    const words = host === '::1' ? [0, 0, 0, 0, 0, 0, 0, 1] : host === '::ffff:127.0.0.1' ? [0, 0, 0, 0, 0, 0xffff, 0x7f00, 1] : assert.fail(`no encoding for ${host}`);
    return Buffer.from([5, 1, 0, 4, ...words.flatMap((w) => [w >> 8, w & 0xff]), ...p]);
  }
  return Buffer.from([5, 1, 0, 3, host.length, ...Buffer.from(host), ...p]);
}

/** The reply code the listener answers `host`:`port` with (-1: closed without one). */
function replyCode(socksPort: number, host: string, port: number): Promise<number> {
  return new Promise((resolve) => {
    const client = connect(socksPort, '127.0.0.1', () => client.write(Buffer.concat([Buffer.from([5, 1, 0]), request(host, port)])));
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => client.destroy(), 5_000);
    client.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      // The method choice (2 bytes), then the reply's code in its second byte.
      if (got.length >= 4) {
        clearTimeout(timer);
        client.destroy();
        resolve(got[3]!);
      }
    });
    client.on('error', () => undefined);
    client.on('close', () => {
      clearTimeout(timer);
      resolve(got.length >= 4 ? got[3]! : -1);
    });
  });
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
  });
}

describe('SOCKS5 to destinations only the node may reach', { timeout: 120_000 }, () => {
  const servers: Server[] = [];
  const accepted: string[] = [];
  const handed: string[] = [];
  let quits = 0;
  let admin: AdminServer;
  let adminPort = 0;
  let recorderPort = 0;
  let recorder6 = false;
  let socksPort = 0;
  let addresses: NodeAddresses;
  /** A non-loopback IPv4 address of this machine: a node address as the agent sees its own. */
  const nodeIp = Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;

  before(async () => {
    // Something of the node on every IPv4 address and on ::1, recording each connection it receives.
    const record = (socket: Socket): void => {
      accepted.push(`${socket.localAddress}:${socket.localPort}`);
      socket.destroy();
    };
    const v4 = createServer(record);
    servers.push(v4);
    recorderPort = await listen(v4, 0, '0.0.0.0');
    const v6 = createServer(record);
    servers.push(v6);
    recorder6 = await listen(v6, recorderPort, '::1').then(
      () => true,
      () => false, // no IPv6 loopback here: the ::1 case still checks the reply code
    );
    admin = new AdminServer({ store: new WorkloadStore(), node: 'n1', log: silent, quit: () => quits++ });
    adminPort = (await admin.listen('127.0.0.1', 0)).port;

    addresses = new NodeAddresses(silent);
    const destinations: DestinationRules = { nodeAddresses: () => addresses.block, agentPorts: new Set([15001, 15006, 15008, 15080, 15020, 15021, adminPort]) };
    const store = meshStore();
    // What the outbound path would do with an accepted request: connect and relay. It dials only this
    // machine's own addresses (where a missing refusal would land); anything else is only noted.
    const handoff = (socket: Socket, _source: unknown, dst: Address): void => {
      handed.push(`${dst.ip}:${dst.port}`);
      const local = dst.ip === '::1' || dst.ip.startsWith('127.') || dst.ip === '0.0.0.0' || addresses.list.includes(dst.ip);
      if (!local) return void socket.destroy();
      const upstream = connect(dst.port, dst.ip);
      upstream.on('error', () => socket.destroy());
      socket.on('error', () => upstream.destroy());
      socket.pipe(upstream).pipe(socket);
      socket.resume();
    };
    const front = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => void serveSocksConnection(socket, POD, { store, handoff, destinations, log: silent }));
    servers.push(front);
    socksPort = await listen(front, 0, '127.0.0.1');
  });

  after(async () => {
    addresses?.close();
    servers.forEach((s) => s.close());
    await admin?.close();
  });

  it('the recorder counts a connection it receives (the control)', async () => {
    await new Promise<void>((resolve) => connect(recorderPort, '127.0.0.1').once('close', () => resolve()).on('error', () => undefined));
    assert.equal(accepted.length, 1);
    accepted.length = 0;
  });

  it('refuses each forbidden class with 0x02, and nothing on the node receives a connection', async () => {
    assert.ok(nodeIp, 'this machine has no non-loopback IPv4 address to test the node-address case with');
    const forbidden: readonly [string, string, number][] = [
      ['loopback', '127.0.0.1', recorderPort],
      ['loopback (all of 127/8)', '127.0.0.2', recorderPort],
      ['IPv6 loopback', '::1', recorderPort],
      ['IPv4-mapped loopback', '::ffff:127.0.0.1', recorderPort],
      ['unspecified (reaches this host on Linux)', '0.0.0.0', recorderPort],
      ['cloud metadata (link-local)', '169.254.169.254', 80],
      ['link-local', '169.254.1.1', recorderPort],
      ['multicast', '224.0.0.1', recorderPort],
      ['broadcast', '255.255.255.255', recorderPort],
      ['the node\'s own address', nodeIp, recorderPort],
      ['a name that resolves to loopback', 'localhost', recorderPort],
      ['the agent\'s HBONE port on another address', '192.0.2.1', 15008],
      ['the agent\'s outbound port on another address', '192.0.2.1', 15001],
      ['the admin server', '127.0.0.1', adminPort],
    ];
    const codes: Record<string, number> = {};
    for (const [what, host, port] of forbidden) codes[`${what} ${host}:${port}`] = await replyCode(socksPort, host, port);
    const expected = Object.fromEntries(Object.keys(codes).map((k) => [k, SOCKS5_REPLY.notAllowed]));
    assert.deepEqual(codes, expected);
    assert.deepEqual(handed, [], 'a forbidden destination was handed to the outbound path');
    // Let any stray connection land before looking.
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(accepted, [], `the node received connections${recorder6 ? '' : ' (no ::1 recorder here)'}`);
  });

  it('a destination outside those classes is still served (0x00)', async () => {
    assert.equal(await replyCode(socksPort, '192.0.2.1', 80), SOCKS5_REPLY.succeeded);
    assert.deepEqual(handed, ['192.0.2.1:80']);
    handed.length = 0;
  });

  it('POST /quitquitquit through SOCKS5 does not stop the agent: curl is refused by the proxy', async () => {
    const code = await new Promise<number | null>((resolve) => {
      const curl = spawn('curl', ['-s', '--max-time', '5', '-X', 'POST', '--socks5', `127.0.0.1:${socksPort}`, `http://127.0.0.1:${adminPort}/quitquitquit`], { stdio: 'ignore' });
      curl.once('exit', resolve);
    });
    assert.equal(code, 97, 'curl: the SOCKS5 proxy refused the connection');
    assert.equal(quits, 0, 'the admin server was asked to quit');
    assert.deepEqual(handed, []);
  });
});

describe('the destination rules', () => {
  const rules: DestinationRules = { nodeAddresses: () => addressBlock(['172.31.0.11', 'fd00::11']), agentPorts: new Set([15000, 15008]) };
  const allowed = (ip: string, port = 80): boolean => judgeDestination(unmapIpv4(ip), port, rules).allowed;

  it('judge IPv4-mapped and compressed IPv6 forms as the address they reach', () => {
    assert.equal(unmapIpv4('::ffff:127.0.0.1'), '127.0.0.1');
    assert.equal(unmapIpv4('0:0:0:0:0:ffff:a9fe:a9fe'), '169.254.169.254');
    assert.equal(unmapIpv4('::FFFF:AC1F:B'), '172.31.0.11');
    assert.equal(unmapIpv4('2001:db8::1'), '2001:db8::1');
    for (const ip of ['::ffff:127.0.0.1', '0:0:0:0:0:ffff:a9fe:a9fe', '::ffff:ac1f:b', '::', '::1', 'fe80::1', 'ff02::1', 'fd00:0::11']) assert.equal(allowed(ip), false, ip);
  });

  it('allow what is none of them, and refuse the agent\'s ports on any address', () => {
    assert.equal(allowed('10.250.7.20'), true);
    assert.equal(allowed('2001:db8::1'), true);
    assert.equal(allowed('10.250.7.20', 15008), false);
    assert.equal(allowed('172.31.0.12'), true);
    assert.equal(allowed('172.31.0.11'), false);
    assert.equal(allowed('239.255.255.250'), false);
  });
});

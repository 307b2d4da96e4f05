// SOCKS5 as the pods' 15080 listeners serve it (agent/tunnel/socks5/): the handshake over real loopback
// sockets, with curl as an independent client and raw bytes for what curl never sends (authentication
// only, BIND, an unknown address type, a request split across segments, bytes pipelined after it), and
// how a requested name resolves for a pod (its namespace's search path, then the node's resolver).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { after, describe, it } from 'node:test';
import { parseConfigFile } from '../../agent/config/load.js';
import { buildSnapshot } from '../../agent/state/build.js';
import { SOCKS5_REPLY, type Socks5Handshake, readSocks5Request, sendSocks5Reply } from '../../agent/tunnel/socks5/handshake.js';
import { resolveTarget } from '../../agent/tunnel/socks5/pod-listeners.js';

const servers: Server[] = [];
after(() => servers.forEach((s) => s.close()));

/** A SOCKS5 server on loopback that hands each handshake's outcome (and the socket) to the test. */
async function socksServer(onRequest: (result: Socks5Handshake, socket: Socket) => void, timeoutMs?: number): Promise<number> {
  const server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => {
    socket.on('error', () => undefined);
    void readSocks5Request(socket, timeoutMs).then((result) => onRequest(result, socket));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

/** Sends `chunks` (a pause between each), then FIN unless told not to, and collects the answer until the server closes. */
function exchange(port: number, chunks: readonly Buffer[], end = true): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const client = connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    client.on('data', (d) => got.push(d));
    client.on('error', reject);
    client.on('close', () => resolve(Buffer.concat(got)));
    client.once('connect', async () => {
      for (const chunk of chunks) {
        client.write(chunk);
        await new Promise((r) => setTimeout(r, 20));
      }
      if (end) client.end();
    });
  });
}

const GREETING = Buffer.from([5, 1, 0]);
const connectTo = (a: number, b: number, c: number, d: number, port: number): Buffer => Buffer.from([5, 1, 0, 1, a, b, c, d, port >> 8, port & 0xff]);

describe('SOCKS5 handshake', () => {
  it('carries curl to an HTTP server by address and by name, the reply first and then the bytes', async () => {
    const web = createHttpServer((req, res) => res.end(`hello ${req.url}`));
    servers.push(web);
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
    const webPort = (web.address() as AddressInfo).port;
    const seen: Socks5Handshake[] = [];
    const port = await socksServer((result, socket) => {
      seen.push(result);
      if (!result.ok) return;
      sendSocks5Reply(socket, SOCKS5_REPLY.succeeded);
      const upstream = connect(webPort, '127.0.0.1');
      socket.pipe(upstream).pipe(socket);
      socket.resume();
    });
    const curl = (proxyFlag: string, host: string): Promise<string> =>
      new Promise((resolve) => {
        const child = spawn('curl', ['-s', '--max-time', '5', proxyFlag, `127.0.0.1:${port}`, `http://${host}:${webPort}/x`]);
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.on('close', () => resolve(out));
      });
    assert.equal(await curl('--socks5', '127.0.0.1'), 'hello /x');
    assert.equal(await curl('--socks5-hostname', 'web.shop.svc.cluster.local.'), 'hello /x');
    assert.deepEqual(
      seen.map((s) => (s.ok ? s.request : s.reason)),
      [
        { host: '127.0.0.1', kind: 'ip', port: webPort },
        { host: 'web.shop.svc.cluster.local', kind: 'name', port: webPort },
      ],
    );
  });

  it('reads a request split across segments and leaves the bytes pipelined after it for the relay', async () => {
    let rest = '';
    const port = await socksServer((result, socket) => {
      assert.ok(result.ok);
      assert.deepEqual(result.request, { host: '10.1.2.3', kind: 'ip', port: 8080 });
      sendSocks5Reply(socket, SOCKS5_REPLY.succeeded);
      socket.on('data', (d: Buffer) => (rest += d.toString()));
      socket.once('end', () => socket.end());
      socket.resume();
    });
    const request = connectTo(10, 1, 2, 3, 8080);
    const answer = await exchange(port, [GREETING.subarray(0, 1), Buffer.concat([GREETING.subarray(1), request.subarray(0, 6)]), Buffer.concat([request.subarray(6), Buffer.from('GET / HTTP/1.1\r\n')])]);
    // Method "no authentication", then success; the application's bytes reached the relay intact.
    assert.deepEqual([...answer.subarray(0, 4)], [5, 0, 5, 0]);
    assert.equal(rest, 'GET / HTTP/1.1\r\n');
  });

  it('parses IPv6 addresses and host names, lower-cased without the root dot', async () => {
    const requests: unknown[] = [];
    const port = await socksServer((result, socket) => {
      requests.push(result.ok ? result.request : result.reason);
      socket.destroy();
    });
    const v6 = Buffer.from([5, 1, 0, 4, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80]);
    const name = Buffer.concat([Buffer.from([5, 1, 0, 3, 8]), Buffer.from('Web.Shop'), Buffer.from([0x1f, 0x90])]);
    await exchange(port, [Buffer.concat([GREETING, v6])]);
    await exchange(port, [Buffer.concat([GREETING, name])]);
    assert.deepEqual(requests, [
      { host: 'fd00:0:0:0:0:0:0:1', kind: 'ip', port: 80 },
      { host: 'web.shop', kind: 'name', port: 8080 },
    ]);
  });

  it('refuses what is not served with RFC 1928\'s answers: authentication only, BIND, an unknown address type', async () => {
    const reasons: string[] = [];
    const port = await socksServer((result) => reasons.push(result.ok ? 'accepted' : result.reason));
    // Username/password only: method 0xff, then closed.
    assert.deepEqual([...(await exchange(port, [Buffer.from([5, 1, 2])]))], [5, 0xff]);
    // BIND (2): "command not supported".
    const bind = Buffer.from([5, 2, 0, 1, 127, 0, 0, 1, 0, 80]);
    assert.deepEqual([...(await exchange(port, [Buffer.concat([GREETING, bind])]))], [5, 0, 5, SOCKS5_REPLY.commandNotSupported, 0, 1, 0, 0, 0, 0, 0, 0]);
    // Address type 9: "address type not supported".
    const odd = Buffer.from([5, 1, 0, 9, 1, 2, 3, 4, 0, 80]);
    assert.deepEqual([...(await exchange(port, [Buffer.concat([GREETING, odd])]))], [5, 0, 5, SOCKS5_REPLY.addressTypeNotSupported, 0, 1, 0, 0, 0, 0, 0, 0]);
    // SOCKS4 is not SOCKS5: closed without an answer.
    assert.equal((await exchange(port, [Buffer.from([4, 1, 0, 80, 127, 0, 0, 1, 0])])).length, 0);
    assert.equal(reasons.length, 4);
    assert.match(reasons[0]!, /requires authentication/);
    assert.match(reasons[1]!, /command 2 is not supported/);
    assert.match(reasons[2]!, /address type 9/);
    assert.match(reasons[3]!, /not SOCKS5/);
  });

  it('gives up on a client that never completes its request', async () => {
    const reasons: string[] = [];
    const port = await socksServer((result) => reasons.push(result.ok ? 'accepted' : result.reason), 200);
    const answer = await exchange(port, [GREETING], false);
    assert.deepEqual([...answer], [5, 0]);
    assert.match(reasons[0]!, /no complete SOCKS5 request within 200 ms/);
  });
});

describe('SOCKS5 name resolution for a pod', () => {
  const parsed = parseConfigFile(
    `apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop}
spec: {containers: [{name: app, command: [c]}]}
status: {podIP: 10.250.0.10}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {clusterIP: 10.96.250.20, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: other}
spec: {clusterIP: 10.96.250.30, ports: [{port: 80}]}
`,
    'socks5.yaml',
  );
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error'), []);
  const snapshot = buildSnapshot(parsed.objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
  const pod = snapshot.workloads.get('shop/client')!;
  const asked: string[] = [];
  const lookup = async (name: string): Promise<string | undefined> => {
    asked.push(name);
    return name === 'example.test' ? '192.0.2.80' : undefined;
  };
  const resolve = (host: string, kind: 'ip' | 'name' = 'name') => resolveTarget(snapshot, pod, { host, kind, port: 80 }, lookup);

  it('finds Services on the pod\'s search path, as its resolver would, without asking DNS', async () => {
    assert.equal(await resolve('web'), '10.96.250.20');
    assert.equal(await resolve('web.shop'), '10.96.250.20');
    assert.equal(await resolve('web.other'), '10.96.250.30');
    assert.equal(await resolve('web.other.svc'), '10.96.250.30');
    assert.equal(await resolve('web.other.svc.cluster.local'), '10.96.250.30');
    assert.deepEqual(asked, []);
  });

  it('asks the node\'s resolver for other names, and takes addresses as they are', async () => {
    assert.equal(await resolve('example.test'), '192.0.2.80');
    assert.equal(await resolve('missing.test'), undefined);
    assert.deepEqual(asked, ['example.test', 'missing.test']);
    assert.equal(await resolve('10.96.250.20', 'ip'), '10.96.250.20');
  });
});

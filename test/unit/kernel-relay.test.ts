// Plain TCP relays spliced by the addon's thread (agent/tunnel/kernel-relay.ts over
// native/src/splice_engine.c), on loopback: order (bytes queued before the relay started included),
// counts, half-close both ways, TCP's backpressure with a reader that stops, a destroy (policy close)
// ending the relay, the idle timeout, the cases left to JavaScript, a relay the addon refuses, and ones
// epoll refuses.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, writeFileSync } from 'node:fs';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { type SpliceOutcome, socketFd, spliceRelay } from '../../agent/redirect/bpf-binding.js';
import { kernelRelay } from '../../agent/tunnel/kernel-relay.js';
import type { RelayResult } from '../../agent/tunnel/relay.js';
import { quietUntilClosed } from './helpers/idle-close.js';

const servers: Server[] = [];
after(() => servers.forEach((s) => s.close()));

async function listener(): Promise<Server> {
  const server = createServer({ pauseOnConnect: true, allowHalfOpen: true });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return server;
}

const port = (s: Server): number => (s.address() as AddressInfo).port;
const accepted = (s: Server): Promise<Socket> => new Promise((r) => s.once('connection', r));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * client → [proxy: downstream | upstream] → server, the proxy's sockets as the agent holds them: the
 * accepted one never read (pauseOnConnect), the dialled one reading once connected unless `pausedUpstream`.
 */
async function pair(pausedUpstream = false): Promise<{ client: Socket; server: Socket; downstream: Socket; upstream: Socket }> {
  const front = await listener();
  const back = await listener();
  const client = connect({ port: port(front), host: '127.0.0.1', allowHalfOpen: true });
  const downstream = await accepted(front);
  const serverSide = accepted(back);
  const upstream = connect({ port: port(back), host: '127.0.0.1', allowHalfOpen: true });
  if (pausedUpstream) upstream.pause();
  await new Promise((r) => upstream.once('connect', r));
  const server = await serverSide;
  server.resume();
  return { client, server, downstream, upstream };
}

function collect(socket: Socket): { text: () => string; ended: Promise<void> } {
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString()));
  return { text: () => text, ended: new Promise((r) => socket.once('end', () => r())) };
}

test('bytes go both ways in order, those sent before the relay started first; FINs cross; counts are exact', async () => {
  // A server that speaks first is spliced only if its bytes are still in the kernel: paused here.
  const { client, server, downstream, upstream } = await pair(true);
  const atServer = collect(server);
  const atClient = collect(client);
  client.write('early-request;');
  server.write('early-response;');
  await sleep(50);
  const relayed = kernelRelay(downstream, upstream);
  assert.ok(relayed, 'two plain sockets are spliced');
  client.write('late-request;');
  server.write('late-response;');
  client.end();
  await atServer.ended;
  // The server answers after the client's FIN (half-close), then closes its side.
  server.end('after-fin;');
  await atClient.ended;
  const result: RelayResult = await relayed;
  assert.equal(atServer.text(), 'early-request;late-request;');
  assert.equal(atClient.text(), 'early-response;late-response;after-fin;');
  assert.deepEqual(result, { bytesSent: 27, bytesReceived: 39 });
  assert.ok(downstream.destroyed && upstream.destroyed, 'the proxy sockets are closed once the relay reports');
});

test('a reader that stops reading stops its writer: the relay holds no growing buffer, and nothing is lost', async () => {
  const { client, server, downstream, upstream } = await pair();
  const relayed = kernelRelay(downstream, upstream)!;
  server.pause();
  const chunk = Buffer.alloc(1 << 20, 7);
  const hash = createHash('sha256');
  let written = 0;
  // 64 MiB into a reader that reads nothing: what leaves the client sits in socket buffers and the
  // relay's pipe, which TCP and the pipe bound (a relay without backpressure would take it all).
  for (let i = 0; i < 64; i++) {
    client.write(chunk);
    hash.update(chunk);
    written += chunk.length;
  }
  await sleep(500);
  const inFlight = written - client.writableLength;
  assert.ok(inFlight < 40 << 20, `at most socket buffers' worth left the client (${inFlight >> 20} MiB of ${written >> 20})`);
  const received = createHash('sha256');
  let bytes = 0;
  server.on('data', (d: Buffer) => {
    received.update(d);
    bytes += d.length;
  });
  server.resume();
  client.end();
  await new Promise((r) => server.once('end', r));
  server.end();
  const result = await relayed;
  assert.equal(bytes, written);
  assert.equal(received.digest('hex'), hash.digest('hex'));
  assert.equal(result.bytesSent, written);
});

test("destroying one of the proxy's sockets (a policy close) ends the relay and both connections", async () => {
  const { client, server, downstream, upstream } = await pair();
  const relayed = kernelRelay(downstream, upstream)!;
  const clientClosed = new Promise((r) => client.once('close', r));
  const serverEnded = new Promise((r) => {
    server.once('end', r);
    server.once('error', r);
  });
  client.on('error', () => undefined);
  client.write('hello');
  await sleep(20);
  downstream.destroy(new Error('closed by policy'));
  const result = await relayed;
  await serverEnded;
  client.destroy();
  await clientClosed;
  assert.equal(result.bytesSent, 5);
  assert.deepEqual(result.error, { side: 'downstream', message: 'closed by policy' });
  assert.ok(upstream.destroyed);
});

test('the splice thread closes both connections once no byte moved either way for the idle time, never while bytes flow', async () => {
  const idleMs = 300;
  const { client, server, downstream, upstream } = await pair();
  const relayed = kernelRelay(downstream, upstream, idleMs)!;
  assert.ok(relayed, 'two plain sockets are spliced');
  let atServer = 0;
  server.on('data', (d: Buffer) => (atServer += d.length));
  server.on('error', () => undefined);
  const serverClosed = new Promise((r) => server.once('close', r));
  const quiet = await quietUntilClosed(client, idleMs);
  // The sweep runs at most an eighth of the idle time late, plus this busy machine's scheduling.
  assert.ok(quiet >= idleMs - 1 && quiet < idleMs * 1.125 + 400, `closed ${Math.round(quiet)} ms after the last byte; the idle time is ${idleMs} ms`);
  const result = await relayed;
  server.end();
  await serverClosed;
  assert.equal(atServer, 12, 'every byte crossed before the relay went idle');
  assert.equal(result.bytesSent, 12);
  assert.equal(result.error?.reason, 'idle-timeout', `the relay reports its idle timeout: ${JSON.stringify(result.error)}`);
  assert.match(result.error?.message ?? '', /^idle timeout: no byte moved either way for 300 ms/);
  assert.ok(downstream.destroyed && upstream.destroyed);
});

test('left to JavaScript: a socket holding bytes Node already read, and anything that is not a plain socket', async () => {
  const { client, server, downstream, upstream } = await pair();
  upstream.resume();
  upstream.pause();
  server.write('read ahead');
  await new Promise((r) => upstream.once('readable', r));
  assert.ok(upstream.readableLength > 0);
  assert.equal(kernelRelay(downstream, upstream), undefined);
  assert.equal(kernelRelay(downstream, { not: 'a socket' }), undefined);
  for (const s of [client, server, downstream, upstream]) s.destroy();
});

test('forty relays at once, each moving 2 MiB both ways, share the thread fairly and lose nothing', async () => {
  const pairs = await Promise.all(Array.from({ length: 40 }, () => pair(true)));
  const size = 2 << 20;
  const results = await Promise.all(
    pairs.map(async ({ client, server, downstream, upstream }, i) => {
      const relayed = kernelRelay(downstream, upstream)!;
      const payload = Buffer.alloc(size, i);
      let atServer = 0;
      let atClient = 0;
      server.on('data', (d: Buffer) => (atServer += d.length));
      client.on('data', (d: Buffer) => (atClient += d.length));
      client.end(payload);
      server.write(payload);
      await new Promise((r) => server.once('end', r));
      server.end();
      await new Promise((r) => client.once('end', r));
      client.destroy();
      server.destroy();
      return { result: await relayed, atServer, atClient };
    }),
  );
  for (const { result, atServer, atClient } of results) {
    assert.equal(atServer, size);
    assert.equal(atClient, size);
    assert.deepEqual(result, { bytesSent: size, bytesReceived: size });
  }
});

test('a relay the addon refuses goes to JavaScript with its sockets still reading: a server that speaks first is heard', async () => {
  // In a process whose addon path is empty, spliceRelay fails as it would for any refusal (no fds left,
  // no thread); before 2026-12-05 the dialled socket stayed stopped, and a server-first protocol (iperf3)
  // hung. The upstream is dialled as the agent dials (connectPlain: reading once connected).
  const script = `
    import { createServer, connect } from 'node:net';
    import { connectPlain } from './agent/tunnel/outbound.ts';
    import { relay } from './agent/tunnel/relay.ts';
    const back = createServer((s) => { s.write('hello-first;'); s.pipe(s); }).listen(0, '127.0.0.1');
    await new Promise((r) => back.once('listening', r));
    const front = createServer({ pauseOnConnect: true, allowHalfOpen: true }, async (down) => {
      const up = await connectPlain({ ip: '127.0.0.1', port: back.address().port });
      await relay(down, up);
    }).listen(0, '127.0.0.1');
    await new Promise((r) => front.once('listening', r));
    const client = connect(front.address().port, '127.0.0.1');
    let got = '';
    client.on('data', (d) => { got += d; if (got === 'hello-first;ping') { console.log(got); process.exit(0); } });
    client.write('ping');
    setTimeout(() => { console.log('stalled with ' + JSON.stringify(got)); process.exit(1); }, 3000);
  `;
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: new URL('../..', import.meta.url).pathname,
    env: { ...process.env, AMBIT_NATIVE_ADDON: '' },
    encoding: 'utf8',
    timeout: 20_000,
  });
  assert.equal(child.stdout.trim(), 'hello-first;ping', `the fallback relay ${child.stdout}${child.stderr}`);
});

test('a relay with a socket epoll will not take, either end, ends with that error, reported by the relay thread', async () => {
  // A regular file cannot be polled (EPERM). The thread registers both ends itself, after the call has
  // returned: the failure comes through the callback, for the end it happened on.
  const sockets = await pair();
  const { downstream, upstream } = sockets;
  const file = join(mkdtempSync(join(tmpdir(), 'ambit-splice-')), 'not-a-socket');
  writeFileSync(file, 'x');
  const fd = openSync(file, 'r');
  const outcome = (down: number, up: number): Promise<SpliceOutcome> =>
    new Promise<SpliceOutcome>((resolve, reject) => {
      const started = spliceRelay(down, up, resolve);
      if (!started.ok) reject(new Error(started.error.message));
    });
  try {
    const refused = { bytesSent: 0, bytesReceived: 0 };
    assert.deepEqual(await outcome(socketFd(downstream)!, fd), { ...refused, error: { side: 'upstream', message: 'register: Operation not permitted' } });
    assert.deepEqual(await outcome(fd, socketFd(upstream)!), { ...refused, error: { side: 'downstream', message: 'register: Operation not permitted' } });
  } finally {
    closeSync(fd);
    for (const socket of Object.values(sockets)) socket.destroy();
  }
});

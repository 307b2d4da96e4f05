// Run inside a fresh network namespace by splice-requeue.test.ts: a client's whole payload waits unread
// in the relay's downstream socket, many times what the splice thread moves for one relay per turn,
// and the client sends nothing more; then the relay starts. Nothing arrives after that to raise an
// epoll event, so the bytes reach the server only if the thread runs the relay again by itself.
// Prints one JSON line: bytes queued before the relay, bytes the server got and in how long (or where
// they stopped), whether they arrived intact, and the relay's own count.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { kernelRelay } from '../../../agent/tunnel/kernel-relay.js';

const [bytes, boundMs] = process.argv.slice(2).map(Number) as [number, number];

// This namespace's TCP buffers start large enough that nothing on the way blocks: the client's send
// buffer takes the payload in one write, the relay's downstream socket holds all of it unread (the
// advertised window is a fraction of the buffer), and neither the relay's upstream send buffer nor
// the server's receive buffer ever makes a splice wait (a relay stopped by EAGAIN would get EPOLLOUT).
const buffer = 4 * bytes;
writeFileSync('/proc/sys/net/ipv4/tcp_rmem', `4096 ${buffer} ${buffer}`);
writeFileSync('/proc/sys/net/ipv4/tcp_wmem', `4096 ${buffer} ${buffer}`);

async function listener(): Promise<Server> {
  const server = createServer({ pauseOnConnect: true, allowHalfOpen: true });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}
const port = (server: Server): number => (server.address() as AddressInfo).port;
const accepted = (server: Server): Promise<Socket> => new Promise((resolve) => server.once('connection', resolve));

/** Bytes waiting unread in the established socket whose local port is `localPort` (ss's Recv-Q). */
function receiveQueue(localPort: number): number {
  const line = execFileSync('ss', ['-Htn', 'state', 'established', 'sport', '=', `:${localPort}`], { encoding: 'utf8' }).trim();
  return Number(line.split(/\s+/)[0] ?? 0);
}

// client → [downstream | relay | upstream] → server, the relay's sockets as the agent holds them.
const front = await listener();
const back = await listener();
const client = connect({ port: port(front), host: '127.0.0.1', allowHalfOpen: true });
const downstream = await accepted(front);
const serverSide = accepted(back);
const upstream = connect({ port: port(back), host: '127.0.0.1', allowHalfOpen: true });
await new Promise((resolve) => upstream.once('connect', resolve));
const server = await serverSide;

const payload = Buffer.alloc(bytes);
for (let i = 0; i < bytes; i += 4) payload.writeUInt32LE(i, i);
await new Promise<void>((resolve, reject) => client.write(payload, (err) => (err ? reject(err) : resolve())));
// Written is not yet delivered: the last segments cross loopback as the downstream socket's window opens.
let queued = receiveQueue(port(front));
for (const deadline = Date.now() + 10_000; queued < bytes && Date.now() < deadline; queued = receiveQueue(port(front))) {
  await new Promise((resolve) => setTimeout(resolve, 10));
}

const hash = createHash('sha256');
let received = 0;
const started = performance.now();
const arrived = new Promise<number>((resolve) => {
  server.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    received += chunk.length;
    if (received === bytes) resolve(performance.now() - started);
  });
});
server.resume();
const relayed = kernelRelay(downstream, upstream);
if (!relayed) throw new Error('the addon did not take the relay (is native/ built? make native)');
const ms = await Promise.race([arrived, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), boundMs))]);
if (ms === undefined) {
  console.log(JSON.stringify({ bytes, queued, received, stalled: true }));
  process.exit(0);
}
client.end();
await new Promise((resolve) => server.once('end', resolve));
server.end();
const result = await relayed;
const intact = hash.digest('hex') === createHash('sha256').update(payload).digest('hex');
console.log(JSON.stringify({ bytes, queued, received, ms: Math.round(ms), intact, bytesSent: result.bytesSent }));
// Every socket left goes with this process (the test then deletes the namespace).
process.exit(0);

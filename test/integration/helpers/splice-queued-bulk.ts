// Run inside a fresh network namespace by splice-requeue.test.ts: a client's whole payload waits unread
// in the relay's downstream socket, many times what the splice thread moves for one relay per turn,
// and the client sends nothing more; then the relay starts. Nothing arrives after that to raise an
// epoll event, so the bytes reach the server only if the thread runs the relay again by itself.
// Prints one JSON line: bytes queued before the relay, bytes the server got and in how long (or where
// they stopped), whether they arrived intact, and the relay's own count.

import { createHash } from 'node:crypto';
import { kernelRelay } from '../../../agent/tunnel/kernel-relay.js';
import { queueUnread, raiseTcpBuffers, relayedPair } from './splice-netns.js';

const [bytes, boundMs] = process.argv.slice(2).map(Number) as [number, number];

raiseTcpBuffers(4 * bytes);
const pair = await relayedPair();
const { client, downstream, upstream, server } = pair;

const payload = Buffer.alloc(bytes);
for (let i = 0; i < bytes; i += 4) payload.writeUInt32LE(i, i);
const queued = await queueUnread(pair, payload);

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

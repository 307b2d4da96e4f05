// Run inside a fresh network namespace: two SO_REUSEPORT listeners on one port, one that never
// accepts (an agent that stops) and one that does (its successor); clients connect, the first
// listener is closed with connections waiting in its accept queue, and each client then checks that
// its connection still carries bytes. Prints one JSON line: how many were queued, answered, reset.

import { closeSync, writeFileSync } from 'node:fs';
import { type Socket, connect, createServer } from 'node:net';
import { transparentListen } from '../../../agent/redirect/bpf-binding.js';

const [migrate, count] = process.argv.slice(2).map(Number) as [number, number];
const PORT = 15999;
writeFileSync('/proc/sys/net/ipv4/tcp_migrate_req', String(migrate));

const old = transparentListen('127.0.0.1', PORT, 1024);
if (!old.ok) throw new Error(old.error.message);
let accepted = 0;
const successor = createServer((s) => {
  accepted++;
  s.on('error', () => undefined);
  s.pipe(s);
});
await new Promise<void>((resolve) => successor.listen({ host: '127.0.0.1', port: PORT, reusePort: true, backlog: 1024 }, resolve));

const clients: Socket[] = [];
await Promise.all(
  Array.from({ length: count }, (_, i) => new Promise<void>((resolve, reject) => {
    // Distinct source ports spread the connections over both listeners (the group hashes the 4-tuple).
    const s = connect({ host: '127.0.0.1', port: PORT, localPort: 20000 + i });
    s.once('connect', () => resolve());
    s.once('error', reject);
    clients.push(s);
  })),
);
// The handshakes are done; what the successor has not accepted after it settles waits in the old queue.
let last = -1;
for (let i = 0; i < 50 && accepted !== last; i++) {
  last = accepted;
  await new Promise((r) => setTimeout(r, 50));
}
const queued = count - accepted;
closeSync(old.value);

const outcomes = await Promise.all(
  clients.map((s) => new Promise<'answered' | 'reset' | 'silent'>((resolve) => {
    const timer = setTimeout(() => resolve('silent'), 3000);
    s.once('data', () => (clearTimeout(timer), resolve('answered')));
    s.once('error', () => (clearTimeout(timer), resolve('reset')));
    s.once('close', () => (clearTimeout(timer), resolve('reset')));
    s.write('x');
  })),
);
const tally = (what: string): number => outcomes.filter((o) => o === what).length;
console.log(JSON.stringify({ migrate, connections: count, queued, answered: tally('answered'), reset: tally('reset'), silent: tally('silent') }));
for (const s of clients) s.destroy();
successor.close();

// Run by splice-add-latency.test.ts in a process of its own: how long kernelRelay() holds the
// JavaScript thread, with the splice thread idle and then while it relays bulk bytes flat out. The bulk
// is a ring of relays over loopback connections (each relay sends into the connection the next relay
// reads), each primed with some bytes: the splice thread moves them round and round, pumping without
// pause, until one socket is shut down (which ends one relay, and the rest in turn); no process moves a byte of it, so this process's JavaScript
// thread does nothing but the calls measured. The ring is stopped right after the calls, or by a worker
// thread after `ringMs` if the JavaScript thread is held that long.
// Prints one JSON line: each call's duration (ms) idle and during the bulk, with the part of it this
// thread waited for a CPU, whether the ring was still running after the last call, the bytes the ring moved, and how many of the relays added during it
// then carried a message. Needs --expose-gc.

import { closeSync, openSync, readFileSync } from 'node:fs';
import { type AddressInfo, type Socket, connect, createServer } from 'node:net';
import { setImmediate as turn } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { shutdownSocket, socketFd } from '../../../agent/redirect/bpf-binding.js';
import { kernelRelay } from '../../../agent/tunnel/kernel-relay.js';
import type { RelayResult } from '../../../agent/tunnel/relay.js';
import { type RelayedPair, relayedPair } from './splice-netns.js';

declare function gc(): void;

const [ringLinks, ringBytes, adds, ringMs, boundMs] = process.argv.slice(2).map(Number) as [number, number, number, number, number];
const ADDON = process.env['AMBIT_NATIVE_ADDON'] ?? fileURLToPath(new URL('../../../native/build/Release/ambit_bpf.node', import.meta.url));

// Each relay takes six fds (two dups, two pipes), and the kernel grows a threaded process's fd table by
// doubling it after an RCU grace period: tens of milliseconds on a busy machine, whoever opens the fd.
// Grown once here (it never shrinks), so that this measures the splice thread, not that.
for (const fd of Array.from({ length: 4096 }, () => openSync('/dev/null', 'r'))) closeSync(fd);

const pairs = async (n: number): Promise<RelayedPair[]> => {
  const out: RelayedPair[] = [];
  for (let i = 0; i < n; i++) out.push(await relayedPair());
  return out;
};
const warmUp = await pairs(3);
const idle = await pairs(adds);
const during = await pairs(adds);

/** A loopback connection: [the dialling end, the accepted end], neither read yet. */
async function connection(): Promise<[Socket, Socket]> {
  const server = createServer({ pauseOnConnect: true });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const dialled = connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1' });
  dialled.pause();
  await new Promise((resolve) => dialled.once('connect', resolve));
  return [dialled, await accepted];
}
const links: [Socket, Socket][] = [];
for (let i = 0; i < ringLinks; i++) links.push(await connection());
// Primed: these bytes wait in each accepted end until the ring starts.
for (const [dialled] of links) await new Promise<void>((resolve, reject) => dialled.write(Buffer.alloc(ringBytes, 7), (err) => (err ? reject(err) : resolve())));

/** How long this thread has waited for a CPU while runnable, in ms (run_delay in /proc/thread-self/schedstat). */
const waitedForCpu = (): number => Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[1]) / 1e6;

interface Timed {
  /** How long the call took. */
  readonly ms: number;
  /** The part of it the thread waited for a CPU (the machine's other work, not this call's). */
  readonly cpuWaitMs: number;
}

/** Starts a relay per pair, one per turn of the event loop, and returns how long each call took. */
async function timedAdds(of: readonly RelayedPair[]): Promise<Timed[]> {
  const calls: Timed[] = [];
  for (const { downstream, upstream } of of) {
    await turn();
    const waited = waitedForCpu();
    const start = performance.now();
    const relayed = kernelRelay(downstream, upstream);
    const ms = performance.now() - start;
    calls.push({ ms, cpuWaitMs: waitedForCpu() - waited });
    if (!relayed) throw new Error('the addon did not take the relay (is native/ built? make native)');
  }
  return calls;
}

// The ring's stopper runs on a thread of its own, to work while this one is held; started before any
// call is measured (a thread starting up competes with this one), and armed when the ring starts.
const stopper = new Worker(
  `const { parentPort, workerData } = require('node:worker_threads');
   parentPort.once('message', (fd) => setTimeout(() => require(workerData.addon).shutdownSocket(fd), workerData.ms));`,
  { eval: true, workerData: { addon: ADDON, ms: ringMs } },
);
await new Promise((resolve) => stopper.once('online', resolve));

// The first calls of a process pay for loading and compiling: not the splice thread's doing.
await timedAdds(warmUp);
// A garbage collection inside a call would count as its time: none is due right after this one.
gc();
const idleCalls = await timedAdds(idle);
gc();
// Link i's accepted end relays to link i+1's dialled end, the last to the first's: a ring.
const ring = links.map(([, accepted], i) => kernelRelay(accepted, links[(i + 1) % ringLinks]![0]));
if (ring.some((relay) => !relay)) throw new Error('the addon did not take the ring');
let ringOver = false;
const ringMoved = Promise.all(ring as Promise<RelayResult>[]).then((results) => {
  ringOver = true;
  return results.reduce((sum, r) => sum + r.bytesSent, 0);
});
stopper.postMessage(socketFd(links[0]![1]));
const duringCalls = await timedAdds(during);
const ringRunning = !ringOver;
shutdownSocket(socketFd(links[0]![1])!);
await stopper.terminate();
const moved = await ringMoved;

// Each relay added during the bulk carries a message once the thread takes it up.
const carried = await Promise.all(
  during.map(
    ({ client, server }) =>
      new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), boundMs);
        server.once('data', (chunk: Buffer) => {
          clearTimeout(timer);
          resolve(chunk.toString() === 'ping');
        });
        server.resume();
        client.write('ping');
      }),
  ),
);
const round = ({ ms, cpuWaitMs }: Timed): Timed => ({ ms: Math.round(ms * 1000) / 1000, cpuWaitMs: Math.round(cpuWaitMs * 1000) / 1000 });
console.log(JSON.stringify({ idle: idleCalls.map(round), during: duringCalls.map(round), ringRunning, moved, carried: carried.filter(Boolean).length }));
process.exit(0);

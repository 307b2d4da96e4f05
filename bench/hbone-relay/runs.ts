// The bench's three measurements, each with this process's CPU (user + system, every thread: the event
// loop, V8's GC helpers, libuv's pool) read around it: idle, 1 KB request/response at a fixed rate over
// one connection, and one bulk upload.

import type { Socket } from 'node:net';
import type { App, BenchMesh, Path } from './mesh.js';

const MESSAGE = 1024;
const BULK_CHUNK = 64 * 1024;
/** Past its schedule plus this, a rate run gives up and counts what is missing (a stalled path must not hang the bench). */
const GRACE_MS = 10_000;

export interface CpuSample {
  /** User plus system time. */
  readonly cpuUs: number;
  /**
   * The system part, kept apart: loopback TCP's receive work runs in softirq context and is charged to
   * whichever process is on the CPU, so on a shared machine others' traffic lands here too.
   */
  readonly systemUs: number;
  readonly wallMs: number;
}

export interface RateRun extends CpuSample {
  readonly requests: number;
  readonly completed: number;
  readonly latenciesUs: number[];
}

export interface BulkRun extends CpuSample {
  readonly bytes: number;
}

async function measure<T>(work: () => Promise<T>): Promise<T & CpuSample> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const result = await work();
  const { user, system } = process.cpuUsage(cpu0);
  return { ...result, cpuUs: user + system, systemUs: system, wallMs: performance.now() - t0 };
}

/** What the process burns doing nothing for `ms`: timers, keepalive PINGs, metrics' event-loop monitor. */
export function idle(ms: number): Promise<CpuSample> {
  return measure(() => new Promise<object>((resolve) => setTimeout(() => resolve({}), ms)));
}

/** A path that never answers must fail the bench, not hang it. */
const SETUP_TIMEOUT_MS = 10_000;

/** A bulk run slower than this has stalled (1 MiB/s would be a hundred times slower than seen here). */
const BULK_TIMEOUT_MS_PER_MIB = 1_000;

function within<T>(promise: Promise<T>, what: string, ms = SETUP_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms / 1000} s`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function connected(socket: Socket, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', (err) => reject(new Error(`${what}: ${err.message}`)));
  });
}

/** Reads until `bytes` more have arrived on `socket`. */
function receive(socket: Socket, bytes: number): Promise<void> {
  return new Promise((resolve) => {
    let left = bytes;
    const onData = (chunk: Buffer): void => {
      left -= chunk.length;
      if (left > 0) return;
      socket.off('data', onData);
      resolve();
    };
    socket.on('data', onData);
  });
}

/**
 * `rate` 1 KB requests a second for `seconds` on one connection to the echo, each sent on schedule
 * (a late timer sends all that are due, so a slow path shows as queueing, as bench/lib/load.ts does);
 * latency from a request's write to the last byte of its answer. One exchange before the clock starts,
 * so connection and tunnel setup are not counted.
 */
export async function rateRun(mesh: BenchMesh, path: Path, app: App, rate: number, seconds: number): Promise<RateRun> {
  const socket = mesh.dial(path, app);
  await within(connected(socket, `connecting to the echo over ${path}`), `connecting to the echo over ${path}`);
  const request = Buffer.alloc(MESSAGE, 'x');
  const warm = receive(socket, MESSAGE);
  socket.write(request);
  await within(warm, `the first 1 KB exchange over ${path}`);
  const count = Math.round(rate * seconds);
  const intervalMs = 1000 / rate;
  const run = await measure(
    () =>
      new Promise<{ requests: number; completed: number; latenciesUs: number[] }>((resolve) => {
        const sentAt: number[] = [];
        const latenciesUs: number[] = [];
        let received = 0;
        let timer: NodeJS.Timeout | undefined;
        const finish = (): void => {
          clearTimeout(timer);
          clearTimeout(deadline);
          socket.off('data', onData);
          resolve({ requests: count, completed: latenciesUs.length, latenciesUs });
        };
        const onData = (chunk: Buffer): void => {
          const now = performance.now();
          received += chunk.length;
          // The echo keeps order: the n-th KiB back answers the n-th request.
          while (latenciesUs.length < sentAt.length && received >= (latenciesUs.length + 1) * MESSAGE) latenciesUs.push(Math.round((now - sentAt[latenciesUs.length]!) * 1000));
          if (latenciesUs.length === count) finish();
        };
        socket.on('data', onData);
        const started = performance.now();
        const tick = (): void => {
          const now = performance.now();
          while (sentAt.length < count && now - started >= sentAt.length * intervalMs) {
            sentAt.push(performance.now());
            socket.write(request);
          }
          if (sentAt.length < count) timer = setTimeout(tick, Math.max(0, started + sentAt.length * intervalMs - performance.now()));
        };
        const deadline = setTimeout(finish, seconds * 1000 + GRACE_MS);
        tick();
      }),
  );
  socket.destroy();
  return run;
}

/** Uploads `bytes` to the sink on one connection, from its first byte to the sink reading the last. */
export async function bulkRun(mesh: BenchMesh, path: Path, app: App, bytes: number): Promise<BulkRun> {
  const socket = mesh.dial(path, app);
  await within(connected(socket, `connecting to the sink over ${path}`), `connecting to the sink over ${path}`);
  await within(receive(socket, 1), `the sink's first byte over ${path}`);
  const chunk = Buffer.alloc(BULK_CHUNK, 0x5a);
  const run = await measure(() =>
    within(
      new Promise<{ bytes: number }>((resolve, reject) => {
        mesh.onSinkEnd = (read) => (read === bytes ? resolve({ bytes: read }) : reject(new Error(`the sink read ${read} of ${bytes} bytes over ${path}`)));
        socket.once('error', (err) => reject(new Error(`bulk over ${path}: ${err.message}`)));
        let sent = 0;
        const write = (): void => {
          while (sent < bytes) {
            sent += chunk.length;
            if (!socket.write(chunk)) return void socket.once('drain', write);
          }
          socket.end();
        };
        write();
      }),
      `uploading ${bytes / 2 ** 20} MiB over ${path}`,
      (bytes / 2 ** 20) * BULK_TIMEOUT_MS_PER_MIB,
    ),
  );
  socket.destroy();
  return run;
}

// Fixed-rate 1 KB request/response load, run inside a client pod: prints one JSON object with every
// request's latency (microseconds, from the write of its request to the last byte of its response).
//
//   node --import tsx bench/lib/load.ts <host> <port> <rate/s> <seconds> persistent|per-connection
//
// persistent: one connection, requests sent on a fixed schedule (a late timer sends what is due, so a
// slow path shows up as queueing on the connection, not as a quietly lower rate). per-connection: a
// new connection per request, latency from connect() (it includes the redirect and both agents'
// connects), with at most MAX_IN_FLIGHT open so a stalled path cannot exhaust ports.

import { connect } from 'node:net';

const SIZE = 1024;
const MAX_IN_FLIGHT = 64;
// Past its schedule plus this grace the run stops and counts the missing answers as timeouts, so a
// stalled path cannot hang `make bench`.
const GRACE_MS = 5_000;

const [host = '', portArg = '', rateArg = '', secondsArg = '', mode = ''] = process.argv.slice(2);
const port = Number(portArg);
const rate = Number(rateArg);
const seconds = Number(secondsArg);
if (!host || !(port > 0) || !(rate > 0) || !(seconds > 0) || (mode !== 'persistent' && mode !== 'per-connection')) {
  process.stderr.write('usage: load.ts <host> <port> <rate/s> <seconds> persistent|per-connection\n');
  process.exit(2);
}

const count = Math.round(rate * seconds);
const intervalNs = 1e9 / rate;
const request = Buffer.alloc(SIZE, 'x');
const latenciesUs: number[] = [];
let errors = 0;
let skipped = 0;
const startedAt = process.hrtime.bigint();
const elapsedNs = (): number => Number(process.hrtime.bigint() - startedAt);
const micros = (since: bigint): number => Math.round(Number(process.hrtime.bigint() - since) / 100) / 10;

function finish(): void {
  const timeouts = count - latenciesUs.length - errors - skipped;
  const result = { mode, host, port, rate, seconds, count, completed: latenciesUs.length, errors, skipped, timeouts, elapsedMs: Math.round(elapsedNs() / 1e6), latenciesUs };
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
}

/** Calls send(i) for every request whose time has come, then sleeps until the next one is due. */
function schedule(send: (index: number) => void): void {
  let next = 0;
  const tick = (): void => {
    while (next < count && elapsedNs() >= next * intervalNs) send(next++);
    if (next < count) setTimeout(tick, Math.max(0, (next * intervalNs - elapsedNs()) / 1e6));
  };
  tick();
}

function persistent(): void {
  const socket = connect({ host, port, noDelay: true });
  const sentAt: bigint[] = [];
  let received = 0;
  socket.on('data', (chunk: Buffer) => {
    received += chunk.length;
    // The echo keeps order, so the n-th KiB back answers the n-th request.
    while (latenciesUs.length < sentAt.length && received >= (latenciesUs.length + 1) * SIZE) {
      latenciesUs.push(micros(sentAt[latenciesUs.length]!));
    }
    if (latenciesUs.length === count) finish();
  });
  socket.on('error', (err) => {
    process.stderr.write(`connection failed: ${err.message}\n`);
    errors = count - latenciesUs.length;
    finish();
  });
  socket.once('connect', () =>
    schedule(() => {
      sentAt.push(process.hrtime.bigint());
      socket.write(request);
    }),
  );
}

function perConnection(): void {
  let inFlight = 0;
  const settled = (): void => {
    inFlight--;
    if (latenciesUs.length + errors + skipped === count) finish();
  };
  schedule(() => {
    if (inFlight >= MAX_IN_FLIGHT) {
      skipped++;
      return;
    }
    inFlight++;
    const t0 = process.hrtime.bigint();
    const socket = connect({ host, port, noDelay: true });
    let received = 0;
    socket.once('connect', () => socket.write(request));
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received < SIZE) return;
      latenciesUs.push(micros(t0));
      socket.destroy();
      settled();
    });
    socket.on('error', () => {
      errors++;
      socket.destroy();
      settled();
    });
  });
}

setTimeout(finish, seconds * 1000 + GRACE_MS);
if (mode === 'persistent') persistent();
else perConnection();

// Fixed-rate 1 KB HTTP/1.1 load, run inside a client pod: prints one JSON object with every request's
// latency (microseconds, from the request's start to the last byte of its response), in the shape of
// lib/load.ts's report.
//
//   node --import tsx bench/lib/http-load.ts <host> <port> <rate/s> <seconds>
//
// A POST with a 1 KB body (content-length 1024), 1 KB back (lib/http-server.ts answers once it has read
// the body), over a pool of keep-alive connections (at most MAX_SOCKETS, opened as the schedule needs
// them and reused after), requests started on a fixed schedule (a late timer starts what is due). A
// body makes every proxy on the path carry request bytes, as real API traffic does; until commit
// 1e918ea the L7 path could not (a body into an HBONE stream hung), and this load used a GET with 1 KB
// of headers instead. A non-200 answer, or an answer that is not 1 KB, counts as an error.

import { Agent, request as httpRequest } from 'node:http';

const SIZE = 1024;
const MAX_SOCKETS = 32;
const GRACE_MS = 5_000;

const [host = '', portArg = '', rateArg = '', secondsArg = ''] = process.argv.slice(2);
const port = Number(portArg);
const rate = Number(rateArg);
const seconds = Number(secondsArg);
if (!host || !(port > 0) || !(rate > 0) || !(seconds > 0)) {
  process.stderr.write('usage: http-load.ts <host> <port> <rate/s> <seconds>\n');
  process.exit(2);
}

const count = Math.round(rate * seconds);
const intervalNs = 1e9 / rate;
const BODY = Buffer.alloc(SIZE, 'x');
const HEADERS = { 'content-type': 'application/octet-stream', 'content-length': String(SIZE) };
const agent = new Agent({ keepAlive: true, maxSockets: MAX_SOCKETS, scheduling: 'lifo' });
const latenciesUs: number[] = [];
const statuses: Record<string, number> = {};
let errors = 0;
let lastError = '';
const startedAt = process.hrtime.bigint();
const elapsedNs = (): number => Number(process.hrtime.bigint() - startedAt);
const micros = (since: bigint): number => Math.round(Number(process.hrtime.bigint() - since) / 100) / 10;
let done = false;

function finish(): void {
  if (done) return;
  done = true;
  const timeouts = count - latenciesUs.length - errors;
  const result = { host, port, rate, seconds, count, completed: latenciesUs.length, errors, skipped: 0, timeouts, statuses, lastError, sockets: MAX_SOCKETS, elapsedMs: Math.round(elapsedNs() / 1e6), latenciesUs };
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
}

const settled = (): void => {
  if (latenciesUs.length + errors === count) finish();
};

function send(): void {
  const t0 = process.hrtime.bigint();
  const req = httpRequest({ host, port, method: 'POST', path: '/bench', agent, headers: HEADERS }, (res) => {
    let received = 0;
    res.on('data', (chunk: Buffer) => (received += chunk.length));
    res.once('end', () => {
      const status = String(res.statusCode);
      statuses[status] = (statuses[status] ?? 0) + 1;
      if (res.statusCode === 200 && received === SIZE) latenciesUs.push(micros(t0));
      else errors++;
      settled();
    });
  });
  req.setNoDelay(true);
  req.once('error', (err) => {
    errors++;
    lastError = err.message;
    settled();
  });
  req.end(BODY);
}

let next = 0;
const tick = (): void => {
  while (next < count && elapsedNs() >= next * intervalNs) {
    next++;
    send();
  }
  if (next < count) setTimeout(tick, Math.max(0, (next * intervalNs - elapsedNs()) / 1e6));
};
tick();
setTimeout(finish, seconds * 1000 + GRACE_MS);

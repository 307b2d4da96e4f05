// Client programs the fault and scale tests run inside lab pods (node -e): each prints one JSON object
// per line on its own clock, so a test waits on what the client saw instead of sleeping.

/**
 * `stream <ip> <port> <limitMs>`: writes 16 KiB chunks as fast as backpressure allows and counts the echo;
 * prints {event:'open'}, {event:'progress', echoed} every 100 ms, and {event:'end', error, echoed} on close.
 */
export const STREAM_CLIENT = `const [ip, port, limitMs] = process.argv.slice(1);
const out = (o) => console.log(JSON.stringify({ at: Date.now(), ...o }));
const chunk = Buffer.alloc(16384, 120); let echoed = 0, error = '';
const s = require('net').connect(Number(port), ip);
const pump = () => { while (s.write(chunk)) {} };
s.on('connect', () => { out({ event: 'open' }); pump(); setInterval(() => out({ event: 'progress', echoed }), 100); });
s.on('drain', pump); s.on('data', (d) => (echoed += d.length)); s.on('error', (e) => (error = e.code || e.message));
s.on('close', () => { out({ event: 'end', error, echoed }); process.exit(0); });
setTimeout(() => { out({ event: 'end', error: 'limit', echoed }); process.exit(0); }, Number(limitMs));`;

/**
 * `transfer <ip> <port> <bytes> <limitMs>`: sends that many random bytes, half-closes, and compares
 * the SHA-256 of what it sent with that of what came back; prints {event:'done', same, sent, received, ms}.
 */
export const TRANSFER_CLIENT = `const [ip, port, total, limitMs] = process.argv.slice(1).map((v, i) => (i === 0 ? v : Number(v)));
const crypto = require('crypto'); const sent = crypto.createHash('sha256'), got = crypto.createHash('sha256');
const start = Date.now(); let written = 0, received = 0, error = '';
const out = (o) => console.log(JSON.stringify({ at: Date.now(), ...o }));
const s = require('net').connect(port, ip);
const pump = () => { while (written < total) { const b = crypto.randomBytes(Math.min(65536, total - written)); sent.update(b); written += b.length; if (!s.write(b)) return; } s.end(); };
s.on('connect', () => { out({ event: 'open' }); pump(); }); s.on('drain', pump);
s.on('data', (d) => { got.update(d); received += d.length; }); s.on('error', (e) => (error = e.code || e.message));
s.on('close', () => { out({ event: 'done', same: received === total && sent.digest('hex') === got.digest('hex'), sent: written, received, error, ms: Date.now() - start }); process.exit(0); });
setTimeout(() => { out({ event: 'done', same: false, sent: written, received, error: 'limit', ms: Date.now() - start }); process.exit(0); }, limitMs);`;

/**
 * `hold <ip> <port> <connections> <everyMs> <holdMs> <stallMs>`: opens that many connections (at most 200
 * connects in flight), each sending a 32-byte message every `everyMs` (random phase) and expecting its
 * echo within `stallMs`; holds them `holdMs` after the last opened, then prints {event:'held', opened,
 * failed, lost, stalled, messages, worstMs, p99Ms, errors, lostHow}: lost = closed by the other side,
 * stalled = an echo later than `stallMs` (or still missing at the end), stalledFirst = those that were
 * a connection's first exchange (it waited for its tunnel to open); lostHow counts the lost by
 * when ('opening', 'held') and whether an echo had come back on them first.
 */
export const HOLD_CLIENT = `const [ip, port, n, everyMs, holdMs, stallMs] = process.argv.slice(1).map((v, i) => (i === 0 ? v : Number(v)));
const out = (o) => console.log(JSON.stringify({ at: Date.now(), ...o }));
const net = require('net'); let opened = 0, failed = 0, lost = 0, stalled = 0, stalledFirst = 0, messages = 0, worstMs = 0, started = 0, inFlight = 0, done = false;
const errors = {}, lostHow = {}; const conns = []; const latencies = [];
const msg = Buffer.alloc(32, 109);
function open() {
  while (started < n && inFlight < 200) {
    started++; inFlight++;
    const s = net.connect(port, ip); const c = { s, pending: 0, sentAt: 0, buf: 0, up: false, echoes: 0 };
    s.setNoDelay(true);
    s.on('connect', () => { inFlight--; opened++; c.up = true; conns.push(c); if (opened === 1 || opened % 500 === 0) out({ event: 'opened', opened }); open(); if (opened + failed === n) holdThen(); });
    s.on('data', (d) => { c.buf += d.length; while (c.buf >= 32 && c.pending > 0) { c.buf -= 32; c.pending--; c.echoes++; messages++; const ms = Date.now() - c.sentAt; worstMs = Math.max(worstMs, ms); latencies.push(ms); if (ms > stallMs) { stalled++; if (c.echoes === 1) stalledFirst++; } } });
    s.on('error', (e) => { errors[e.code || e.message] = (errors[e.code || e.message] || 0) + 1; });
    s.on('close', () => { if (!c.up) { inFlight--; failed++; open(); if (opened + failed === n) holdThen(); } else if (!done) { lost++; const how = (holding ? 'held' : 'opening') + (c.echoes > 0 ? '' : ', never echoed'); lostHow[how] = (lostHow[how] || 0) + 1; } });
  }
}
function tick() {
  const now = Date.now();
  for (const c of conns) if (c.pending === 0 && now >= c.next) { c.pending = 1; c.sentAt = now; c.next = now + everyMs; c.s.write(msg); }
}
let holding = false;
function holdThen() {
  if (holding) return; holding = true;
  const now = Date.now(); for (const c of conns) c.next = now + Math.random() * everyMs;
  out({ event: 'all-open', opened, failed, errors });
  const t = setInterval(tick, 50);
  setTimeout(() => { clearInterval(t); done = true; for (const c of conns) if (c.pending > 0 && Date.now() - c.sentAt > stallMs) { stalled++; if (c.echoes === 0) stalledFirst++; }
    latencies.sort((a, b) => a - b); const p99Ms = latencies[Math.floor(latencies.length * 0.99)] ?? 0;
    out({ event: 'held', opened, failed, lost, stalled, stalledFirst, messages, worstMs, p99Ms, errors, lostHow }); for (const c of conns) c.s.destroy(); setTimeout(() => process.exit(0), 200); }, holdMs);
}
open();`;

/**
 * `soak <echoIp> <webVip> <durationMs>`: mixed load for the soak. Every 50 ms an HTTP request on a
 * kept-alive connection, every 100 ms one on a new connection and one L4 echo on a new connection, and
 * 20 L4 connections held, each echoing a message every second. Prints {event:'tick', ...} every 5 s and
 * {event:'done', ...} at the end: requests and echoes made, failed (with reasons), held connections lost.
 */
export const SOAK_CLIENT = `const [echoIp, webVip, durationMs] = process.argv.slice(1).map((v, i) => (i < 2 ? v : Number(v)));
const http = require('http'), net = require('net');
const out = (o) => console.log(JSON.stringify({ at: Date.now(), ...o }));
const c = { httpKept: 0, httpNew: 0, l4New: 0, heldEchoes: 0, failed: 0, lost: 0, inFlight: 0 }; const reasons = {};
const fail = (why) => { c.failed++; reasons[why] = (reasons[why] || 0) + 1; };
const kept = new http.Agent({ keepAlive: true, maxSockets: 4 });
function get(agent, key) {
  c.inFlight++;
  const q = http.get({ host: webVip, port: 80, path: '/', agent, timeout: 10000 }, (r) => { r.resume(); r.on('end', () => { c.inFlight--; if (r.statusCode === 200) c[key]++; else fail('http ' + r.statusCode); }); });
  q.on('timeout', () => q.destroy(new Error('timeout'))); q.on('error', (e) => { c.inFlight--; fail(key + ' ' + (e.code || e.message)); });
}
function echo() {
  c.inFlight++; let got = '', done = false;
  const s = net.connect(9000, echoIp, () => s.end('x'));
  const end = (ok, why) => { if (done) return; done = true; c.inFlight--; if (ok) c.l4New++; else fail('l4 ' + why); };
  s.setTimeout(10000, () => s.destroy(new Error('timeout')));
  s.on('data', (d) => (got += d)); s.on('error', (e) => end(false, e.code || e.message)); s.on('close', () => end(got === 'x', 'short echo'));
}
const held = Array.from({ length: 20 }, () => { const s = net.connect(9000, echoIp); s.on('data', (d) => (c.heldEchoes += d.length)); s.on('error', () => {}); s.on('close', () => { if (!stopping) c.lost++; }); return s; });
let stopping = false;
const timers = [setInterval(() => get(kept, 'httpKept'), 50), setInterval(() => { get(false, 'httpNew'); echo(); }, 100), setInterval(() => held.forEach((s) => s.write('h')), 1000), setInterval(() => out({ event: 'tick', ...c, reasons }), 5000)];
setTimeout(() => { timers.forEach(clearInterval); stopping = true; held.forEach((s) => s.end());
  const wait = setInterval(() => { if (c.inFlight === 0) { clearInterval(wait); kept.destroy(); out({ event: 'done', ...c, reasons }); setTimeout(() => process.exit(0), 200); } }, 100); }, durationMs);`;

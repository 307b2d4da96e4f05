// Client programs for the fault tests that keep load on an agent while something fails or a limit is
// reached (node -e in a lab pod): each prints JSON lines on its own clock, so a test waits on what
// the client saw instead of sleeping.

/**
 * `burst <ip> <port> <connections> <holdMs> <stallMs> [retryMs]`: opens that many connections at once (at
 * most 200 connects in flight), each sending 32 bytes on connect and every second after its echo, for
 * `holdMs` after the last one opened. Each connection ends up as one of: carried (echoed, open to the
 * end), refused (closed or reset before its first echo), lost (closed after echoing), or hung (neither
 * echoed nor closed within `stallMs`). With `retryMs`, a connection refused during the hold is opened
 * again that long after, as a client under a flood would (a sustained load, not one burst). Prints
 * {event:'done', opened, connectFailed, carried, refused, lost, hung, stalled, refusedWorstMs, errors};
 * stalled = echoes later than `stallMs` on carried connections.
 */
export const BURST_CLIENT = `let [ip, port, n, holdMs, stallMs, retryMs = 0] = process.argv.slice(1).map((v, i) => (i === 0 ? v : Number(v)));
const net = require('net'); const msg = Buffer.alloc(32, 98); const out = (o) => console.log(JSON.stringify({ at: Date.now(), ...o }));
const conns = []; const errors = {}; let started = 0, inFlight = 0, opened = 0, connectFailed = 0, stalled = 0, refusedWorstMs = 0, ending = false;
function open() {
  while (started < n && inFlight < 200) {
    started++; inFlight++;
    const c = { s: net.connect(port, ip), state: 'connecting', sentAt: 0, buf: 0, openedAt: 0 };
    c.s.setNoDelay(true);
    c.s.on('connect', () => { inFlight--; opened++; c.state = 'open'; c.openedAt = c.sentAt = Date.now(); c.s.write(msg); conns.push(c); next(); });
    c.s.on('data', (d) => { c.buf += d.length; while (c.buf >= 32) { c.buf -= 32; const ms = Date.now() - c.sentAt; if (ms > stallMs) stalled++; c.state = 'carried'; setTimeout(() => { if (!ending && c.state === 'carried') { c.sentAt = Date.now(); c.s.write(msg); } }, 1000); } });
    c.s.on('error', (e) => { errors[e.code || e.message] = (errors[e.code || e.message] || 0) + 1; });
    c.s.on('close', () => {
      if (c.state === 'connecting') { inFlight--; connectFailed++; next(); }
      else if (c.state === 'open') { c.state = 'refused'; refusedWorstMs = Math.max(refusedWorstMs, Date.now() - c.openedAt); if (holding && retryMs > 0) setTimeout(() => { if (!ending) { n++; open(); } }, retryMs); }
      else if (c.state === 'carried' && !ending) c.state = 'lost';
    });
  }
}
let holding = false;
function next() {
  open();
  if (holding || opened + connectFailed < n) return;
  holding = true; out({ event: 'all-open', opened, connectFailed });
  setTimeout(() => {
    ending = true; const now = Date.now(); const count = (s) => conns.filter((c) => c.state === s).length;
    const hung = conns.filter((c) => c.state === 'open' && now - c.openedAt > stallMs).length;
    out({ event: 'done', opened, connectFailed, carried: count('carried'), refused: count('refused'), lost: count('lost'), hung, stalled, refusedWorstMs, errors });
    for (const c of conns) c.s.destroy(); setTimeout(() => process.exit(0), 200);
  }, holdMs);
}
open();`;

/**
 * `churn <ip> <port> <everyMs> <limitMs>`: a new connection every `everyMs` that sends 32 bytes and waits
 * for their echo (5 s at most), printing {event:'conn', started, ok, error, ms}; beside them one held
 * connection echoing 32 bytes every 500 ms, printing {event:'held', at, ms} per echo and
 * {event:'held-end', at, error} if it ends.
 */
export const CHURN_CLIENT = `const [ip, port, everyMs, limitMs] = process.argv.slice(1).map((v, i) => (i === 0 ? v : Number(v)));
const net = require('net'); const out = (o) => console.log(JSON.stringify(o)); const msg = Buffer.alloc(32, 99);
function one() {
  const started = Date.now(); let got = 0, done = false;
  const s = net.connect(port, ip, () => s.write(msg));
  const end = (ok, error) => { if (done) return; done = true; s.destroy(); out({ event: 'conn', started, ok, error, ms: Date.now() - started }); };
  s.setTimeout(5000, () => end(false, 'timeout'));
  s.on('data', (d) => { got += d.length; if (got >= 32) end(true, ''); }); s.on('error', (e) => end(false, e.code || e.message)); s.on('close', () => end(false, 'closed'));
}
const held = net.connect(port, ip); let sentAt = 0, buffered = 0, heldDone = false;
held.on('connect', () => { const tick = () => { if (heldDone) return; sentAt = Date.now(); held.write(msg); }; tick(); held.on('data', (d) => { buffered += d.length; if (buffered >= 32) { buffered -= 32; out({ event: 'held', at: Date.now(), ms: Date.now() - sentAt }); setTimeout(tick, 500); } }); });
held.on('error', (e) => { if (!heldDone) out({ event: 'held-end', at: Date.now(), error: e.code || e.message }); heldDone = true; });
held.on('close', () => { if (!heldDone) out({ event: 'held-end', at: Date.now(), error: 'closed' }); heldDone = true; });
const timer = setInterval(one, everyMs);
setTimeout(() => { clearInterval(timer); heldDone = true; held.destroy(); setTimeout(() => process.exit(0), 5500); }, limitMs);`;

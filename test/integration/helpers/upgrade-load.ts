// The load the upgrade test runs in lab pods (node -e), and the servers it runs against: each client
// is one long-lived Node process per stream that prints one JSON object per line (progress every
// second, then a summary), so the test waits on what the clients saw instead of sleeping.

/** Each server pod: HTTP on 8080 answering the request path, a TCP echo on 9000. */
export const UPGRADE_SERVER = `require('http').createServer((q, s) => s.end(q.url)).listen(8080);
require('net').createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {}); s.pipe(s); }).listen(9000);`;

/**
 * \`load <httpHost> <echoHost> <tag> <maxMs> <perSecond> <stopFile>\`, against port 80 (HTTP) and 9000 (TCP echo),
 * until \`stopFile\` exists (pods share the host's filesystem) or \`maxMs\` has passed. \`perSecond\` is the
 * stream's rate in all, half on new connections and half on kept-alive ones, a quarter each:
 * - http-new: a new connection per request (\`connection: close\`);
 * - l4-new: a new connection per echo;
 * - http-keep: a pool of 4 kept-alive connections;
 * - l4-keep: 4 connections at a time, each echoing 20 messages paced to the rate, then closed by the
 *   client and opened again (each lives about 80 / rate seconds, less than the old agent's drain);
 * and http-idle: 2 kept-alive connections used in a burst every 3 s and idle between (idle at any switch).
 * Every request, echo and message carries a canary the test looks for on the wire. A failure is any
 * error, timeout (5 s), status other than 200 or missing echo; socketErrors counts errors on the kept-alive
 * sockets, also while idle in the pool (a reset idle connection). Prints {event:'progress', stats} every
 * second and {event:'done', stats, errors, failedAt (the first 50 failures: time, kind, why), socketErrors,
 * ranMs (how long it sent), cpuMs (this client's own CPU, to tell the load's cost from the agents')} once everything in flight has ended.
 */
export const UPGRADE_LOAD = `const [httpHost, echoHost, tag, maxMs, perSecond, stopFile] = process.argv.slice(1);
const http = require('http'), net = require('net'), fs = require('fs');
const startedAt = Date.now(); let stopAt = startedAt + Number(maxMs); const perKind = Number(perSecond) / 4;
const MARK = 'UPGRADE-CANARY-' + tag;
const stats = {}, errors = {}, failedAt = []; let inflight = 0, socketErrors = 0;
const stat = (k) => (stats[k] ??= { ok: 0, fail: 0 });
const out = (o) => console.log(JSON.stringify({ at: Date.now(), tag, ...o }));
function outcome(kind) { inflight++; let done = false; return (why) => { if (done) return; done = true; inflight--; if (why) { stat(kind).fail++; errors[kind + ' ' + why] = (errors[kind + ' ' + why] || 0) + 1; if (failedAt.length < 50) failedAt.push([Date.now(), kind, why]); } else stat(kind).ok++; }; }
const watched = new WeakSet();
function watch(s) { if (watched.has(s)) return; watched.add(s); s.on('error', () => socketErrors++); }
function httpGet(kind, agent) {
  const end = outcome(kind);
  const req = http.get({ host: httpHost, port: 80, path: '/' + MARK + '/' + kind, agent, timeout: 5000, headers: agent ? {} : { connection: 'close' } }, (res) => {
    let body = ''; res.setEncoding('utf8'); res.on('data', (d) => (body += d));
    res.on('end', () => end(res.statusCode !== 200 ? 'status ' + res.statusCode : body.includes(MARK) ? null : 'body'));
    res.on('error', (e) => end(e.code || e.message));
  });
  if (agent) req.on('socket', watch);
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', (e) => end(e.code || e.message));
}
function echoOnce() {
  const end = outcome('l4-new'); let got = '';
  const s = net.connect(9000, echoHost, () => s.write(MARK + '\\n'));
  const t = setTimeout(() => { end('timeout'); s.destroy(); }, 5000);
  s.on('data', (d) => { got += d; if (got.includes(MARK)) { clearTimeout(t); end(null); s.end(); } });
  s.on('error', (e) => { clearTimeout(t); end(e.code || e.message); });
  s.on('close', () => { clearTimeout(t); end(got.includes(MARK) ? null : 'closed'); });
}
/** Each of the 4 kept connections sends a message every 4 / perKind s (less the echo's round trip). */
const keptGapMs = 4000 / perKind;
function keptEcho() {
  if (Date.now() >= stopAt) return;
  const s = net.connect(9000, echoHost); let sent = 0, got = '', waiting = null, closed = false;
  const next = () => {
    if (sent === 20) { closed = true; s.end(); setImmediate(keptEcho); return; }
    const end = outcome('l4-keep'); const msg = MARK + '#' + sent++ + ';'; got = ''; const started = Date.now();
    const t = setTimeout(() => { waiting = null; end('timeout'); s.destroy(); }, 5000);
    waiting = { msg, end: (why) => { clearTimeout(t); waiting = null; end(why); if (!why) setTimeout(next, Math.max(0, keptGapMs - (Date.now() - started))); } };
    s.write(msg);
  };
  s.on('connect', next);
  s.on('data', (d) => { got += d; if (waiting && got.includes(waiting.msg)) waiting.end(null); });
  s.on('error', (e) => { if (waiting) waiting.end(e.code || e.message); else if (!closed) { stat('l4-keep').fail++; errors['l4-keep ' + (e.code || e.message)] = 1 + (errors['l4-keep ' + (e.code || e.message)] || 0); } });
  s.on('close', () => { if (waiting) waiting.end('closed'); if (!closed) setTimeout(keptEcho, 100); });
}
/**
 * Sends what is due by the clock (perKind per second since the start), so a late timer on a busy
 * machine sends the requests it owes instead of lowering the rate; at most a second's worth at once.
 */
function paced(send) {
  let sent = 0;
  return setInterval(() => {
    const due = Math.floor(((Date.now() - startedAt) / 1000) * perKind);
    if (due - sent > perKind) sent = due - Math.ceil(perKind);
    for (; sent < due; sent++) send();
  }, 10);
}
const keep = new http.Agent({ keepAlive: true, maxSockets: 4 });
const idle = new http.Agent({ keepAlive: true, maxSockets: 2 });
const timers = [
  paced(() => httpGet('http-new', false)),
  paced(() => httpGet('http-keep', keep)),
  paced(echoOnce),
  setInterval(() => { httpGet('http-idle', idle); httpGet('http-idle', idle); }, 3000),
  setInterval(() => out({ event: 'progress', stats }), 1000),
];
for (let i = 0; i < 4; i++) keptEcho();
const stopWatch = setInterval(() => { if (fs.existsSync(stopFile)) stopAt = Math.min(stopAt, Date.now()); if (Date.now() >= stopAt) { clearInterval(stopWatch); stop(); } }, 100);
function stop() {
  timers.forEach(clearInterval); const ranMs = Date.now() - startedAt;
  const deadline = Date.now() + 8000;
  const finish = setInterval(() => {
    if (inflight > 0 && Date.now() < deadline) return;
    clearInterval(finish);
    const cpu = process.cpuUsage();
    out({ event: 'done', stats, errors, failedAt, socketErrors, inflight, ranMs, cpuMs: Math.round((cpu.user + cpu.system) / 1000) });
    process.exit(0);
  }, 50);
}`;

// The control plane unreachable (issue 14 §3), in compressed time: certificates of 30 s and an outage
// of 60 s (AMBIT_OUTAGE_SECONDS; `make ca-outage` runs the 10-minute form), so that renewals and an
// expiry fall inside it. While the nodes cannot reach the CA or the API server: traffic keeps flowing
// on the certificates in hand, the agents retry the CA with a growing backoff (counted on the CA's
// side), and the Kubernetes source keeps serving its last good state. Once a certificate expires it
// is Unavailable (as ztunnel): no new handshake presents it, established connections go on. When the
// CA is back, new certificates are issued within one backoff and new connections succeed again.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ControlPlaneOutage } from './helpers/control-plane-outage.js';
import { BURST_CLIENT, CHURN_CLIENT } from './helpers/load-clients.js';
import { type FaultMesh, clientPod, echoIp, faultMeshYaml, nodeGet } from './helpers/fault-lab.js';
import { eventually } from './helpers/lab-cli.js';
import { LabProcess, type Report } from './helpers/lab-process.js';
import { LabSession } from './helpers/lab-session.js';

const LAB = `co${process.pid % 10000}`;
const MESH: FaultMesh = { netOctet: 94, podOctet: 232, clients: 1 };
const session = LabSession.inTempDir(LAB, 'ambit-faults-ca-');
const OUTAGE_MS = Number(process.env['AMBIT_OUTAGE_SECONDS'] ?? 60) * 1000;
const CERT_TTL = process.env['AMBIT_OUTAGE_CERT_TTL'] ?? '30s';
const NODES = [
  { name: 'alpha', ip: `172.31.${MESH.netOctet}.11`, identity: 'spiffe://cluster.local/ns/faults/sa/client' },
  { name: 'beta', ip: `172.31.${MESH.netOctet}.12`, identity: 'spiffe://cluster.local/ns/faults/sa/echo' },
] as const;
/** The certificate manager's backoff never waits longer than this (certificate-manager.ts: 60 s, +20 % jitter). */
const MAX_RETRY_MS = 72_000;

interface CertState {
  readonly state: string;
  readonly expiresAt?: number;
}

async function certificate(node: string, identity: string): Promise<CertState> {
  const dump = JSON.parse(await nodeGet(LAB, node, 'http://127.0.0.1:15000/config_dump')) as { certificates: { identity: string; state: string; certChain: { expirationTime: string }[] }[] };
  const entry = dump.certificates.find((c) => c.identity === identity);
  assert.ok(entry, `${node} holds no certificate for ${identity}`);
  const leaf = entry.certChain[0];
  return { state: entry.state, ...(leaf ? { expiresAt: Date.parse(leaf.expirationTime) } : {}) };
}

/** Times (ms) of the agent's log lines whose message matches. */
async function logTimes(node: string, message: RegExp): Promise<number[]> {
  return (await session.agentLog(node)).split('\n').flatMap((line) => {
    try {
      const entry = JSON.parse(line) as { time?: string; msg?: string };
      return entry.msg !== undefined && message.test(entry.msg) && entry.time ? [Date.parse(entry.time)] : [];
    } catch {
      return [];
    }
  });
}

/** `n` connections at once from client-0, held 3 s: past 100 streams per pooled HBONE connection, the pool must handshake anew. */
async function burst(when: string, n: number): Promise<{ refused: number; doneAt: number }> {
  const client = new LabProcess(LAB, clientPod(0), ['node', '-e', BURST_CLIENT, echoIp(MESH), '9000', String(n), '3000', '4000']);
  try {
    const done = await client.line(`${n} connections opened ${when}`, (r) => r['event'] === 'done', 60_000);
    console.log(`# ${n} new connections at once, ${when}: ${JSON.stringify(done)}`);
    assert.equal(done['hung'], 0, `connections opened ${when} were left hanging, neither carried nor refused`);
    assert.equal(done['stalled'], 0, `connections carried ${when} stalled`);
    return { refused: Number(done['refused']) + Number(done['connectFailed']), doneAt: Number(done['at']) };
  } finally {
    client.kill();
  }
}

const connections = (reports: readonly Report[], from: number, to: number): Report[] =>
  reports.filter((r) => r['event'] === 'conn' && Number(r['started']) >= from && Number(r['started']) < to);
const failuresOf = (conns: readonly Report[]): string => JSON.stringify(conns.filter((c) => c['ok'] !== true).map((c) => `${String(c['error'])} after ${String(c['ms'])} ms`));

before(() => session.up(faultMeshYaml(MESH), 150, ['--source', 'kubernetes', '--cert-ttl', CERT_TTL]));
after(() => session.down());

test(`the CA and the API server unreachable for ${OUTAGE_MS / 1000} s: serving goes on, renewals back off, and certificates come back within one backoff`, { timeout: OUTAGE_MS + 6 * 60_000 }, async () => {
  const outage = new ControlPlaneOutage(LAB, NODES);
  const load = new LabProcess(LAB, clientPod(0), ['node', '-e', CHURN_CLIENT, echoIp(MESH), '9000', '250', String(OUTAGE_MS + 4 * 60_000)]);
  let returnedAt = 0;
  try {
    await load.line('the held connection to echo', (r) => r['event'] === 'held', 30_000);
    const expiresAt = Object.fromEntries(await Promise.all(NODES.map(async (n) => [n.name, (await certificate(n.name, n.identity)).expiresAt!] as const)));
    const startedAt = Date.now();
    await outage.start();
    console.log(`# outage from ${new Date(startedAt).toISOString()}; certificates expire ${NODES.map((n) => `${n.name} ${(expiresAt[n.name]! - startedAt) / 1000} s`).join(', ')} into it`);
    const firstExpiry = Math.min(...Object.values(expiresAt));
    // A burst before any certificate expired: the new HBONE connection handshakes with the certificates in hand.
    const whileValid = await burst('with the CA unreachable, before any certificate expired', 150);
    assert.ok(whileValid.doneAt < firstExpiry, 'the burst ran past the first expiry: the machine is too slow for this timeline');
    assert.equal(whileValid.refused, 0, 'connections that needed a new HBONE connection were refused while the certificates were still valid');
    // After the first certificate expired (and once the agents noticed), what a user of each identity sees.
    const expired = await eventually('a certificate to expire during the outage', async () => {
      const states = await Promise.all(NODES.map((n) => certificate(n.name, n.identity)));
      return states.some((s) => s.state.startsWith('Unavailable')) ? states : undefined;
    }, Math.max(0, firstExpiry - Date.now()) + 15_000);
    console.log(`# after expiry: ${NODES.map((n, i) => `${n.name} ${expired[i]!.state}`).join('; ')}`);
    for (const s of expired) if (s.state.startsWith('Unavailable')) assert.match(s.state, /Unavailable: .*(did not issue|UNAVAILABLE|refused|ECONNRESET)/);
    const readiness = await session.exec('node/alpha', ['curl', '-s', '-w', ' %{http_code}', '--max-time', '2', 'http://127.0.0.1:15021/healthz/ready']);
    console.log(`# alpha's readiness during the outage, after expiry: ${readiness.stdout.trim().replace(/\s+/g, ' ')}`);
    // New streams ride the HBONE connection already up (as ztunnel's pool: no handshake, no certificate
    // needed). Past its 100 streams the pool needs a new handshake, which the expired certificate cannot
    // make: those connections must be refused at once, not left hanging.
    // 300: more than the pooled connections the first burst left can carry.
    const expiredBurst = await burst('while a certificate is expired', 300);
    assert.ok(expiredBurst.refused > 0, 'no connection past the pooled HBONE connection was refused: a handshake was made without a valid certificate');
    const remaining = startedAt + OUTAGE_MS - Date.now();
    if (remaining > 0) await new Promise((resolve) => setTimeout(resolve, remaining));
    await outage.stop();
    returnedAt = Date.now();

    // Back: each identity renewed within one backoff of the CA's return, and new connections succeed.
    const renewed: Record<string, number> = {};
    for (const n of NODES) {
      const lastRetry = (await session.agentLog(n.name)).split('\n').filter((l) => l.includes(`cannot get a certificate for ${n.identity}`)).at(-1);
      const backoffMs = Number(/retrying in (\d+) ms/.exec(lastRetry ?? '')?.[1]);
      renewed[n.name] = await eventually(`${n.name} to renew ${n.identity}`, async () => (await logTimes(n.name, new RegExp(`^(renewed|issued) certificate for ${n.identity}$`))).find((t) => t >= returnedAt - 1_000), MAX_RETRY_MS + 20_000);
      console.log(`# ${n.name}: renewed ${renewed[n.name]! - returnedAt} ms after the CA came back; the backoff then in force was ${backoffMs} ms`);
      assert.ok(backoffMs > 0, `${n.name} logged no failed renewal before the CA came back`);
      assert.ok(renewed[n.name]! - returnedAt <= backoffMs + 5_000, `${n.name} renewed ${renewed[n.name]! - returnedAt} ms after the CA came back, more than one backoff (${backoffMs} ms) and 5 s`);
    }
    const settled = Math.max(...Object.values(renewed)) + 2_000;
    await load.line('a new connection after the renewals', (r) => r['event'] === 'conn' && Number(r['started']) >= settled + 5_000, 30_000);
    const reports = load.reports();

    // The CA's side: attempts with growing gaps during the outage.
    for (const n of NODES) {
      const attempts = outage.attempts(n.name);
      const gaps = attempts.slice(1).map((at, i) => at - attempts[i]!);
      console.log(`# ${n.name} dialled the CA ${attempts.length} times during the outage, gaps ${gaps.map((g) => (g / 1000).toFixed(1)).join(', ')} s`);
      assert.ok(attempts.length >= 3, `${n.name} tried the CA only ${attempts.length} times in ${OUTAGE_MS / 1000} s`);
      // Doubling with ±20 % jitter: each gap at least 2 × 0.8 / 1.2 of the one before, up to the cap.
      for (let i = 1; i < gaps.length; i++) assert.ok(gaps[i]! >= Math.min(gaps[i - 1]! * 1.3, 48_000), `${n.name}'s retries did not back off: gaps ${gaps.join(', ')} ms`);
    }

    // Serving went on: every new connection before the first expiry, the held one throughout, and all after the renewals.
    const beforeExpiry = connections(reports, startedAt, firstExpiry - 1_000);
    assert.ok(beforeExpiry.length > 0 && beforeExpiry.every((c) => c['ok'] === true), `new connections failed during the outage, before any certificate expired: ${failuresOf(beforeExpiry)}`);
    const heldEnd = reports.find((r) => r['event'] === 'held-end');
    assert.equal(heldEnd, undefined, `the held connection ended during the outage: ${JSON.stringify(heldEnd)}`);
    const heldEchoes = reports.filter((r) => r['event'] === 'held' && Number(r['at']) >= startedAt && Number(r['at']) <= returnedAt).map((r) => Number(r['at']));
    const heldGap = Math.max(...heldEchoes.slice(1).map((at, i) => at - heldEchoes[i]!));
    assert.ok(heldGap < 5_000, `the held connection stalled ${heldGap} ms during the outage`);
    const whileExpired = connections(reports, firstExpiry + 1_000, returnedAt);
    const slow = whileExpired.filter((c) => c['ok'] !== true && Number(c['ms']) > 3_000);
    console.log(`# new connections while a certificate was expired: ${whileExpired.filter((c) => c['ok'] === true).length} ok, ${whileExpired.filter((c) => c['ok'] !== true).length} failed ${failuresOf(whileExpired).slice(0, 300)}`);
    assert.deepEqual(slow, [], 'a new connection needing an expired certificate hung instead of failing at once');
    const afterRenewal = connections(reports, settled, Date.now());
    assert.ok(afterRenewal.length > 0 && afterRenewal.every((c) => c['ok'] === true), `new connections failed after the certificates were renewed: ${failuresOf(afterRenewal)}`);

    // The API server's side: the Kubernetes source said it kept its last good state (what it served meanwhile, above).
    const kept = await logTimes('alpha', /^Kubernetes API server: .*serving configuration version \d+, the last good state/);
    assert.ok(kept.some((t) => t >= startedAt && t <= returnedAt), "alpha's Kubernetes source did not say it kept its last good state during the outage");
  } finally {
    await outage.stop();
    load.kill();
  }
});

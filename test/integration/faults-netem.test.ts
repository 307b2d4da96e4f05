// Loss and delay between the nodes (issue 14 §3), made on each node's fabric link (nft and tc; this kernel
// has no netem): long
// transfers through HBONE arrive intact (SHA-256 of both directions) with no PING timeout, and when the
// fabric stops carrying anything the PING watchdog (every 10 s, answer within 20 s: docs/security.md)
// ends a tunnel that would otherwise hang, so its client sees a reset instead of waiting forever.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import { STREAM_CLIENT, TRANSFER_CLIENT } from './helpers/fault-clients.js';
import { type FaultMesh, clientPod, echoIp, faultMeshYaml, metricSum, nodeNetns } from './helpers/fault-lab.js';
import { LabProcess } from './helpers/lab-process.js';
import { LabSession } from './helpers/lab-session.js';

const LAB = `fn${process.pid % 10000}`;
const MESH: FaultMesh = { netOctet: 82, podOctet: 249, clients: 1 };
const session = LabSession.inTempDir(LAB, 'ambit-faults-netem-');
const NODES = ['alpha', 'beta'] as const;
/** The PING settings of agent/tunnel/hbone/settings.ts: a silent peer is given up after at most their sum. */
const PING_INTERVAL_MS = 10_000;
const PING_TIMEOUT_MS = 20_000;

/**
 * Impairs each node's fabric link (fab0): `lossPerMille` of the TCP packets it sends are dropped (nft
 * numgen), and, with `rateMbit`, a token bucket queues up to 50 ms behind that rate (delay under load).
 * netem would be the usual tool, but this kernel has no sch_netem (CONFIG_NET_SCH_NETEM is not set).
 * No argument removes both.
 */
function impair(fault?: { readonly lossPerMille: number; readonly rateMbit?: number }): void {
  for (const node of NODES) {
    const netns = nodeNetns(LAB, node);
    spawnSync('ip', ['netns', 'exec', netns, 'nft', 'delete', 'table', 'inet', 'ambit_fault'], { encoding: 'utf8' });
    spawnSync('tc', ['-n', netns, 'qdisc', 'del', 'dev', 'fab0', 'root'], { encoding: 'utf8' });
    if (!fault) continue;
    const rules = `table inet ambit_fault {\nchain out {\ntype filter hook postrouting priority 0;\noifname "fab0" meta l4proto tcp ${fault.lossPerMille >= 1000 ? '' : `numgen random mod 1000 < ${fault.lossPerMille} `}counter drop\n}\n}\n`;
    const nft = spawnSync('ip', ['netns', 'exec', netns, 'nft', '-f', '-'], { input: rules, encoding: 'utf8' });
    assert.equal(nft.status, 0, `nft in ${netns} failed: ${nft.stderr}`);
    if (fault.rateMbit === undefined) continue;
    const tc = spawnSync('tc', ['-n', netns, 'qdisc', 'add', 'dev', 'fab0', 'root', 'tbf', 'rate', `${fault.rateMbit}mbit`, 'burst', '32kbit', 'latency', '50ms'], { encoding: 'utf8' });
    assert.equal(tc.status, 0, `tc tbf in ${netns} failed: ${tc.stderr}`);
  }
}

/** Packets the loss rule dropped on `node` so far: proof the fault was there. */
function dropped(node: string): number {
  const r = spawnSync('ip', ['netns', 'exec', nodeNetns(LAB, node), 'nft', 'list', 'table', 'inet', 'ambit_fault'], { encoding: 'utf8' });
  return Number(/counter packets (\d+)/.exec(r.stdout)?.[1] ?? 0);
}

const pingTimeouts = (node: string): Promise<number> => metricSum(session, node, 'ambit_hbone_events_total', /event="ping_timeouts"/);

before(() => session.up(faultMeshYaml(MESH), 90));
after(async () => {
  impair();
  await session.down();
});

test('1 % loss each way and a 20 Mbit/s queue between the nodes: four concurrent 8 MiB transfers arrive intact, with no PING timeout', { timeout: 240_000 }, async () => {
  const before = { alpha: await pingTimeouts('alpha'), beta: await pingTimeouts('beta') };
  impair({ lossPerMille: 10, rateMbit: 20 });
  const transfers = Array.from({ length: 4 }, () => new LabProcess(LAB, clientPod(0), ['node', '-e', TRANSFER_CLIENT, echoIp(MESH), '9000', String(8 << 20), '150000']));
  try {
    const done = await Promise.all(transfers.map((t, i) => t.line(`transfer ${i} to finish`, (r) => r['event'] === 'done', 170_000)));
    console.log(`# transfers under loss and a rate limit: ${done.map((d) => `${String(d['ms'])} ms`).join(', ')}`);
    for (const d of done) assert.equal(d['same'], true, `a transfer under loss and delay did not arrive intact: ${JSON.stringify(d)}`);
    const drops = NODES.map(dropped);
    console.log(`# packets dropped on the fabric: alpha ${drops[0]}, beta ${drops[1]}`);
    assert.ok(drops.every((n) => n > 0), `the loss rule dropped nothing (${drops.join(', ')}): the transfers were not tested under loss`);
  } finally {
    transfers.forEach((t) => t.kill());
    impair();
  }
  assert.deepEqual({ alpha: await pingTimeouts('alpha'), beta: await pingTimeouts('beta') }, before, 'a PING timed out under loss and delay that TCP recovers from');
});

test('the fabric drops everything: the PING watchdog resets the tunnel within its interval plus its timeout, instead of a hang', { timeout: 180_000 }, async () => {
  const before = await pingTimeouts('alpha');
  const stream = new LabProcess(LAB, clientPod(0), ['node', '-e', STREAM_CLIENT, echoIp(MESH), '9000', '120000']);
  try {
    await stream.line('the stream to carry 1 MiB', (r) => r['event'] === 'progress' && Number(r['echoed']) > 1 << 20, 60_000);
    impair({ lossPerMille: 1000 });
    const cutAt = Date.now();
    const end = await stream.line('the client to see its connection end', (r) => r['event'] === 'end', PING_INTERVAL_MS + PING_TIMEOUT_MS + 30_000);
    const afterMs = Number(end['at']) - cutAt;
    console.log(`# with the fabric cut the client saw '${String(end['error'])}' after ${afterMs} ms`);
    assert.equal(end['error'], 'ECONNRESET', `the client's connection ended with '${String(end['error'])}', not a reset`);
    assert.ok(afterMs <= PING_INTERVAL_MS + PING_TIMEOUT_MS + 5_000, `the tunnel was given up ${afterMs} ms after the fabric went silent`);
  } finally {
    stream.kill();
    impair();
  }
  assert.ok((await pingTimeouts('alpha')) > before, "alpha's engine did not count the PING timeout that ended the tunnel");
});

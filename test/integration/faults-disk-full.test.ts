// The disk under the agent's log fills up while it serves (issue 14 §3): alpha's agent logs every
// connection to a file on a 1 MiB tmpfs, which the test fills. Traffic through alpha goes on, the agent
// neither stops nor spins, it counts the lines it could not write (ambit_log_lines_dropped_total), and
// once space is freed its log says how many were lost.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { CHURN_CLIENT } from './helpers/load-clients.js';
import { type FaultMesh, agentPid, agentReady, clientPod, cpuSeconds, echoIp, faultMeshYaml, isDead, labStatus, metricSum } from './helpers/fault-lab.js';
import { eventually } from './helpers/lab-cli.js';
import { LabProcess } from './helpers/lab-process.js';
import { LabSession } from './helpers/lab-session.js';

const LAB = `df${process.pid % 10000}`;
const MESH: FaultMesh = { netOctet: 95, podOctet: 234, clients: 1 };
const session = LabSession.inTempDir(LAB, 'ambit-faults-disk-');
/** Where the lab's supervisor points each agent's stdout (LabLayout.agentLog). */
const LOG_DIR = `/run/ambit/lab/${LAB}/logs/nodes`;
const ALPHA_LOG = join(LOG_DIR, 'alpha.log');
const FILLER = join(LOG_DIR, 'filler');
const FULL_FOR_MS = 10_000;
let mounted = false;

before(() => session.up(faultMeshYaml(MESH), 90));
after(async () => {
  rmSync(FILLER, { force: true });
  // Lazily: the agent keeps its log open on the tmpfs until the lab is taken down.
  if (mounted) execFileSync('umount', ['-l', LOG_DIR]);
  await session.down();
});

test("alpha's log on a full disk: traffic goes on, the agent neither stops nor spins, and it counts and then reports the lost lines", { timeout: 240_000 }, async () => {
  assert.ok(existsSync(ALPHA_LOG), `the lab's log of alpha's agent is not at ${ALPHA_LOG}`);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', `ambit-${LAB}-logs`, LOG_DIR]);
  mounted = true;
  // A restarted agent opens its log where the tmpfs now is.
  const old = agentPid(LAB, 'alpha');
  process.kill(old, 'SIGTERM');
  await eventually('a new alpha agent', async () => (isDead(old) && labStatus(LAB).processes.some((p) => p.id === 'node/alpha' && p.pid !== undefined && p.pid !== old) ? true : undefined), 60_000);
  await agentReady(session, 'alpha');
  const pid = agentPid(LAB, 'alpha');
  assert.equal(dirname(stdoutTarget(pid)), LOG_DIR, "the new agent's stdout is not on the tmpfs");

  const load = new LabProcess(LAB, clientPod(0), ['node', '-e', CHURN_CLIENT, echoIp(MESH), '9000', '100', '120000']);
  try {
    await load.line('the held connection to echo', (r) => r['event'] === 'held', 30_000);
    // Full: what dd could not write is what is left; every connection's access-log line now fails.
    try {
      execFileSync('dd', ['if=/dev/zero', `of=${FILLER}`, 'bs=64k'], { stdio: 'ignore' });
    } catch {
      // dd stops at ENOSPC, which is the point.
    }
    const fullAt = Date.now();
    const cpuBefore = cpuSeconds(pid);
    await new Promise((resolve) => setTimeout(resolve, FULL_FOR_MS));
    const cpuShare = (cpuSeconds(pid) - cpuBefore) / ((Date.now() - fullAt) / 1000);
    const dropped = await metricSum(session, 'alpha', 'ambit_log_lines_dropped_total', /log="agent"/);
    const conns = load.reports().filter((r) => r['event'] === 'conn' && Number(r['started']) >= fullAt && Number(r['started']) < fullAt + FULL_FOR_MS - 5_000);
    console.log(`# disk full ${FULL_FOR_MS} ms: ${conns.length} new connections through alpha, ${conns.filter((c) => c['ok'] !== true).length} failed; alpha used ${(cpuShare * 100).toFixed(0)} % of a CPU; ${dropped} log lines dropped`);
    assert.equal(isDead(pid), false, "alpha's agent died with its log on a full disk");
    assert.ok(conns.length > 0 && conns.every((c) => c['ok'] === true), `connections through alpha failed with its log on a full disk: ${JSON.stringify(conns.filter((c) => c['ok'] !== true).slice(0, 5))}`);
    assert.equal(load.reports().find((r) => r['event'] === 'held-end'), undefined, 'the held connection ended');
    assert.ok(dropped > 0, 'ambit_log_lines_dropped_total{log="agent"} counted nothing');
    assert.ok(cpuShare < 0.6, `alpha's agent used ${(cpuShare * 100).toFixed(0)} % of a CPU while its log failed: spinning on the writes`);
    await agentReady(session, 'alpha', 5_000);

    rmSync(FILLER);
    const freedAt = Date.now();
    const notice = await eventually('the log to say what it lost', async () => readFileSync(ALPHA_LOG, 'utf8').split('\n').find((l) => l.includes('log lines were dropped since')), 15_000);
    console.log(`# ${Date.now() - freedAt} ms after space was freed the log said: ${JSON.parse(notice).msg as string}`);
    assert.match(notice, /"msg":"\d+ log lines were dropped since .*: writing the log failed \(ENOSPC\); the agent kept serving/);
  } finally {
    load.kill();
    rmSync(FILLER, { force: true });
  }
});

/** Where a process's stdout points. */
function stdoutTarget(pid: number): string {
  return execFileSync('readlink', [`/proc/${pid}/fd/1`], { encoding: 'utf8' }).trim();
}

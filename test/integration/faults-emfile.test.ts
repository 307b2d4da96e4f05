// The agent at its open-files limit (issue 14 §3): alpha's agent is given a limit (prlimit) about 120
// fds above what it holds, and a pod on alpha opens 300 connections through it at once, opening each
// refused one again for 8 s. The agent must not crash or spin; the connections past the limit are
// refused (closed at once, not left hanging); the time at the limit is counted
// (ambit_fd_limit_reached_total) and reported in the log, with its end; the ones accepted are carried;
// and once fds are free again new connections succeed.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { TRANSFER_CLIENT } from './helpers/fault-clients.js';
import { type FaultMesh, agentPid, agentReady, clientPod, cpuSeconds, echoIp, faultMeshYaml, isDead, metricSum } from './helpers/fault-lab.js';
import { eventually } from './helpers/lab-cli.js';
import { LabProcess } from './helpers/lab-process.js';
import { BURST_CLIENT } from './helpers/load-clients.js';
import { LabSession } from './helpers/lab-session.js';

const LAB = `fd${process.pid % 10000}`;
const MESH: FaultMesh = { netOctet: 96, podOctet: 235, clients: 1 };
const session = LabSession.inTempDir(LAB, 'ambit-faults-emfile-');
const HEADROOM = 120;
const CONNECTIONS = 300;
const HOLD_MS = 8_000;

before(() => session.up(faultMeshYaml(MESH), 90));
after(() => session.down());

const openFds = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;
// The soft limit only: raising a hard limit again needs CAP_SYS_RESOURCE, which a namespaced root may lack.
const setNofile = (pid: number, limit: number | string): void => void execFileSync('prlimit', ['--pid', String(pid), `--nofile=${limit}:`]);
const nofile = (pid: number): string => execFileSync('prlimit', ['--pid', String(pid), '--nofile', '--noheadings', '--output', 'SOFT'], { encoding: 'utf8' }).trim();

test(`alpha's agent at its open-files limit: ${CONNECTIONS} connections at once, the excess refused at once and the limit reported, no crash, no spin, and recovery`, { timeout: 180_000 }, async () => {
  const pid = agentPid(LAB, 'alpha');
  const original = nofile(pid);
  const held = openFds(pid);
  setNofile(pid, held + HEADROOM);
  let hold: LabProcess | undefined;
  try {
    const cpuBefore = cpuSeconds(pid);
    const startedAt = Date.now();
    // Refused connections are opened again 200 ms later for the whole hold: a flood, not one burst, so the agent stays at its limit.
    hold = new LabProcess(LAB, clientPod(0), ['node', '-e', BURST_CLIENT, echoIp(MESH), '9000', String(CONNECTIONS), String(HOLD_MS), '5000', '200']);
    const report = await hold.line(`${CONNECTIONS} connections opened and held`, (r) => r['event'] === 'done', 90_000);
    if (isDead(pid)) assert.fail(`alpha's agent (pid ${pid}) died at its open-files limit (${held + HEADROOM}); the end of its log:\n${(await session.agentLog('alpha')).slice(-6000)}`);
    const cpuShare = (cpuSeconds(pid) - cpuBefore) / ((Date.now() - startedAt) / 1000);
    console.log(`# limit ${held + HEADROOM} fds (${held} open before): ${JSON.stringify(report)}; alpha used ${(cpuShare * 100).toFixed(0)} % of a CPU, peak fds ${openFds(pid)}`);
    assert.equal(isDead(pid), false, "alpha's agent died at its open-files limit");
    assert.ok(Number(report['refused']) + Number(report['connectFailed']) > 0, `no connection was refused: the limit was not reached (${JSON.stringify(report)})`);
    assert.ok(Number(report['carried']) > 0, 'no connection was carried under the limit');
    assert.equal(report['hung'], 0, 'connections were left hanging instead of refused or carried');
    assert.equal(report['lost'], 0, 'connections carried under the limit were cut');
    assert.equal(report['stalled'], 0, 'connections carried under the limit stalled');
    assert.ok(cpuShare < 0.9, `alpha's agent used ${(cpuShare * 100).toFixed(0)} % of a CPU at the limit: spinning`);
  } finally {
    hold?.kill();
  }
  // Its connections closed, the agent is below the limit again: it answers, counted what it refused, said so, and carries new connections.
  await agentReady(session, 'alpha', 30_000);
  const reached = await eventually('the metrics to answer', async () => metricSum(session, 'alpha', 'ambit_fd_limit_reached_total').catch(async (err: Error) => {
    const r = await session.exec('node/alpha', ['curl', '-s', '-w', ' %{http_code}', '--max-time', '5', 'http://127.0.0.1:15020/metrics']);
    console.log(`# the metrics did not answer: ${err.message.split('\n')[0]}; curl: ${r.stdout.slice(-300)} ${r.stderr.slice(-200)}`);
    return undefined;
  }), 20_000);
  // The watch looks once a second, and the pool's connections end a little after the client's.
  const log = await eventually('the log to say the agent is below its limit again', async () => {
    const lines = (await session.agentLog('alpha')).split('\n');
    return lines.some((l) => /"msg":"the agent is below its open-files limit again/.test(l)) ? lines : undefined;
  }, 30_000);
  const fdErrors = log.filter((l) => /EMFILE|ENFILE|open files/.test(l));
  console.log(`# alpha logged ${fdErrors.length} lines about fds; the first three: ${fdErrors.slice(0, 3).map((l) => l.slice(0, 400)).join(' | ')}`);
  const atLimit = log.filter((l) => /"msg":"the agent is at its open-files limit/.test(l));
  const below = log.filter((l) => /"msg":"the agent is below its open-files limit again/.test(l));
  console.log(`# ambit_fd_limit_reached_total ${reached}; ${atLimit.length} error line(s), the first: ${atLimit[0]?.slice(0, 500)}; then: ${below[0]?.slice(0, 300)}`);
  assert.ok(reached >= 1, 'ambit_fd_limit_reached_total counted nothing');
  assert.ok(atLimit.length >= 1 && atLimit.length <= Math.ceil(HOLD_MS / 10_000) + 2, `expected the limit reported once every 10 s while it lasted, got ${atLimit.length} lines`);
  assert.match(atLimit[0]!, /at its open-files limit \((\d+ of \d+ open|no fd free; the limit read last: \d+).*new connections are refused \(closed or reset at once\), open ones carry on.*raise the limit/);
  // Each refused connection the engine reset is a failed connection in the metrics (and the access log).
  const failed = await metricSum(session, 'alpha', 'istio_tcp_connections_failed_total', /reporter="source"/);
  console.log(`# istio_tcp_connections_failed_total on alpha (source): ${failed}`);
  assert.ok(failed > 0, 'no refused connection was counted as failed');
  const transfer = new LabProcess(LAB, clientPod(0), ['node', '-e', TRANSFER_CLIENT, echoIp(MESH), '9000', String(1 << 20), '20000']);
  try {
    const done = await transfer.line('a transfer once fds are free', (r) => r['event'] === 'done', 40_000);
    assert.equal(done['same'], true, `a new connection after the limit did not carry 1 MiB intact: ${JSON.stringify(done)}`);
  } finally {
    transfer.kill();
    setNofile(pid, original);
  }
});

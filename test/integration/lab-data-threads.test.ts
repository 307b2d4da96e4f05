// `ambit lab up --data-threads <n>`: the lab's agents run the HBONE engine with that many data threads
// (what the capture bench compares), and a count the agent would refuse is refused before anything is built.

import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { after, test } from 'node:test';
import { LabSession, twoNodesYaml } from './helpers/lab-session.js';
import { ambit } from './helpers/lab-cli.js';

const LAB = `dt${process.pid % 10000}`;
const session = LabSession.inTempDir(LAB, 'ambit-lab-threads-');
/** x86_64's epoll_wait: the engine's data threads (and the splice thread) block in it; libuv's loop uses epoll_pwait. */
const SYS_EPOLL_WAIT = 232;

after(() => session.down());

/** Threads of `pid`, other than its main thread, blocked in epoll_wait (/proc/<pid>/task/<tid>/syscall). */
function threadsInEpollWait(pid: number): number {
  return readdirSync(`/proc/${pid}/task`).filter((tid) => {
    if (Number(tid) === pid) return false;
    const syscall = readFileSync(`/proc/${pid}/task/${tid}/syscall`, 'utf8');
    return Number(syscall.split(' ')[0]) === SYS_EPOLL_WAIT;
  }).length;
}

function agentPid(node: string): number {
  const status = JSON.parse(readFileSync(`/run/ambit/lab/${LAB}/status.json`, 'utf8')) as { processes: { id: string; pid?: number }[] };
  const pid = status.processes.find((p) => p.id === `node/${node}`)?.pid;
  assert.ok(pid, `no pid for node/${node} in the lab's status`);
  return pid;
}

test('lab up refuses a thread count the agent would refuse, before building anything', async () => {
  const r = await ambit(['lab', 'up', '--lab', LAB, '--data-threads', '0', '/nonexistent.yaml']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /--data-threads 0: expected a whole number from 1 to 64/);
  assert.equal(existsSync(`/run/ambit/lab/${LAB}`), false);
});

test('lab up --data-threads 3: each agent runs three engine data threads', async () => {
  await session.up(twoNodesYaml(71, 231), 90, ['--data-threads', '3']);
  for (const node of ['alpha', 'beta']) {
    const pid = agentPid(node);
    // Three data threads, plus the splice thread if a plain relay started it (none should have, idle).
    const waiting = threadsInEpollWait(pid);
    assert.ok(waiting >= 3 && waiting <= 4, `${node}'s agent (pid ${pid}) has ${waiting} threads in epoll_wait, expected the 3 data threads`);
  }
});

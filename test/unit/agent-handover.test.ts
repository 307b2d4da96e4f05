// How an agent finds the one it takes over from (agent/lifecycle/handover.ts): a live agent's record
// is found and its successor is announced; a crashed agent's record, whether its pid is gone or reused
// by another process, is not taken for a live agent.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { AgentHandover } from '../../agent/lifecycle/handover.js';
import { createLogger } from '../../agent/telemetry/log.js';

const dir = mkdtempSync(join(tmpdir(), 'ambit-handover-'));
const log = createLogger('error', {});
const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
after(() => {
  sleeper.kill();
  rmSync(dir, { recursive: true, force: true });
});

const startTime = (pid: number): string => readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[19]!;
const pidNamespace = (): string => String(statSync('/proc/self/ns/pid').ino);

function writeServing(stateDir: string, record: { pid: number; startTime: string }): void {
  mkdirSync(stateDir, { recursive: true });
  writeFileSync(join(stateDir, 'agent-scope-a.json'), JSON.stringify({ ...record, pidNamespace: pidNamespace(), node: 'alpha', scope: 'scope-a', version: '0.0.9' }));
}

test('a live agent recorded as serving is the predecessor, and the new one is announced as its successor', async () => {
  const stateDir = join(dir, 'live');
  writeServing(stateDir, { pid: sleeper.pid!, startTime: startTime(sleeper.pid!) });
  const handover = await AgentHandover.begin(stateDir, 'alpha', 'scope-a', '0.1.0', log);
  try {
    assert.equal(handover.predecessor?.pid, sleeper.pid);
    const successor = JSON.parse(readFileSync(join(stateDir, 'agent-scope-a.successor.json'), 'utf8')) as { pid: number };
    assert.equal(successor.pid, process.pid);
    await handover.serving();
    assert.equal((JSON.parse(readFileSync(join(stateDir, 'agent-scope-a.json'), 'utf8')) as { pid: number }).pid, process.pid);
  } finally {
    await handover.close();
  }
});

test('a crashed agent\'s record is not live: its pid is gone, or reused by a process started at another time', async () => {
  for (const [name, record] of [
    ['gone', { pid: 2 ** 22 - 3, startTime: '12345' }],
    ['reused', { pid: sleeper.pid!, startTime: String(Number(startTime(sleeper.pid!)) - 1) }],
  ] as const) {
    const stateDir = join(dir, name);
    writeServing(stateDir, record);
    const handover = await AgentHandover.begin(stateDir, 'alpha', 'scope-a', '0.1.0', log);
    await handover.close();
    assert.equal(handover.predecessor, undefined, `${name}: a dead agent's record was taken for a live one`);
  }
});

// A full state dir (issue 14 §3): the agent's records for the next agent's takeover cannot be written
// (a 64 KiB tmpfs with 8 inodes, filled). Starting and serving go on (only a takeover depends on the
// records), the log names the file, the error and what to do, and the heartbeat's failure is said once,
// not every second. Needs root (mount).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import fsPromises from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, mock, test } from 'node:test';
import { AgentHandover } from '../../agent/lifecycle/handover.js';
import { captureLog } from '../unit/helpers/log-capture.js';
import { requireRoot } from './helpers/lab-cli.js';

const stateDir = mkdtempSync(join(tmpdir(), 'ambit-state-full-'));
let mounted = false;

before(() => {
  requireRoot();
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,nr_inodes=8', 'ambit-state-full', stateDir]);
  mounted = true;
  // Every inode and every block taken: nothing new can be created or grown.
  for (const size of [16 * 1024, 0]) {
    for (let i = 0; ; i++) {
      try {
        writeFileSync(join(stateDir, `filler-${size}-${i}`), Buffer.alloc(size));
      } catch {
        break;
      }
    }
  }
});
after(() => {
  if (mounted) execFileSync('umount', [stateDir]);
  rmSync(stateDir, { recursive: true, force: true });
});

test('a full state dir: the agent starts and serves, says once what it could not record and what to do', { timeout: 30_000 }, async () => {
  const { logger, records } = captureLog('info');
  // Each heartbeat ends in creating its file when touching it failed: counting those writes (the real
  // ones, which fail) tells how many heartbeats ran, so the test waits for three instead of for 3 s.
  let beats = 0;
  let thirdBeat = (): void => undefined;
  const threeBeats = new Promise<void>((resolve) => (thirdBeat = resolve));
  const realWriteFile = fsPromises.writeFile;
  mock.method(fsPromises, 'writeFile', async (...args: Parameters<typeof realWriteFile>) => {
    try {
      return await realWriteFile(...args);
    } finally {
      if (String(args[0]).endsWith('.beat') && ++beats === 3) thirdBeat();
    }
  });
  syncBuiltinESMExports();
  let handover: AgentHandover | undefined;
  try {
    handover = await AgentHandover.begin(stateDir, 'alpha', 'scope-a', '0.1.0', logger);
    await handover.serving();
    await threeBeats;
  } finally {
    await handover?.close();
    mock.restoreAll();
    syncBuiltinESMExports();
  }
  const errors = records.filter((r) => r['level'] === 50).map((r) => String(r['msg']));
  assert.equal(errors.length, 1, `expected one error for the serving record, got ${JSON.stringify(errors)}`);
  assert.match(errors[0]!, /cannot record this agent in .*agent-scope-a\.json: ENOSPC.*; it serves, but an agent started next on this node will not find it .*free space in the state dir \(--state-dir\)/);
  const heartbeats = records.filter((r) => /touching the agent heartbeat/.test(String(r['msg'])));
  assert.equal(heartbeats.length, 1, `the heartbeat's failure was logged ${heartbeats.length} times over ${beats} failed heartbeats, not once`);
  assert.equal(existsSync(join(stateDir, 'agent-scope-a.json')), false);
  assert.deepEqual(readdirSync(stateDir).filter((f) => f.endsWith('.tmp')), [], 'a half-written record was left behind');
});

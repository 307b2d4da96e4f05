// What an upgrade relies on when the old agent closes its listeners: with net.ipv4.tcp_migrate_req
// (per network namespace, which the agent turns on) the connections waiting in a closed listener's
// accept queue move to another listener of its SO_REUSEPORT group; without it they are reset.
// Measured in a fresh namespace per setting, on the real kernel. Needs root.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const PROBE = fileURLToPath(new URL('./helpers/accept-queue-probe.ts', import.meta.url));
const CONNECTIONS = 200;

interface Outcome {
  readonly queued: number;
  readonly answered: number;
  readonly reset: number;
  readonly silent: number;
}

function measure(migrate: 0 | 1): Outcome {
  const netns = `ambit-migrate-${process.pid}-${migrate}`;
  execFileSync('ip', ['netns', 'add', netns]);
  try {
    execFileSync('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    const out = execFileSync('ip', ['netns', 'exec', netns, process.execPath, '--import', 'tsx', PROBE, String(migrate), String(CONNECTIONS)], { encoding: 'utf8', timeout: 30_000 });
    return JSON.parse(out.trim().split('\n').at(-1)!) as Outcome;
  } finally {
    execFileSync('ip', ['netns', 'del', netns]);
  }
}

test('tcp_migrate_req=1: connections queued on a closed SO_REUSEPORT listener move to the other one, none lost', (t) => {
  const outcome = measure(1);
  t.diagnostic(JSON.stringify(outcome));
  assert.ok(outcome.queued > 0, `some connections must wait in the closed listener's queue for this to prove anything: ${JSON.stringify(outcome)}`);
  assert.deepEqual({ answered: outcome.answered, reset: outcome.reset, silent: outcome.silent }, { answered: CONNECTIONS, reset: 0, silent: 0 });
});

test('tcp_migrate_req=0 (the kernel default): the same connections are reset', (t) => {
  const outcome = measure(0);
  t.diagnostic(JSON.stringify(outcome));
  assert.ok(outcome.queued > 0, JSON.stringify(outcome));
  assert.equal(outcome.reset, outcome.queued, `every queued connection is lost without migration: ${JSON.stringify(outcome)}`);
});

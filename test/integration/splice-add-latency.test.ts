// Handing a relay to the splice thread (agent/tunnel/kernel-relay.ts over native/src/splice_engine.c)
// never holds the JavaScript thread while that thread relays bulk bytes. The JavaScript thread makes
// every decision for every connection of the node; before 2026-12-07 kernelRelay() took a lock the
// splice thread held for each whole round, and blocked for up to 85 ms right after a bulk relay started.
// Measured in a process of its own (helpers/splice-add-during-bulk.ts): 100 calls with the splice
// thread idle, then 100 while it pumps a ring of relays flat out, each call's time less the time its
// thread waited for a CPU (/proc/thread-self/schedstat), which on a busy machine is the other work's.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const PROBE = fileURLToPath(new URL('./helpers/splice-add-during-bulk.ts', import.meta.url));
const LINKS = 8;
const PRIMED = 512 << 10;
const CALLS = 100;
/** How long the ring runs at most if the JavaScript thread is held; the calls take about 5 ms in all. */
const RING_MS = 2_000;
/** A few ms: what a call may take, beyond the time the machine's other work kept its thread from a CPU. */
const BOUND_MS = 3;

interface Call {
  readonly ms: number;
  readonly cpuWaitMs: number;
}
interface Outcome {
  readonly idle: Call[];
  readonly during: Call[];
  readonly ringRunning: boolean;
  readonly moved: number;
  readonly carried: number;
}

test('kernelRelay() returns at once while the splice thread pumps bulk bytes flat out, and the relay it adds carries bytes', (t) => {
  const out = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', PROBE, ...[LINKS, PRIMED, CALLS, RING_MS, 5_000].map(String)], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  const outcome = JSON.parse(out.trim().split('\n').at(-1)!) as Outcome;
  // The bulk keeps a core busy, so on a busy machine this thread waits longer for a CPU during it than
  // idle: that wait is the machine's, and taken out. Waiting on the splice thread (a lock) is not in it.
  const held = (calls: Call[]): number => Math.max(...calls.map((c) => c.ms - c.cpuWaitMs));
  const worst = (calls: Call[]): number => Math.max(...calls.map((c) => c.ms));
  t.diagnostic(
    `worst call idle ${worst(outcome.idle)} ms, during bulk ${worst(outcome.during)} ms; less CPU waits: ${held(outcome.idle).toFixed(3)} and ` +
      `${held(outcome.during).toFixed(3)} ms; the ring moved ${outcome.moved >> 20} MiB`,
  );
  assert.ok(
    held(outcome.during) <= BOUND_MS,
    `a kernelRelay() call during bulk held the JavaScript thread for ${held(outcome.during).toFixed(3)} ms besides waiting for a CPU: it waited ` +
      `for the splice thread (splice_engine_add must only hand the relay over): ${JSON.stringify(outcome.during)}`,
  );
  assert.ok(outcome.ringRunning, 'the bulk was still moving after the last call, or this proved nothing');
  assert.equal(outcome.carried, CALLS, 'every relay added during the bulk was taken up and carried its bytes');
});

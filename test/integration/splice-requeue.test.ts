// The splice thread's requeue (native/src/splice_engine.c): a relay that spends its budget for one turn
// (BUDGET rounds of at most a pipe's worth each way, splice_relay.c: 16 × 256 KiB) is run again before
// new events. Its epoll is edge-triggered, so without that a relay whose socket already holds every
// remaining byte waits for an edge that never comes. Measured in a fresh network namespace (its TCP
// buffers raised so that the whole payload waits in the relay's socket), on the real kernel. Needs root.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runProbeInFreshNetns } from './helpers/splice-netns.js';

const PROBE = fileURLToPath(new URL('./helpers/splice-queued-bulk.ts', import.meta.url));
/**
 * Six turns' worth at the budget above: the relay's first turn pumps it twice (both sockets' first
 * events come in one batch), so at least 16 MiB remain that only the requeue moves.
 */
const BYTES = 24 << 20;
/** The bytes normally cross in tens of milliseconds; the bound is for a busy machine. */
const BOUND_MS = 5_000;

interface Outcome {
  readonly bytes: number;
  readonly queued: number;
  readonly received: number;
  readonly stalled?: true;
  readonly ms?: number;
  readonly intact?: boolean;
  readonly bytesSent?: number;
}

const measure = (): Outcome => runProbeInFreshNetns(PROBE, [String(BYTES), String(BOUND_MS)]) as Outcome;

test("bytes already waiting in the relay's socket, many turns' worth, all cross with no further event", (t) => {
  const outcome = measure();
  t.diagnostic(JSON.stringify(outcome));
  assert.equal(outcome.queued, BYTES, `the whole payload must wait in the relay's downstream socket before it starts for this to prove anything: ${JSON.stringify(outcome)}`);
  assert.equal(
    outcome.received,
    BYTES,
    `the server got ${outcome.received} of ${BYTES} bytes within ${BOUND_MS} ms: a relay stopped by its budget was not run again (splice_engine.c's ready list)`,
  );
  assert.equal(outcome.intact, true, 'the bytes arrive in order and unchanged');
  assert.equal(outcome.bytesSent, BYTES, 'the relay counts every byte it moved');
});

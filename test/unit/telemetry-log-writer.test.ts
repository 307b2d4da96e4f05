// The agent's log writer shares one write among the lines logged close together: an idle log used to
// send every line through libuv's thread pool on its own (a worker woken and the main thread woken back,
// per access-log line). Here the real writer writes to a file while fs.write is counted, and the lines
// are read back: each must arrive, in order, soon after it was logged; and at exit, none is lost.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import fs, { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { COALESCE_MS, LogWriter } from '../../agent/telemetry/log-writer.js';

const dir = mkdtempSync(join(tmpdir(), 'ambit-logwriter-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** fs.write, counted: how many writes started, how many are in flight, and an event when one ends. */
const writes = new (class extends EventEmitter {
  started = 0;
  inFlight = 0;
})();
const realWrite = fs.write;
before(() => {
  const counted = (...args: unknown[]): void => {
    writes.started++;
    writes.inFlight++;
    const callback = args.pop() as (...result: unknown[]) => void;
    (realWrite as (...a: unknown[]) => void).call(fs, ...args, (...result: unknown[]) => {
      writes.inFlight--;
      callback(...result);
      writes.emit('done');
    });
  };
  fs.write = counted as typeof fs.write;
  // The writer imports `write` from node:fs as an ES module binding: make it see the counted one.
  syncBuiltinESMExports();
});
after(() => {
  fs.write = realWrite;
  syncBuiltinESMExports();
});

function logFile(name: string): { fd: number; lines: () => string[] } {
  const path = join(dir, name);
  const fd = openSync(path, 'a');
  after(() => closeSync(fd));
  return { fd, lines: () => readFileSync(path, 'utf8').split('\n').filter((l) => l !== '') };
}

/** Resolves once no write is in flight and nothing waits, i.e. every line logged so far was written. */
async function drained(lines: () => string[], expected: number): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (lines().length < expected) {
    if (Date.now() > deadline) throw new Error(`after 5 s the log holds ${lines().length} of ${expected} lines`);
    await once(writes, 'done');
  }
}

const line = (i: number): string => `${JSON.stringify({ level: 30, msg: 'request complete', i })}\n`;

test('lines logged in one event-loop turn go out in one write', async () => {
  const log = logFile('turn.log');
  const writer = new LogWriter(log.fd);
  const before = writes.started;
  for (let i = 0; i < 100; i++) writer.write(line(i));
  await drained(log.lines, 100);
  // Without the shared window: the first line's write, then the 99 that queued behind it.
  assert.equal(writes.started - before, 1);
  assert.deepEqual(log.lines(), Array.from({ length: 100 }, (_, i) => line(i).trimEnd()));
});

test('lines logged one per turn on an idle log share writes, and each arrives within the window', async () => {
  const log = logFile('turns.log');
  const writer = new LogWriter(log.fd);
  const before = writes.started;
  const lines = 50;
  const startedAt = performance.now();
  for (let i = 0; i < lines; i++) {
    // As a request finishing every so often: each line finds no write in flight.
    while (writes.inFlight > 0) await once(writes, 'done');
    writer.write(line(i));
    await new Promise((resolve) => setImmediate(resolve));
  }
  const loggedAt = performance.now();
  await drained(log.lines, lines);
  const lastArrivedMs = performance.now() - loggedAt;
  const count = writes.started - before;
  // Without the shared window every one of these lines is a write (and a thread-pool hop) of its own.
  assert.ok(count < lines / 2, `${lines} lines logged over ${(loggedAt - startedAt).toFixed(1)} ms took ${count} writes`);
  // The window, plus the write itself and a loaded machine's scheduling; without a window it is the write alone.
  assert.ok(lastArrivedMs < COALESCE_MS + 100, `the last line reached the log ${lastArrivedMs.toFixed(1)} ms after it was logged`);
  assert.deepEqual(log.lines(), Array.from({ length: lines }, (_, i) => line(i).trimEnd()));
});

test('a large burst does not wait for the window: its write starts at once', async () => {
  const log = logFile('burst.log');
  const writer = new LogWriter(log.fd);
  const before = writes.started;
  const big = `${JSON.stringify({ level: 30, msg: 'x'.repeat(1000) })}\n`;
  for (let i = 0; i < 70; i++) writer.write(big);
  assert.equal(writes.started - before, 1, 'about 70 KB waited and no write had started');
  await drained(log.lines, 70);
});

const LOG_MODULE = fileURLToPath(new URL('../../agent/telemetry/log.ts', import.meta.url));

test('lines still in the window when the process exits are written, by process.exit or by an empty event loop', () => {
  for (const [how, ending] of [
    ['process.exit', 'process.exit(0);'],
    ['an empty event loop', ''],
  ] as const) {
    const child = `import { createLogger } from ${JSON.stringify(LOG_MODULE)};
const log = createLogger('info'); for (let i = 0; i < 3; i++) log.info({ i }, 'last words'); ${ending}`;
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', child], { encoding: 'utf8', timeout: 15_000 });
    assert.equal(run.status, 0, `${how}: ${run.stderr}`);
    const said = run.stdout.split('\n').filter((l) => l.includes('last words'));
    assert.equal(said.length, 3, `${how}: the child's stdout held ${JSON.stringify(run.stdout)}`);
  }
});

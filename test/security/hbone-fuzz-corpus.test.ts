// Replays the HBONE engine's fuzz corpus (test/fuzz/hbone) through its libFuzzer harness, built with
// ASan and UBSan: each input that once reached new code must still run clean. `make fuzz` grows it.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = new URL('../../', import.meta.url).pathname;
const CORPUS = join(ROOT, 'test/fuzz/hbone');

it('every input of the HBONE fuzz corpus runs clean under the sanitizers', { timeout: 180_000 }, async () => {
  await run('make', ['-s', 'native/build/fuzz/hbone-fuzz'], { cwd: ROOT, timeout: 170_000 }).catch((err: Error & { stderr?: string }) =>
    assert.fail(`building the fuzzer failed (make fuzz needs clang and libclang-rt-14-dev): ${err.stderr ?? err.message}`),
  );
  const inputs = readdirSync(CORPUS).length;
  assert.ok(inputs >= 6, `the corpus holds ${inputs} inputs`);
  const { stderr } = await run(join(ROOT, 'native/build/fuzz/hbone-fuzz'), ['-runs=0', CORPUS], { timeout: 60_000 }).catch((err: Error & { stderr?: string }) =>
    assert.fail(`an input of ${CORPUS} fails: ${err.stderr?.split('\n').filter((line) => /ERROR|SUMMARY|runtime error|==\d+==/.test(line)).join('\n') ?? err.message}`),
  );
  assert.match(stderr, /Done \d+ runs/);
});

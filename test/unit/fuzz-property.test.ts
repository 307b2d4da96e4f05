// The fuzz mode of the property tests (test/fuzz/property.ts), as `make fuzz` and `make test` use it:
// a bug the test run's few cases miss is found by a fuzz run, saved to the corpus, and from then on
// fails the test run, whether its counterexample is stored as JSON or replayed from seed and path;
// a corpus entry no property claims fails the run too; a run the time budget cut short ends before
// the next property starts.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';

const FIXTURES = join(import.meta.dirname, '..', 'fuzz', 'fixtures');
const FIXTURE = join(FIXTURES, 'planted-target.ts');
const corpus = mkdtempSync(join(tmpdir(), 'ambit-fuzz-corpus-'));
after(() => rmSync(corpus, { recursive: true, force: true }));

function runFixture(env: Record<string, string>, fixture = FIXTURE): { status: number | null; output: string } {
  // Without NODE_TEST_CONTEXT, which would make the child report to this runner instead of running as its own.
  const { NODE_TEST_CONTEXT: _, ...inherited } = process.env;
  const result = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', fixture], {
    env: { ...inherited, AMBIT_FUZZ_CORPUS: corpus, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

test('a fuzz run finds what the test run misses, saves it, and the test run fails on it from then on', () => {
  const before = runFixture({});
  assert.equal(before.status, 0, `with an empty corpus the planted bugs are not reached:\n${before.output}`);

  const report = join(corpus, 'report');
  const fuzzed = runFixture({ AMBIT_FUZZ: 'fuzz', AMBIT_FUZZ_MS: '3000', AMBIT_FUZZ_SEED: '7', AMBIT_FUZZ_REPORT: report });
  assert.notEqual(fuzzed.status, 0, 'a finding fails the fuzz run');
  const found = readFileSync(report, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { property: string; runs: number; found?: string });
  assert.deepEqual(found.map((r) => [r.property, r.found !== undefined]), [['string', true], ['opaque', true]]);
  const saved = readdirSync(join(corpus, 'planted')).sort();
  assert.equal(saved.length, 2);
  const entries = saved.map((name) => JSON.parse(readFileSync(join(corpus, 'planted', name), 'utf8')) as { property: string; counterexample?: unknown[] });
  assert.deepEqual(entries.find((e) => e.property === 'string')?.counterexample?.length, 1, 'a string is stored as JSON');
  assert.equal(entries.find((e) => e.property === 'opaque')?.counterexample, undefined, 'a Map is replayed from seed and path');

  const replayed = runFixture({});
  assert.notEqual(replayed.status, 0);
  assert.match(replayed.output, /✖ a string never holds "}{a"[\s\S]*Counterexample: \[".*}{a.*"\]/);
  assert.match(replayed.output, /✖ no key of a map holds "}{a"[\s\S]*opaque-[0-9a-f]{12}\.json: Property failed/);
});

test('a corpus entry whose property no longer exists fails the test run, naming the file', () => {
  const dir = join(corpus, 'planted');
  for (const name of readdirSync(dir)) rmSync(join(dir, name));
  writeFileSync(join(dir, 'renamed-000000000000.json'), JSON.stringify({ property: 'renamed', seed: 1, path: '0', error: '', counterexample: ['x'] }));
  const run = runFixture({});
  assert.notEqual(run.status, 0);
  assert.match(run.output, /corpus entries of target planted name no property of it[\s\S]*renamed-000000000000\.json/);
});

test('a run the time budget abandons mid-flight ends before the next property starts', () => {
  const run = runFixture({ AMBIT_FUZZ: 'fuzz', AMBIT_FUZZ_MS: '500', AMBIT_FUZZ_SEED: '1', AMBIT_FUZZ_REPORT: join(corpus, 'abandoned-report') }, join(FIXTURES, 'abandoned-run-target.ts'));
  assert.equal(run.status, 0, run.output);
  const runs = readFileSync(join(corpus, 'abandoned-report'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { property: string; runs: number });
  assert.ok(runs[0]!.property === 'slow' && runs[0]!.runs >= 2, `the slow property ran ${runs[0]?.runs} times in 500 ms`);
});

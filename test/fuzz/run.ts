// `make fuzz` for the TypeScript parsers: every test file that declares a fuzzTarget runs, one at a
// time, for FUZZ_SECONDS split evenly among its properties, from one seed printed first; findings are
// saved under test/fuzz/<target>/ (see property.ts) and the run fails. Prints executions per property,
// and the coverage of the target's parser folders from a further tenth of the budget (coverage.ts).
//   node --import tsx test/fuzz/run.ts [--seconds N] [--seed S] [--coverage-only] [target ...]

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { coverageIn, formatCoverage, parserDirs } from './coverage.js';
import type { PropertyReport } from './property.js';

const ROOT = join(import.meta.dirname, '..', '..');
const { values, positionals } = parseArgs({ options: { seconds: { type: 'string' }, seed: { type: 'string' }, 'coverage-only': { type: 'boolean' } }, allowPositionals: true });
const seconds = Number(values.seconds ?? process.env.FUZZ_SECONDS ?? 60);
const seed = Number(values.seed ?? process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
if (!(seconds > 0) || !Number.isInteger(seed)) {
  console.error(`fuzz: --seconds must be positive and --seed an integer (got ${values.seconds ?? ''} and ${values.seed ?? ''})`);
  process.exit(2);
}

/** Test files that declare a target, found by reading them: adding a target needs no list to edit. */
function discoverTargets(): { target: string; file: string }[] {
  const found: { target: string; file: string }[] = [];
  for (const dir of ['test/security', 'test/unit']) {
    for (const name of readdirSync(join(ROOT, dir)).filter((n) => n.endsWith('.test.ts')).sort()) {
      const match = /fuzzTarget\('([a-z0-9-]+)'\)/.exec(readFileSync(join(ROOT, dir, name), 'utf8'));
      if (match) found.push({ target: match[1]!, file: join(dir, name) });
    }
  }
  return found;
}

function runFile(file: string, env: Record<string, string>, lcov?: string): number {
  const coverage = lcov ? ['--experimental-test-coverage', '--test-coverage-include=agent/**', '--test-reporter=lcov', `--test-reporter-destination=${lcov}`] : [];
  const result = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', '--test-reporter-destination=stdout', ...coverage, '--test-concurrency=1', file], {
    cwd: ROOT,
    stdio: env.AMBIT_FUZZ === 'count' ? 'ignore' : 'inherit',
    env: { ...process.env, ...env },
  });
  return result.status ?? 1;
}

const readReports = (file: string): PropertyReport[] =>
  readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as PropertyReport);

const targets = discoverTargets().filter((t) => positionals.length === 0 || positionals.includes(t.target));
const unknown = positionals.filter((p) => !targets.some((t) => t.target === p));
if (targets.length === 0 || unknown.length > 0) {
  console.error(`fuzz: no such target: ${unknown.join(', ') || '(none found)'}; targets are ${discoverTargets().map((t) => t.target).join(', ')}`);
  process.exit(2);
}
console.log(`fuzz: ${targets.length} targets, ${seconds} s each, seed ${seed} (FUZZ_SEED=${seed} repeats this run)`);

const work = mkdtempSync(join(tmpdir(), 'ambit-fuzz-'));
const rows: string[] = [];
const coverage: string[] = [];
let failed = false;
try {
  for (const { target, file } of targets) {
    const counted = join(work, `${target}.count`);
    const reported = join(work, `${target}.report`);
    runFile(file, { AMBIT_FUZZ: 'count', AMBIT_FUZZ_REPORT: counted });
    const properties = readReports(counted).length;
    if (properties === 0) throw new Error(`${file} declares target ${target} but runs no property through it`);
    const ms = Math.floor((seconds * 1000) / properties);
    console.log(`\nfuzz: ${target} (${file}): ${properties} properties, ${ms / 1000} s each`);
    if (!values['coverage-only']) {
      const status = runFile(file, { AMBIT_FUZZ: 'fuzz', AMBIT_FUZZ_REPORT: reported, AMBIT_FUZZ_MS: String(ms), AMBIT_FUZZ_SEED: String(seed) });
      const reports = readReports(reported);
      failed ||= status !== 0 || reports.length < properties;
      for (const r of reports) {
        const finding = r.found ? `FOUND ${relative(ROOT, r.found)}` : 'none';
        rows.push(`| ${target} | ${r.property} | ${r.runs} | ${(r.ms / 1000).toFixed(0)} | ${finding} |`);
      }
      if (reports.length < properties) rows.push(`| ${target} | (${properties - reports.length} properties did not report: see the output above) | | | |`);
    }
    // The coverage run: another seed, so that it adds to what the timed run tried rather than repeating it.
    const lcov = join(work, `${target}.lcov`);
    const coverageMs = Math.max(1000, Math.floor(ms / 10));
    failed ||= runFile(file, { AMBIT_FUZZ: 'fuzz', AMBIT_FUZZ_REPORT: join(work, `${target}.coverage-report`), AMBIT_FUZZ_MS: String(coverageMs), AMBIT_FUZZ_SEED: String(seed + 1) }, lcov) !== 0;
    const dirs = parserDirs(ROOT, file);
    const files = coverageIn(lcov, dirs);
    for (const f of files) console.log(`fuzz: coverage ${f.file}: ${formatCoverage([f])}`);
    coverage.push(`| ${target} | ${dirs.join(', ')} | ${formatCoverage(files)} |`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(`\nfuzz summary, seed ${seed}:\n| target | property | executions | seconds | finding |\n|---|---|---:|---:|---|\n${rows.join('\n')}`);
console.log(`\ncoverage (V8, a further tenth of the budget, seed ${seed + 1}):\n| target | parser folders | coverage |\n|---|---|---|\n${coverage.join('\n')}`);
process.exit(failed ? 1 : 0);

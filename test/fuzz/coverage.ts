// Line and branch coverage of a fuzz target's parser code, from V8's coverage of a short extra run
// (node --experimental-test-coverage, lcov): fast-check reports none, and V8's counters slow the
// properties several times over, so the timed run itself goes uninstrumented.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

export interface FileCoverage {
  readonly file: string;
  readonly lines: readonly [hit: number, found: number];
  readonly branches: readonly [hit: number, found: number];
}

/** The folders of the agent modules a test file imports (generated protobuf code left out): the code under test. */
export function parserDirs(root: string, testFile: string): string[] {
  const source = readFileSync(join(root, testFile), 'utf8');
  const dirs = new Set<string>();
  for (const [, spec] of source.matchAll(/from '((?:\.\.\/)+agent\/[^']+)'/g)) {
    const file = relative(root, join(root, dirname(testFile), spec!));
    if (!file.startsWith('agent/proto/')) dirs.add(dirname(file));
  }
  return [...dirs].sort();
}

/** The lcov records of files directly in `dirs`, in lcov's order; none when the run wrote no lcov (it failed). */
export function coverageIn(lcovFile: string, dirs: readonly string[]): FileCoverage[] {
  const out: FileCoverage[] = [];
  if (!existsSync(lcovFile)) return out;
  for (const record of readFileSync(lcovFile, 'utf8').split('end_of_record')) {
    const field = (name: string): number => Number(new RegExp(`^${name}:(\\d+)$`, 'm').exec(record)?.[1] ?? 0);
    const file = /^SF:(.+)$/m.exec(record)?.[1];
    if (file === undefined || !dirs.includes(dirname(file))) continue;
    out.push({ file, lines: [field('LH'), field('LF')], branches: [field('BRH'), field('BRF')] });
  }
  return out;
}

export function formatCoverage(files: readonly FileCoverage[]): string {
  const sum = (pick: (f: FileCoverage) => readonly [number, number]): [number, number] => files.reduce<[number, number]>((a, f) => [a[0] + pick(f)[0], a[1] + pick(f)[1]], [0, 0]);
  const pct = ([hit, found]: readonly [number, number]): string => (found === 0 ? '-' : `${((100 * hit) / found).toFixed(0)}% (${hit}/${found})`);
  if (files.length === 0) return 'not measured (the coverage run failed: see its output)';
  return `lines ${pct(sum((f) => f.lines))}, branches ${pct(sum((f) => f.branches))}`;
}

// What the nesting and size bounds on configuration cost: the yaml package's own parseAllDocuments
// against parseYamlBounded (the same parse with a depth walk over its syntax tree first) and the whole
// parseConfigFile, on a large real file: bookinfo's mesh repeated, each copy in its own namespace.
//
//   node --import tsx bench/config-parse.bench.ts [MiB, default: just under MAX_CONFIG_BYTES]

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LineCounter, parseAllDocuments } from 'yaml';
import { MAX_CONFIG_BYTES, parseYamlBounded } from '../agent/config/input-limits.js';
import { parseConfigFile } from '../agent/config/load.js';

const mib = Number(process.argv[2] ?? (MAX_CONFIG_BYTES * 0.98) / 1024 / 1024);
const bookinfo = readFileSync(fileURLToPath(new URL('../examples/bookinfo/bookinfo.yaml', import.meta.url)), 'utf8');
const copies: string[] = [];
for (let size = 0, i = 0; ; i++) {
  const copy = bookinfo.replaceAll('namespace: bookinfo', `namespace: bookinfo-${i}`).replaceAll('name: bookinfo\n', `name: bookinfo-${i}\n`);
  if (size + copy.length + 5 > mib * 1024 * 1024) break;
  copies.push(copy);
  size += copy.length + 5;
}
const text = copies.join('\n---\n');

/** Median milliseconds of each function, run in turns so that a noisy neighbour hits all of them alike. */
function medians(runs: readonly (() => unknown)[], times = 7): number[] {
  const samples: number[][] = runs.map(() => []);
  for (let i = 0; i < times; i++) {
    runs.forEach((run, j) => {
      const started = process.hrtime.bigint();
      run();
      samples[j]!.push(Number(process.hrtime.bigint() - started) / 1e6);
    });
  }
  return samples.map((s) => s.sort((a, b) => a - b)[Math.floor(times / 2)]!);
}

const [unbounded, bounded, whole] = medians([
  () => parseAllDocuments(text, { lineCounter: new LineCounter(), prettyErrors: false }),
  () => parseYamlBounded(text, 'bench.yaml', new LineCounter()),
  () => parseConfigFile(text, 'bench.yaml'),
]) as [number, number, number];
const objects = parseConfigFile(text, 'bench.yaml').objects.length;
const row = (what: string, ms: number): string => `${what.padEnd(44)} ${ms.toFixed(0).padStart(6)} ms`;
console.log(`${(text.length / 1024 / 1024).toFixed(1)} MiB, ${copies.length} copies of bookinfo, ${objects} objects (median of 7 runs, taken in turns)`);
console.log(row('yaml parseAllDocuments (no bounds)', unbounded));
console.log(row('parseYamlBounded (depth walk, then compose)', bounded));
console.log(row('parseConfigFile (bounded parse + typed read)', whole));
console.log(`bounds cost ${(((bounded - unbounded) / unbounded) * 100).toFixed(1)} % of the parse`);

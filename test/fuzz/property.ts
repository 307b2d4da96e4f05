// One fast-check property of a fuzz target, run three ways: as a test (its own numRuns, plus every
// counterexample in test/fuzz/<target>/ as an explicit example), as a fuzzer for `make fuzz` (a time
// budget, a printed seed, findings saved to the corpus), or only counted, so the runner can split a
// target's budget among its properties. test/fuzz/run.ts sets the mode through the environment.

import { appendFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { after } from 'node:test';
import fc from 'fast-check';
import { type CorpusEntry, loadCorpus, saveCorpusEntry } from './corpus.js';

/** What a fuzz run of one property did, one JSON line each in the runner's report file. */
export interface PropertyReport {
  readonly target: string;
  readonly property: string;
  readonly runs: number;
  readonly ms: number;
  readonly seed: number;
  readonly found?: string;
}

type Mode = { readonly kind: 'test' } | { readonly kind: 'count'; readonly report: string } | { readonly kind: 'fuzz'; readonly report: string; readonly ms: number; readonly seed: number };

function modeFromEnv(): Mode {
  const kind = process.env.AMBIT_FUZZ;
  const report = process.env.AMBIT_FUZZ_REPORT ?? '';
  if (kind === 'count') return { kind, report };
  if (kind === 'fuzz') return { kind, report, ms: Number(process.env.AMBIT_FUZZ_MS), seed: Number(process.env.AMBIT_FUZZ_SEED) };
  return { kind: 'test' };
}

export interface FuzzTarget {
  /** fc.assert with a label (unique in the target, [a-z0-9-]) that names the property's corpus entries. */
  assert<Ts>(label: string, property: fc.IRawProperty<Ts>, params: fc.Parameters<Ts>): Promise<void>;
}

/** Call once per test file, at the top: the target's name is its corpus folder under test/fuzz/. */
export function fuzzTarget(target: string): FuzzTarget {
  const mode = modeFromEnv();
  const corpus = mode.kind === 'count' ? [] : loadCorpus(target);
  const labels = new Set<string>();
  if (mode.kind === 'test') {
    // An entry whose property no longer exists would pass unseen; say which file to move or delete.
    after(() => {
      const orphans = corpus.filter((entry) => !labels.has(entry.property)).map((entry) => entry.file);
      assert.deepEqual(orphans, [], `corpus entries of target ${target} name no property of it: rename their property or delete them`);
    });
  }
  return {
    async assert<Ts>(label: string, property: fc.IRawProperty<Ts>, params: fc.Parameters<Ts>): Promise<void> {
      assert.match(label, /^[a-z0-9-]+$/, `fuzz property label ${JSON.stringify(label)}`);
      assert.ok(!labels.has(label), `fuzz property ${label} is defined twice in target ${target}`);
      labels.add(label);
      const mine = corpus.filter((entry) => entry.property === label);
      const examples = mine.flatMap((entry) => (entry.counterexample ? [entry.counterexample as Ts] : []));
      if (mode.kind === 'count') {
        appendFileSync(mode.report, JSON.stringify({ target, property: label }) + '\n');
        return;
      }
      for (const entry of mine.filter((e) => !e.counterexample)) await replay(entry, property);
      if (mode.kind === 'test') {
        const details = await fc.check(property, { ...params, examples: [...examples, ...(params.examples ?? [])] });
        if (details.failed) assert.fail(reportOf(details, label));
        return;
      }
      const started = performance.now();
      const run = tracked(property);
      const details = await fc.check(run.property, {
        ...params,
        examples,
        seed: mode.seed,
        numRuns: Number.MAX_SAFE_INTEGER,
        interruptAfterTimeLimit: mode.ms,
        markInterruptAsFailure: false,
      });
      await run.settled();
      const report: PropertyReport = { target, property: label, runs: details.numRuns, ms: Math.round(performance.now() - started), seed: mode.seed };
      if (!details.failed || details.counterexample === null) {
        appendFileSync(mode.report, JSON.stringify(report) + '\n');
        return;
      }
      const message = reportOf(details, label);
      const file = saveCorpusEntry(target, { property: label, seed: details.seed, path: details.counterexamplePath ?? '', error: message.split('\n').slice(0, 12).join('\n') }, details.counterexample as unknown[]);
      appendFileSync(mode.report, JSON.stringify({ ...report, found: file }) + '\n');
      assert.fail(`${message}\nsaved to ${file}; make test replays it`);
    },
  };
}

/**
 * The property, remembering its last run. interruptAfterTimeLimit abandons an asynchronous run at the
 * deadline; its I/O (a request still on its way to a shared test server) must end before the next
 * property starts, or the next one sees it as its own.
 */
function tracked<Ts>(property: fc.IRawProperty<Ts>): { readonly property: fc.IRawProperty<Ts>; settled(): Promise<void> } {
  let last: Promise<unknown> = Promise.resolve();
  const wrapper: fc.IRawProperty<Ts> = {
    isAsync: () => property.isAsync(),
    generate: (mrng, runId) => property.generate(mrng, runId),
    shrink: (value) => property.shrink(value),
    run: (value) => {
      const out = property.run(value);
      if (out instanceof Promise) last = out.catch(() => undefined);
      return out;
    },
    runBeforeEach: () => property.runBeforeEach(),
    runAfterEach: () => property.runAfterEach(),
  };
  const limit = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());
  return { property: wrapper, settled: () => Promise.race([last.then(() => undefined), limit(60_000)]) };
}

/** fast-check's report with the failing assertion's own message, which the report leaves out. */
function reportOf<Ts>(details: fc.RunDetails<Ts>, label: string): string {
  const error = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
  return `${fc.defaultReportMessage(details) ?? `property ${label} failed`}\nGot error: ${error}`;
}

/** A finding JSON could not hold: fast-check regenerates it from its seed and shrink path. */
async function replay<Ts>(entry: CorpusEntry, property: fc.IRawProperty<Ts>): Promise<void> {
  const details = await fc.check(property, { seed: entry.seed, path: entry.path, endOnFailure: true });
  if (details.failed) assert.fail(`${entry.file}: ${reportOf(details, entry.property)}`);
}

// Where a bench leaves its raw numbers: bench/results/<latest> and a timestamped copy beside it, each
// opening with when it ran and on what machine (how busy it already was), so runs can be compared.

import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../capture/lab.js';
import { CLK_TCK } from '../capture/process-usage.js';

/** Writes `{ startedAt, machine, ...body }` to `<latest>` and `<prefix>-<time>.json`; returns the latest's path. */
export function saveResults(latestName: string, prefix: string, startedAt: Date, backgroundBusyPercent: number, body: Record<string, unknown>): string {
  const dir = join(ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const latest = join(dir, latestName);
  const machine = { cpus: cpus().length, kernel: release(), node: process.version, clockTicks: CLK_TCK, backgroundBusyPercent };
  writeFileSync(latest, `${JSON.stringify({ startedAt, machine, ...body }, null, 2)}\n`);
  copyFileSync(latest, join(dir, `${prefix}-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`));
  process.stdout.write(`\nraw results: ${latest}\n`);
  return latest;
}

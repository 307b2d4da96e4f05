// `make bench` for the HBONE relay's own CPU, with no lab (about a minute): both agents' data paths in
// this process on loopback (bench/hbone-relay/mesh.ts), 1 KB request/response at a fixed rate and a
// 256 MiB upload, each direct, through node-a's plain relay, and through both agents over HBONE,
// interleaved over rounds. Everything shares one process, so what a path costs is its CPU minus the
// direct path's in the same round. See bench/README.md, "hbone-relay.bench.ts".
//
//   node --import tsx bench/hbone-relay.bench.ts [--rounds 3] [--rate 1000] [--seconds 5] [--bulk-mib 256] [--against DIR]
//
// --against DIR also loads the agent code of another checkout (DIR/bench/hbone-relay/mesh.ts and what
// it imports) into this process and runs its relay and HBONE paths interleaved with this tree's: an A/B
// of a change under the same load from others, which separate processes on a shared machine never see.

import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { backgroundBusyPercent } from './capture/process-usage.js';
import { median, percentilesMs } from './capture/stats.js';
import { type App, type BenchMesh, type Path, startBenchMesh } from './hbone-relay/mesh.js';
import { type BulkRun, type CpuSample, type RateRun, bulkRun, idle, rateRun } from './hbone-relay/runs.js';
import { saveResults } from './lib/results.js';

const MiB = 1024 * 1024;
/** The idle baseline's length: it is subtracted per millisecond of each run, so it need not be as long. */
const IDLE_MS = 2_000;

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '5' },
    'bulk-mib': { type: 'string', default: '256' },
    against: { type: 'string' },
  },
});
const ROUNDS = Number(args.rounds);
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
const BULK_BYTES = Number(args['bulk-mib']) * MiB;
if (!(ROUNDS >= 1 && RATE > 0 && SECONDS > 0 && BULK_BYTES >= MiB && BULK_BYTES % (64 * 1024) === 0)) {
  process.stderr.write('usage: hbone-relay.bench.ts [--rounds N≥1] [--rate per-second] [--seconds S] [--bulk-mib whole MiB] [--against DIR]\n');
  process.exit(2);
}

/** One way through: a path of one tree's mesh (`relay@base` is the relay of the --against checkout). */
interface Variant {
  readonly name: string;
  readonly path: Path;
  readonly mesh: BenchMesh;
}

interface Round {
  readonly idle: CpuSample;
  readonly backgroundBusyPercent: number;
  readonly rate: Record<string, RateRun>;
  readonly bulk: Record<string, BulkRun>;
}

/** CPU of a run minus what the idle process burns in the same wall time. */
const netCpuUs = (run: CpuSample, idleRun: CpuSample): number => run.cpuUs - (idleRun.cpuUs / idleRun.wallMs) * run.wallMs;
const perRequest = (r: Round, v: string): number => netCpuUs(r.rate[v]!, r.idle) / r.rate[v]!.completed;
const perMiB = (r: Round, v: string): number => netCpuUs(r.bulk[v]!, r.idle) / 1000 / (r.bulk[v]!.bytes / MiB);

/** Each variant first once every len(variants) rounds, so drift within a round is shared. */
const orderOf = <T>(items: readonly T[], round: number): T[] => items.map((_, i) => items[(i + round) % items.length]!);

function appFor(v: Variant, kind: 'echo' | 'sink'): App {
  // The plain relay only runs for destinations outside the mesh (passthrough).
  if (kind === 'echo') return v.path === 'relay' ? v.mesh.echoOutside : v.mesh.echo;
  return v.path === 'relay' ? v.mesh.sinkOutside : v.mesh.sink;
}

async function runRound(variants: readonly Variant[], round: number): Promise<Round> {
  const [idleRun, background] = await Promise.all([idle(IDLE_MS), backgroundBusyPercent(IDLE_MS)]);
  const rate: Record<string, RateRun> = {};
  const bulk: Record<string, BulkRun> = {};
  for (const v of orderOf(variants, round)) rate[v.name] = await rateRun(v.mesh, v.path, appFor(v, 'echo'), RATE, SECONDS);
  for (const v of orderOf(variants, round)) bulk[v.name] = await bulkRun(v.mesh, v.path, appFor(v, 'sink'), BULK_BYTES);
  const r: Round = { idle: idleRun, backgroundBusyPercent: background, rate, bulk };
  const each = variants.map((v) => `${v.name} ${perRequest(r, v.name).toFixed(0)} µs/req, ${perMiB(r, v.name).toFixed(2)} ms/MiB`);
  process.stdout.write(`round ${round + 1}/${ROUNDS}: background ${background.toFixed(0)} % busy; ${each.join('; ')}\n`);
  return r;
}

interface VariantSummary {
  /** Median over rounds of the CPU per completed request, idle subtracted. */
  readonly cpuUsPerRequest: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly completed: number;
  readonly requests: number;
  /** Median over rounds, idle subtracted. */
  readonly bulkCpuMsPerMiB: number;
  readonly bulkMiBPerCpuSecond: number;
  readonly bulkMiBPerSecond: number;
}

/** One variant against another, per round then the median: what `name` costs beyond `baseline`. */
interface Comparison {
  readonly name: string;
  readonly baseline: string;
  readonly addedCpuUsPerRequest: number;
  readonly cpuRatioPerRequest: number;
  readonly addedBulkCpuMsPerMiB: number;
  readonly bulkCpuRatio: number;
  readonly bulkThroughputPercentOfBaseline: number;
}

function compare(rounds: readonly Round[], name: string, baseline: string): Comparison {
  return {
    name,
    baseline,
    addedCpuUsPerRequest: median(rounds.map((r) => perRequest(r, name) - perRequest(r, baseline))),
    cpuRatioPerRequest: median(rounds.map((r) => perRequest(r, name) / perRequest(r, baseline))),
    addedBulkCpuMsPerMiB: median(rounds.map((r) => perMiB(r, name) - perMiB(r, baseline))),
    bulkCpuRatio: median(rounds.map((r) => perMiB(r, name) / perMiB(r, baseline))),
    bulkThroughputPercentOfBaseline: median(rounds.map((r) => (100 * r.bulk[baseline]!.wallMs) / r.bulk[name]!.wallMs)),
  };
}

function summarize(variants: readonly Variant[], rounds: readonly Round[]): { variants: Record<string, VariantSummary>; comparisons: Comparison[] } {
  const summaries: Record<string, VariantSummary> = {};
  for (const { name } of variants) {
    const latency = percentilesMs(rounds.flatMap((r) => r.rate[name]!.latenciesUs));
    summaries[name] = {
      cpuUsPerRequest: median(rounds.map((r) => perRequest(r, name))),
      p50Ms: latency.p50,
      p90Ms: latency.p90,
      p99Ms: latency.p99,
      completed: rounds.reduce((n, r) => n + r.rate[name]!.completed, 0),
      requests: rounds.reduce((n, r) => n + r.rate[name]!.requests, 0),
      bulkCpuMsPerMiB: median(rounds.map((r) => perMiB(r, name))),
      bulkMiBPerCpuSecond: median(rounds.map((r) => 1000 / perMiB(r, name))),
      bulkMiBPerSecond: median(rounds.map((r) => r.bulk[name]!.bytes / MiB / (r.bulk[name]!.wallMs / 1000))),
    };
  }
  const comparisons = variants.filter((v) => v.path !== 'direct').map((v) => compare(rounds, v.name, 'direct'));
  // With --against: this tree's tunnels against the other checkout's, round by round.
  for (const v of variants) if (variants.some((o) => o.name === `${v.name}@base`)) comparisons.push(compare(rounds, v.name, `${v.name}@base`));
  return { variants: summaries, comparisons };
}

function report(variants: readonly Variant[], summary: ReturnType<typeof summarize>): void {
  const out: string[] = [''];
  out.push(`1 KB request/response, ${RATE}/s for ${SECONDS} s on one connection; ${BULK_BYTES / MiB} MiB upload; ${ROUNDS} rounds, medians (latency pooled)`);
  out.push('path        CPU µs/req  p50 ms  p90 ms  p99 ms  done          bulk CPU ms/MiB  MiB/CPU-s  MiB/s');
  for (const { name } of variants) {
    const s = summary.variants[name]!;
    out.push(
      `${name.padEnd(11)} ${s.cpuUsPerRequest.toFixed(1).padStart(10)}  ${s.p50Ms.toFixed(3).padStart(6)}  ${s.p90Ms.toFixed(3).padStart(6)}  ${s.p99Ms.toFixed(2).padStart(6)}  ${`${s.completed}/${s.requests}`.padEnd(12)}  ${s.bulkCpuMsPerMiB.toFixed(2).padStart(15)}  ${s.bulkMiBPerCpuSecond.toFixed(0).padStart(9)}  ${s.bulkMiBPerSecond.toFixed(0).padStart(5)}`,
    );
  }
  out.push('');
  out.push('added over the baseline, per round then the median (over direct: the agents\' own cost; hbone is both agents, relay node-a alone)');
  for (const c of summary.comparisons) {
    const sign = (x: number): string => (x >= 0 ? `+${x.toFixed(2)}` : x.toFixed(2));
    out.push(
      `${c.name.padEnd(11)} vs ${c.baseline.padEnd(11)} ${sign(c.addedCpuUsPerRequest)} µs/req (×${c.cpuRatioPerRequest.toFixed(3)}); bulk ${sign(c.addedBulkCpuMsPerMiB)} CPU ms/MiB (×${c.bulkCpuRatio.toFixed(3)}), throughput ${c.bulkThroughputPercentOfBaseline.toFixed(0)} % of ${c.baseline}`,
    );
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

async function openMeshes(): Promise<{ variants: Variant[]; meshes: BenchMesh[] }> {
  const mesh = await startBenchMesh();
  const variants: Variant[] = [
    { name: 'direct', path: 'direct', mesh },
    { name: 'relay', path: 'relay', mesh },
    { name: 'hbone', path: 'hbone', mesh },
  ];
  if (!args.against) return { variants, meshes: [mesh] };
  const other = resolve(args.against, 'bench/hbone-relay/mesh.ts');
  const imported = (await import(pathToFileURL(other).href)) as { startBenchMesh?: typeof startBenchMesh };
  if (typeof imported.startBenchMesh !== 'function') throw new Error(`${other} exports no startBenchMesh; --against needs a checkout that has this bench`);
  const base = await imported.startBenchMesh();
  variants.push({ name: 'relay@base', path: 'relay', mesh: base }, { name: 'hbone@base', path: 'hbone', mesh: base });
  return { variants, meshes: [mesh, base] };
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const { variants, meshes } = await openMeshes();
  try {
    // Warm-up: certificates issued, the HBONE connection pooled, the JIT past its first tiers.
    for (const v of variants) {
      await rateRun(v.mesh, v.path, appFor(v, 'echo'), RATE, 1);
      await bulkRun(v.mesh, v.path, appFor(v, 'sink'), 16 * MiB);
    }
    const rounds: Round[] = [];
    for (let round = 0; round < ROUNDS; round++) rounds.push(await runRound(variants, round));
    const summary = summarize(variants, rounds);
    report(variants, summary);
    const background = median(rounds.map((r) => r.backgroundBusyPercent));
    if (background > 20) process.stdout.write(`\nwarning: the machine was ${background.toFixed(0)} % busy before the runs; compare ratios, or rerun when it is quiet\n`);
    saveResults('hbone-relay-latest.json', 'hbone-relay', startedAt, background, {
      plan: { rounds: ROUNDS, rate: RATE, seconds: SECONDS, bulkBytes: BULK_BYTES, execArgv: process.execArgv, ...(args.against ? { against: resolve(args.against) } : {}) },
      summary,
      rounds: rounds.map((r) => ({
        idle: r.idle,
        backgroundBusyPercent: r.backgroundBusyPercent,
        rate: Object.fromEntries(variants.map(({ name }) => [name, { ...r.rate[name], latenciesUs: undefined, latency: percentilesMs(r.rate[name]!.latenciesUs) }])),
        bulk: r.bulk,
      })),
    });
  } finally {
    for (const mesh of meshes) await mesh.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`hbone-relay bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});

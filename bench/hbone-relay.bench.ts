// `make bench` for the HBONE relay's own CPU, with no lab (about a minute): both agents' data paths in
// this process on loopback (bench/hbone-relay/mesh.ts), 1 KB request/response at a fixed rate and a
// 256 MiB upload, each direct, through node-a's plain relay, and through both agents over HBONE,
// interleaved over rounds. Everything shares one process, so what a path costs is its CPU minus the
// direct path's in the same round. See bench/README.md, "hbone-relay.bench.ts".
//
//   node --import tsx bench/hbone-relay.bench.ts [--rounds 3] [--rate 1000] [--seconds 5] [--bulk-mib 256]

import { parseArgs } from 'node:util';
import { backgroundBusyPercent } from './capture/process-usage.js';
import { median, percentilesMs } from './capture/stats.js';
import { type App, type BenchMesh, type Path, startBenchMesh } from './hbone-relay/mesh.js';
import { type BulkRun, type CpuSample, type RateRun, bulkRun, idle, rateRun } from './hbone-relay/runs.js';
import { saveResults } from './lib/results.js';

const PATHS: readonly Path[] = ['direct', 'relay', 'hbone'];
const TUNNELS: readonly Exclude<Path, 'direct'>[] = ['relay', 'hbone'];
const MiB = 1024 * 1024;
/** The idle baseline's length: it is subtracted per millisecond of each run, so it need not be as long. */
const IDLE_MS = 2_000;

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '5' },
    'bulk-mib': { type: 'string', default: '256' },
  },
});
const ROUNDS = Number(args.rounds);
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
const BULK_BYTES = Number(args['bulk-mib']) * MiB;
if (!(ROUNDS >= 1 && RATE > 0 && SECONDS > 0 && BULK_BYTES >= MiB && BULK_BYTES % (64 * 1024) === 0)) {
  process.stderr.write('usage: hbone-relay.bench.ts [--rounds N≥1] [--rate per-second] [--seconds S] [--bulk-mib whole MiB]\n');
  process.exit(2);
}

interface Round {
  readonly idle: CpuSample;
  readonly backgroundBusyPercent: number;
  readonly rate: Record<Path, RateRun>;
  readonly bulk: Record<Path, BulkRun>;
}

/** CPU of a run minus what the idle process burns in the same wall time. */
const netCpuUs = (run: CpuSample, idleRun: CpuSample): number => run.cpuUs - (idleRun.cpuUs / idleRun.wallMs) * run.wallMs;

/** Each path first once every len(PATHS) rounds, so drift within a round is shared. */
const orderOf = (round: number): Path[] => PATHS.map((_, i) => PATHS[(i + round) % PATHS.length]!);

const appFor = (mesh: BenchMesh, path: Path, kind: 'echo' | 'sink'): App => {
  // The plain relay only runs for destinations outside the mesh (passthrough).
  if (kind === 'echo') return path === 'relay' ? mesh.echoOutside : mesh.echo;
  return path === 'relay' ? mesh.sinkOutside : mesh.sink;
};

async function runRound(mesh: BenchMesh, round: number): Promise<Round> {
  const [idleRun, background] = await Promise.all([idle(IDLE_MS), backgroundBusyPercent(IDLE_MS)]);
  const rate = {} as Record<Path, RateRun>;
  const bulk = {} as Record<Path, BulkRun>;
  for (const path of orderOf(round)) rate[path] = await rateRun(mesh, path, appFor(mesh, path, 'echo'), RATE, SECONDS);
  for (const path of orderOf(round)) bulk[path] = await bulkRun(mesh, path, appFor(mesh, path, 'sink'), BULK_BYTES);
  process.stdout.write(`round ${round + 1}/${ROUNDS}: background ${background.toFixed(0)} % busy; ${PATHS.map((p) => `${p} ${(netCpuUs(rate[p], idleRun) / rate[p].completed).toFixed(0)} µs/req, ${(bulk[p].bytes / MiB / (netCpuUs(bulk[p], idleRun) / 1e6)).toFixed(0)} MiB/CPU-s`).join('; ')}\n`);
  return { idle: idleRun, backgroundBusyPercent: background, rate, bulk };
}

interface PathSummary {
  /** Median over rounds of the CPU per completed request, idle subtracted. */
  readonly cpuUsPerRequest: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly completed: number;
  readonly requests: number;
  /** Median over rounds: MiB moved per CPU-second, idle subtracted. */
  readonly bulkMiBPerCpuSecond: number;
  readonly bulkCpuMsPerMiB: number;
  readonly bulkMiBPerSecond: number;
}

/** What a tunnel adds to the direct path, per round then the median: the cost of the agents' code itself. */
interface TunnelCost {
  readonly addedCpuUsPerRequest: number;
  readonly cpuRatioPerRequest: number;
  readonly addedBulkCpuMsPerMiB: number;
  readonly bulkCpuRatio: number;
  readonly bulkThroughputPercentOfDirect: number;
}

function summarize(rounds: readonly Round[]): { paths: Record<Path, PathSummary>; tunnels: Record<string, TunnelCost> } {
  const perRequest = (r: Round, p: Path): number => netCpuUs(r.rate[p], r.idle) / r.rate[p].completed;
  const perMiB = (r: Round, p: Path): number => netCpuUs(r.bulk[p], r.idle) / 1000 / (r.bulk[p].bytes / MiB);
  const paths = {} as Record<Path, PathSummary>;
  for (const p of PATHS) {
    const latency = percentilesMs(rounds.flatMap((r) => r.rate[p].latenciesUs));
    paths[p] = {
      cpuUsPerRequest: median(rounds.map((r) => perRequest(r, p))),
      p50Ms: latency.p50,
      p90Ms: latency.p90,
      p99Ms: latency.p99,
      completed: rounds.reduce((n, r) => n + r.rate[p].completed, 0),
      requests: rounds.reduce((n, r) => n + r.rate[p].requests, 0),
      bulkMiBPerCpuSecond: median(rounds.map((r) => 1000 / perMiB(r, p))),
      bulkCpuMsPerMiB: median(rounds.map((r) => perMiB(r, p))),
      bulkMiBPerSecond: median(rounds.map((r) => r.bulk[p].bytes / MiB / (r.bulk[p].wallMs / 1000))),
    };
  }
  const tunnels: Record<string, TunnelCost> = {};
  for (const t of TUNNELS) {
    tunnels[t] = {
      addedCpuUsPerRequest: median(rounds.map((r) => perRequest(r, t) - perRequest(r, 'direct'))),
      cpuRatioPerRequest: median(rounds.map((r) => perRequest(r, t) / perRequest(r, 'direct'))),
      addedBulkCpuMsPerMiB: median(rounds.map((r) => perMiB(r, t) - perMiB(r, 'direct'))),
      bulkCpuRatio: median(rounds.map((r) => perMiB(r, t) / perMiB(r, 'direct'))),
      bulkThroughputPercentOfDirect: median(rounds.map((r) => (100 * r.bulk['direct'].wallMs) / r.bulk[t].wallMs)),
    };
  }
  return { paths, tunnels };
}

function report(summary: ReturnType<typeof summarize>): void {
  const out: string[] = [''];
  out.push(`1 KB request/response, ${RATE}/s for ${SECONDS} s on one connection; ${BULK_BYTES / MiB} MiB upload; ${ROUNDS} rounds, medians (latency pooled)`);
  out.push('path    CPU µs/req  p50 ms  p90 ms  p99 ms  done          bulk CPU ms/MiB  MiB/CPU-s  MiB/s');
  for (const p of PATHS) {
    const s = summary.paths[p];
    out.push(
      `${p.padEnd(7)} ${s.cpuUsPerRequest.toFixed(1).padStart(10)}  ${s.p50Ms.toFixed(3).padStart(6)}  ${s.p90Ms.toFixed(3).padStart(6)}  ${s.p99Ms.toFixed(2).padStart(6)}  ${`${s.completed}/${s.requests}`.padEnd(12)}  ${s.bulkCpuMsPerMiB.toFixed(2).padStart(15)}  ${s.bulkMiBPerCpuSecond.toFixed(0).padStart(9)}  ${s.bulkMiBPerSecond.toFixed(0).padStart(5)}`,
    );
  }
  out.push('');
  out.push('added over direct (per round, median): the agents\' own cost; hbone is both agents, relay is node-a alone');
  for (const t of TUNNELS) {
    const c = summary.tunnels[t]!;
    out.push(
      `${t.padEnd(7)} +${c.addedCpuUsPerRequest.toFixed(1)} µs/req (×${c.cpuRatioPerRequest.toFixed(2)} direct); bulk +${c.addedBulkCpuMsPerMiB.toFixed(2)} CPU ms/MiB (×${c.bulkCpuRatio.toFixed(2)}), throughput ${c.bulkThroughputPercentOfDirect.toFixed(0)} % of direct`,
    );
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const mesh = await startBenchMesh();
  try {
    // Warm-up: certificates issued, the HBONE connection pooled, the JIT past its first tiers.
    for (const path of PATHS) {
      await rateRun(mesh, path, appFor(mesh, path, 'echo'), RATE, 1);
      await bulkRun(mesh, path, appFor(mesh, path, 'sink'), 16 * MiB);
    }
    const rounds: Round[] = [];
    for (let round = 0; round < ROUNDS; round++) rounds.push(await runRound(mesh, round));
    const summary = summarize(rounds);
    report(summary);
    const background = median(rounds.map((r) => r.backgroundBusyPercent));
    if (background > 20) process.stdout.write(`\nwarning: the machine was ${background.toFixed(0)} % busy before the runs; compare ratios, or rerun when it is quiet\n`);
    saveResults('hbone-relay-latest.json', 'hbone-relay', startedAt, background, {
      plan: { rounds: ROUNDS, rate: RATE, seconds: SECONDS, bulkBytes: BULK_BYTES, execArgv: process.execArgv },
      summary,
      rounds: rounds.map((r) => ({
        idle: r.idle,
        backgroundBusyPercent: r.backgroundBusyPercent,
        rate: Object.fromEntries(PATHS.map((p) => [p, { ...r.rate[p], latenciesUs: undefined, latency: percentilesMs(r.rate[p].latenciesUs) }])),
        bulk: r.bulk,
      })),
    });
  } finally {
    await mesh.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`hbone-relay bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});

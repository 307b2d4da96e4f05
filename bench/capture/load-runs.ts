// The load each round puts on a path: iperf3 with one and two streams, and fixed-rate 1 KB
// request/response (bench/lib/load.ts run inside the client pod), each with the proxies' CPU and RSS
// around it, and for Ambit's paths the agents' garbage collection during the bulk runs.

import { join } from 'node:path';
import { agentGcSeconds } from './agent-metrics.js';
import { ambit, execIn, lab, ROOT } from './lab.js';
import { IPERF_SECONDS, type Mode, type NodeName, NODES, PATHS, proxyOf, rateOf, SERVER_WAIT_MS, type Streams, type Variant, WARMUP_SECONDS } from './plan.js';
import { measured, type Pids, type Usage } from './process-usage.js';
import { type Percentiles, percentilesMs } from './stats.js';

const LOAD = join(ROOT, 'bench/lib/load.ts');

export interface IperfRun {
  readonly mode: Mode;
  readonly round: number;
  readonly streams: Streams;
  readonly bitsPerSecond: number;
  readonly retransmits: number;
  readonly usage: Usage;
  /** Ambit's paths: each agent's GC seconds during the run (nodejs_gc_duration_seconds_sum, after minus before). */
  readonly agentGcSeconds?: Record<NodeName, number>;
}

const gcOfAgents = async (): Promise<Record<NodeName, number>> => {
  const seconds = await Promise.all(NODES.map((n) => agentGcSeconds(n)));
  return Object.fromEntries(NODES.map((n, i) => [n, seconds[i]!])) as Record<NodeName, number>;
};

export async function iperf(mode: Mode, streams: Streams, round: number, pids: Pids): Promise<IperfRun> {
  const { client, host, iperfPort } = PATHS[mode];
  const argv = ['iperf3', '-c', host, '-p', String(iperfPort), '-t', String(IPERF_SECONDS), '-P', String(streams), '-J', '--connect-timeout', '3000'];
  // Read just outside the measured run, so reading them costs the run nothing; between the reads the agents see only the run.
  const gcBefore = mode !== 'direct' && proxyOf(mode) === 'ambit' ? await gcOfAgents() : undefined;
  const { result, usage } = await measured(pids, () => ambit(['lab', 'exec', '--lab', lab, client, '--', ...argv], (IPERF_SECONDS + 20) * 1000));
  const gcAfter = gcBefore ? await gcOfAgents() : undefined;
  // iperf3 -J prints JSON with an "error" field on failure too, so parse before judging the exit code.
  let report: { error?: string; end?: { sum_received?: { bits_per_second: number }; sum_sent?: { retransmits?: number } } };
  try {
    report = JSON.parse(result.stdout) as typeof report;
  } catch {
    throw new Error(`iperf3 ${mode} exited ${result.code ?? 'on timeout'} without JSON:\n${result.stderr}${result.stdout.slice(0, 2000)}`);
  }
  const bps = report.end?.sum_received?.bits_per_second;
  if (report.error || bps === undefined) throw new Error(`iperf3 ${mode}: ${report.error ?? 'no end.sum_received in its report'}`);
  const retransmits = report.end?.sum_sent?.retransmits ?? 0;
  const gc = gcBefore && gcAfter ? { agentGcSeconds: Object.fromEntries(NODES.map((n) => [n, gcAfter[n] - gcBefore[n]])) as Record<NodeName, number> } : {};
  return { mode, round, streams, bitsPerSecond: bps, retransmits, usage, ...gc };
}

interface LoadReport {
  readonly completed: number;
  readonly errors: number;
  readonly skipped: number;
  readonly timeouts: number;
  readonly elapsedMs: number;
  readonly latenciesUs: number[];
}

async function load(mode: Mode, variant: Variant, seconds: number): Promise<LoadReport> {
  const { client, host, echoPort } = PATHS[mode];
  const argv = [process.execPath, '--import', 'tsx', LOAD, host, String(echoPort), String(rateOf(variant).rate), String(seconds), variant];
  // tsx resolves from the working directory, which `lab exec` inherits from us.
  const report = JSON.parse(await execIn(client, argv, (seconds + 30) * 1000)) as LoadReport;
  if (report.completed === 0) throw new Error(`${variant} load in ${mode}: no request completed (${report.errors} errors, ${report.timeouts} timeouts)`);
  return report;
}

/**
 * Retries a short warm-up load until the echo server answers through the path, bounded to
 * SERVER_WAIT_MS; iperf3 starts faster. Also warms JIT, connections and ARP on the path.
 */
export async function serverReady(mode: Mode): Promise<void> {
  const deadline = Date.now() + SERVER_WAIT_MS;
  for (;;) {
    try {
      await load(mode, 'persistent', WARMUP_SECONDS);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`the echo server never answered through the ${mode} path within ${SERVER_WAIT_MS / 1000} s: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

export interface LatencyRun {
  readonly mode: Mode;
  readonly variant: Variant;
  readonly round: number;
  readonly requests: number;
  readonly completed: number;
  readonly errors: number;
  readonly skipped: number;
  readonly timeouts: number;
  readonly achievedRate: number;
  readonly latencyMs: Percentiles;
  readonly usage: Usage;
}

export async function latency(mode: Mode, variant: Variant, round: number, pids: Pids): Promise<{ run: LatencyRun; samples: number[] }> {
  const { rate, seconds } = rateOf(variant);
  const { result, usage } = await measured(pids, () => load(mode, variant, seconds));
  const { completed, errors, skipped, timeouts, elapsedMs, latenciesUs } = result;
  const run: LatencyRun = {
    mode,
    variant,
    round,
    requests: Math.round(rate * seconds),
    completed,
    errors,
    skipped,
    timeouts,
    achievedRate: completed / (elapsedMs / 1000),
    latencyMs: percentilesMs(latenciesUs),
    usage,
  };
  return { run, samples: latenciesUs };
}

// `make bench` for the plain relay's bulk cost, with no lab (about a minute): one iperf3 stream on
// loopback, direct and through a relay process built from the agent's own code (the kernel splice
// relay, and the JavaScript relay it falls back to), interleaved over rounds. Reported: throughput in %
// of direct in the same round, and the relay process's CPU per GiB. See bench/README.md,
// "splice-relay.bench.ts".
//
//   node --import tsx bench/splice-relay.bench.ts [--rounds 4] [--seconds 4] [--addon PATH]
//
// --addon PATH adds a path through another build of native/ (say, the previous commit's), for an A/B
// of a change to native/src/splice_engine.c under the same load from others.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { ROOT } from './capture/lab.js';
import { backgroundBusyPercent, processCpuSeconds } from './capture/process-usage.js';
import { median } from './capture/stats.js';
import { saveResults } from './lib/results.js';

const GiB = 1024 ** 3;
const { values: args } = parseArgs({
  options: { rounds: { type: 'string', default: '4' }, seconds: { type: 'string', default: '4' }, addon: { type: 'string' } },
});
const ROUNDS = Number(args.rounds);
const SECONDS = Number(args.seconds);
if (!(ROUNDS >= 1 && SECONDS >= 1 && SECONDS <= 30)) {
  process.stderr.write('usage: splice-relay.bench.ts [--rounds N>=1] [--seconds 1-30] [--addon PATH]\n');
  process.exit(2);
}

interface Path {
  readonly name: string;
  /** AMBIT_NATIVE_ADDON for the relay process; null: no relay (direct). */
  readonly addon: string | null;
}
const PATHS: Path[] = [
  { name: 'direct', addon: null },
  { name: 'kernel', addon: resolve(ROOT, 'native/build/Release/ambit_bpf.node') },
  // An empty addon path loads no addon: kernelRelay declines and relay.ts copies the bytes in JavaScript.
  { name: 'javascript', addon: '' },
  ...(args.addon ? [{ name: `kernel@${args.addon}`, addon: resolve(args.addon) }] : []),
];

interface Run {
  readonly path: string;
  readonly round: number;
  readonly gbitPerSecond: number;
  readonly bytes: number;
  /** The relay process's CPU per GiB relayed (all threads); undefined for direct. */
  readonly relayCpuSecondsPerGiB?: number;
}

const children = new Set<ChildProcess>();
function stopChildren(): void {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    stopChildren();
    process.exit(130);
  });
}

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => done(port));
    });
    s.once('error', fail);
  });
}

/** Starts `command`, resolving once a stdout line matches `ready` (with its match), failing after 10 s. */
function start(command: string, argv: readonly string[], env: NodeJS.ProcessEnv, ready: RegExp): Promise<{ child: ChildProcess; match: RegExpExecArray }> {
  const child = spawn(command, argv, { env, stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`${command} ${argv.join(' ')}: not ready after 10 s`)), 10_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const match = ready.exec(line);
      if (match) {
        clearTimeout(timer);
        done({ child, match });
      }
    });
    child.once('exit', (code) => fail(new Error(`${command} ${argv.join(' ')} exited (${code}) before it was ready`)));
  });
}

/** One iperf3 stream to `port` for SECONDS; its received rate and bytes. */
function iperf(port: number): { gbitPerSecond: number; bytes: number } {
  const r = spawnSync('iperf3', ['-c', '127.0.0.1', '-p', String(port), '-t', String(SECONDS), '-J'], { encoding: 'utf8', timeout: (SECONDS + 20) * 1000 });
  const report = JSON.parse(r.stdout || '{}') as { end?: { sum_received?: { bits_per_second: number; bytes: number } }; error?: string };
  const received = report.end?.sum_received;
  if (!received) throw new Error(`iperf3 to port ${port} gave no result: ${report.error ?? r.stderr ?? r.error?.message}`);
  return { gbitPerSecond: received.bits_per_second / 1e9, bytes: received.bytes };
}

async function runPath(path: Path, round: number, serverPort: number): Promise<Run> {
  if (path.addon === null) return { path: path.name, round, ...iperf(serverPort) };
  const { child, match } = await start('node', ['--import', 'tsx', resolve(ROOT, 'bench/splice-relay/relay-process.ts'), String(serverPort)], { ...process.env, AMBIT_NATIVE_ADDON: path.addon }, /^listening (\d+)$/);
  try {
    const before = processCpuSeconds(child.pid!);
    const result = iperf(Number(match[1]));
    const cpu = processCpuSeconds(child.pid!) - before;
    return { path: path.name, round, ...result, relayCpuSecondsPerGiB: cpu / (result.bytes / GiB) };
  } finally {
    child.kill('SIGKILL');
  }
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const busy = await backgroundBusyPercent(2_000);
  process.stdout.write(`Plain relay, one iperf3 stream on loopback, ${ROUNDS} interleaved rounds of ${SECONDS} s per path\n`);
  process.stdout.write(`Machine busy before the rounds: ${busy.toFixed(0)}% of its cpus${busy > 20 ? ' (busy: compare ratios only, or rerun when quiet)' : ''}\n\n`);
  const serverPort = await freePort();
  await start('iperf3', ['-s', '-B', '127.0.0.1', '-p', String(serverPort), '--forceflush'], process.env, /Server listening/);

  const runs: Run[] = [];
  process.stdout.write(`${'path'.padEnd(28)} round  Gbit/s  % of direct  relay CPU s/GiB\n`);
  for (let round = 1; round <= ROUNDS; round++) {
    // Rotated, so that no path always runs first or after the same neighbour.
    const order = PATHS.map((_, i) => PATHS[(i + round - 1) % PATHS.length]!);
    const roundRuns: Run[] = [];
    for (const path of order) roundRuns.push(await runPath(path, round, serverPort));
    const direct = roundRuns.find((r) => r.path === 'direct')!;
    for (const r of roundRuns) {
      const cpu = r.relayCpuSecondsPerGiB === undefined ? '-' : r.relayCpuSecondsPerGiB.toFixed(3);
      process.stdout.write(`${r.path.padEnd(28)} ${String(round).padStart(5)}  ${r.gbitPerSecond.toFixed(2).padStart(6)}  ${((100 * r.gbitPerSecond) / direct.gbitPerSecond).toFixed(1).padStart(11)}  ${cpu.padStart(15)}\n`);
    }
    runs.push(...roundRuns);
  }

  process.stdout.write(`\nMedians over the rounds (% of direct: the median of each round's ratio)\n${'path'.padEnd(28)}  Gbit/s  % of direct  relay CPU s/GiB\n`);
  const summary = PATHS.map((path) => {
    const own = runs.filter((r) => r.path === path.name);
    const ratios = own.map((r) => (100 * r.gbitPerSecond) / runs.find((d) => d.path === 'direct' && d.round === r.round)!.gbitPerSecond);
    const cpu = own.flatMap((r) => (r.relayCpuSecondsPerGiB === undefined ? [] : [r.relayCpuSecondsPerGiB]));
    const row = { path: path.name, gbitPerSecond: median(own.map((r) => r.gbitPerSecond)), percentOfDirect: median(ratios), ...(cpu.length ? { relayCpuSecondsPerGiB: median(cpu) } : {}) };
    process.stdout.write(`${row.path.padEnd(28)}  ${row.gbitPerSecond.toFixed(2).padStart(6)}  ${row.percentOfDirect.toFixed(1).padStart(11)}  ${(row.relayCpuSecondsPerGiB?.toFixed(3) ?? '-').padStart(15)}\n`);
    return row;
  });
  saveResults('splice-relay-latest.json', 'splice-relay', startedAt, busy, { rounds: ROUNDS, seconds: SECONDS, runs, summary });
}

main()
  .catch((err: unknown) => {
    process.stderr.write(`splice-relay bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(stopChildren);

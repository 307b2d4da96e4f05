// `make bench` for the capture data path: brings up its own two-node lab, measures throughput and
// latency across nodes with and without capture, interleaved, plus the agents' CPU and memory, prints
// the ratios and writes the raw results to bench/results/capture-<timestamp>.json. See bench/README.md.

import { type SpawnOptions, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const AMBIT = join(ROOT, 'dist/agent/cli/main.js');
const MESH_YAML = join(ROOT, 'bench/capture-mesh.yaml');
const LOAD = join(ROOT, 'bench/lib/load.ts');
// The name starts with "t" so CI's sweep of leftover test labs removes it after a crash.
const LAB = 'tbench';
const NODES = ['node-a', 'node-b'] as const;

const ROUNDS = 3;
const IPERF_SECONDS = 5;
const PERSISTENT = { rate: 1000, seconds: 5 };
// Lower than the persistent rate: every request is a new connection through both agents, and this
// rate stays well inside what they accept without queueing, so the latency is the path's, not a backlog's.
const PER_CONNECTION = { rate: 200, seconds: 5 };
const WARMUP_SECONDS = 1;
const SERVER_WAIT_MS = 30_000;
const TARGETS = { throughputPercent: 60, addedP90Ms: 0.2 };

type Mode = 'direct' | 'mesh';
const SERVER_IP: Record<Mode, string> = { direct: '10.247.2.20', mesh: '10.247.2.10' };
const CLIENT: Record<Mode, string> = { direct: 'direct/client', mesh: 'mesh/client' };
const ECHO_PORT = 7000;
const IPERF_PORT = 5201;
// Alternating which mode goes first each round spreads slow drift (thermal, page cache, a noisy
// neighbour) over both sides instead of charging it to one.
const orderOf = (round: number): Mode[] => (round % 2 === 0 ? ['direct', 'mesh'] : ['mesh', 'direct']);

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function run(command: string, args: readonly string[], timeoutMs: number, options: SpawnOptions = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const ambit = (args: readonly string[], timeoutMs: number): Promise<Run> => run(process.execPath, [AMBIT, ...args], timeoutMs);

async function execIn(target: string, argv: readonly string[], timeoutMs: number): Promise<string> {
  const r = await ambit(['lab', 'exec', '--lab', LAB, target, '--', ...argv], timeoutMs);
  if (r.code !== 0) throw new Error(`\`${argv.join(' ')}\` in ${target} exited ${r.code ?? 'on timeout'}:\n${r.stderr}${r.stdout.slice(0, 2000)}`);
  return r.stdout;
}

// ------------------------------------------------------------------------------------------ the lab

let labUp = false;

/** Synchronous, so it also runs from a signal handler just before exit. */
function labDown(): void {
  if (!labUp) return;
  labUp = false;
  process.stderr.write(`removing lab ${LAB}\n`);
  spawnSync(process.execPath, [AMBIT, 'lab', 'down', '--lab', LAB], { stdio: 'inherit', timeout: 60_000 });
}

function preflight(): void {
  if (process.getuid?.() !== 0) throw new Error('the capture bench needs root (network namespaces, cgroups, eBPF): run `make bench` as root');
  if (spawnSync('sh', ['-c', 'command -v iperf3']).status !== 0) {
    throw new Error('iperf3 is missing: install it with `apt-get install -y iperf3` (Debian package iperf3)');
  }
  if (!existsSync(AMBIT)) {
    process.stderr.write('dist/ is missing: running `make build`\n');
    if (spawnSync('make', ['build'], { cwd: ROOT, stdio: 'inherit' }).status !== 0) throw new Error('`make build` failed');
  }
}

/** What a failed `lab up` left to look at, before `down` removes it. */
async function labDiagnostics(): Promise<string> {
  const parts = [await ambit(['lab', 'status', '--lab', LAB], 15_000)];
  for (const target of ['mesh/server', 'direct/server', 'node/node-b']) parts.push(await ambit(['lab', 'logs', '--lab', LAB, target], 15_000));
  return parts.map((r) => (r.stdout + r.stderr).split('\n').slice(-25).join('\n')).join('\n');
}

async function bringUpLab(): Promise<void> {
  // One retry keeps a transient lab failure from costing the whole run; the diagnostics of the
  // failed attempt are printed so the cause is not lost.
  for (let attempt = 1; ; attempt++) {
    // A run killed with SIGKILL leaves its lab behind; `down` is idempotent, so clear it first.
    labUp = true;
    labDown();
    labUp = true;
    const up = await ambit(['lab', 'up', '--lab', LAB, '--timeout', '60', MESH_YAML], 90_000);
    if (up.code === 0) {
      process.stderr.write(up.stdout);
      return;
    }
    const failure = `lab up failed (attempt ${attempt}):\n${up.stdout}${up.stderr}\n${await labDiagnostics()}`;
    if (attempt === 2) throw new Error(failure);
    process.stderr.write(`${failure}\nretrying once\n`);
  }
}

// ------------------------------------------------------------------------------- /proc accounting

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

function agentPids(): Record<string, number> {
  const status = JSON.parse(readFileSync(`/run/ambit/lab/${LAB}/status.json`, 'utf8')) as { processes: { id: string; pid?: number }[] };
  const pids: Record<string, number> = {};
  for (const node of NODES) {
    const pid = status.processes.find((p) => p.id === `node/${node}`)?.pid;
    // The lab starts agents through sh and nsenter, which exec; anything but node here would make the
    // CPU numbers someone else's.
    const comm = pid ? readFileSync(`/proc/${pid}/comm`, 'utf8').trim() : '';
    if (!pid || comm !== 'node') throw new Error(`agent of ${node}: pid ${pid ?? 'missing'} is "${comm}", not the node agent`);
    pids[node] = pid;
  }
  return pids;
}

interface AgentSample {
  /** The whole process: event loop, libuv pool, V8's GC and compiler threads. */
  readonly cpuSeconds: number;
  /** The kernel's share of cpuSeconds (system calls, and the TCP stack work done inside them). */
  readonly sysSeconds: number;
  /** The main thread alone (its tid is the pid): the event loop, which a single-stream relay cannot spread. */
  readonly mainThreadCpuSeconds: number;
  readonly rssKiB: number;
}

/** utime and stime of a /proc stat file, in seconds. */
function cpuOf(statFile: string): { user: number; sys: number } {
  // Fields after the command name, which may itself hold spaces and parentheses: utime and stime are
  // fields 14 and 15 of the line, so 12th and 13th after the closing parenthesis.
  const stat = readFileSync(statFile, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(fields[11]) / CLK_TCK, sys: Number(fields[12]) / CLK_TCK };
}

function sampleAgent(pid: number): AgentSample {
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  const all = cpuOf(`/proc/${pid}/stat`);
  const main = cpuOf(`/proc/${pid}/task/${pid}/stat`);
  return { cpuSeconds: all.user + all.sys, sysSeconds: all.sys, mainThreadCpuSeconds: main.user + main.sys, rssKiB: Number(rss) };
}

const sampleAgents = (pids: Record<string, number>): Record<string, AgentSample> =>
  Object.fromEntries(Object.entries(pids).map(([node, pid]) => [node, sampleAgent(pid)]));

/** Busy and total jiffies of the whole machine, to tell an agent limit from a machine limit. */
function hostCpu(): { busy: number; total: number } {
  const [, ...values] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
  const n = values.map(Number);
  const total = n.reduce((a, b) => a + b, 0);
  return { busy: total - (n[3] ?? 0) - (n[4] ?? 0), total };
}

interface AgentUsage {
  /** Per node: CPU seconds spent during the run, and RSS before and after. */
  readonly agents: Record<string, { cpuSeconds: number; cpuPercentOfCore: number; sysPercentOfCore: number; mainThreadPercentOfCore: number; rssBeforeKiB: number; rssAfterKiB: number }>;
  /** The whole machine's busy share (all cores) during the run. */
  readonly hostBusyPercent: number;
}

async function measured<T>(pids: Record<string, number>, work: () => Promise<T>): Promise<{ result: T; usage: AgentUsage; wallSeconds: number }> {
  const before = sampleAgents(pids);
  const hostBefore = hostCpu();
  const t0 = performance.now();
  const result = await work();
  const wallSeconds = (performance.now() - t0) / 1000;
  const after = sampleAgents(pids);
  const hostAfter = hostCpu();
  const agents: AgentUsage['agents'] = {};
  for (const node of Object.keys(pids)) {
    const cpuSeconds = after[node]!.cpuSeconds - before[node]!.cpuSeconds;
    const mainThread = after[node]!.mainThreadCpuSeconds - before[node]!.mainThreadCpuSeconds;
    agents[node] = {
      cpuSeconds,
      cpuPercentOfCore: (100 * cpuSeconds) / wallSeconds,
      sysPercentOfCore: (100 * (after[node]!.sysSeconds - before[node]!.sysSeconds)) / wallSeconds,
      mainThreadPercentOfCore: (100 * mainThread) / wallSeconds,
      rssBeforeKiB: before[node]!.rssKiB,
      rssAfterKiB: after[node]!.rssKiB,
    };
  }
  const hostBusyPercent = (100 * (hostAfter.busy - hostBefore.busy)) / (hostAfter.total - hostBefore.total);
  return { result, usage: { agents, hostBusyPercent }, wallSeconds };
}

// ------------------------------------------------------------------------------------ measurements

interface IperfRun {
  readonly mode: Mode;
  readonly round: number;
  readonly bitsPerSecond: number;
  readonly retransmits: number;
  readonly usage: AgentUsage;
}

async function iperf(mode: Mode, round: number, pids: Record<string, number>): Promise<IperfRun> {
  const argv = ['iperf3', '-c', SERVER_IP[mode], '-p', String(IPERF_PORT), '-t', String(IPERF_SECONDS), '-J', '--connect-timeout', '3000'];
  const { result, usage } = await measured(pids, () => ambit(['lab', 'exec', '--lab', LAB, CLIENT[mode], '--', ...argv], (IPERF_SECONDS + 20) * 1000));
  // iperf3 -J prints JSON with an "error" field on failure too, so parse before judging the exit code.
  let report: { error?: string; end?: { sum_received?: { bits_per_second: number }; sum_sent?: { retransmits?: number } } };
  try {
    report = JSON.parse(result.stdout) as typeof report;
  } catch {
    throw new Error(`iperf3 ${mode} exited ${result.code ?? 'on timeout'} without JSON:\n${result.stderr}${result.stdout.slice(0, 2000)}`);
  }
  const bps = report.end?.sum_received?.bits_per_second;
  if (report.error || bps === undefined) throw new Error(`iperf3 ${mode}: ${report.error ?? 'no end.sum_received in its report'}`);
  return { mode, round, bitsPerSecond: bps, retransmits: report.end?.sum_sent?.retransmits ?? 0, usage };
}

type Variant = 'persistent' | 'per-connection';

interface LoadReport {
  readonly completed: number;
  readonly errors: number;
  readonly skipped: number;
  readonly timeouts: number;
  readonly elapsedMs: number;
  readonly latenciesUs: number[];
}

async function load(mode: Mode, variant: Variant, rate: number, seconds: number): Promise<LoadReport> {
  const argv = [process.execPath, '--import', 'tsx', LOAD, SERVER_IP[mode], String(ECHO_PORT), String(rate), String(seconds), variant];
  // tsx resolves from the working directory, which `lab exec` inherits from us.
  const report = JSON.parse(await execIn(CLIENT[mode], argv, (seconds + 30) * 1000)) as LoadReport;
  if (report.completed === 0) throw new Error(`${variant} load in ${mode}: no request completed (${report.errors} errors, ${report.timeouts} timeouts)`);
  return report;
}

/** Retries a short warm-up load until the echo server answers, bounded to SERVER_WAIT_MS; iperf3 starts faster. */
async function serversReady(mode: Mode): Promise<void> {
  const deadline = Date.now() + SERVER_WAIT_MS;
  for (;;) {
    try {
      await load(mode, 'persistent', PERSISTENT.rate, WARMUP_SECONDS);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`the ${mode} echo server never answered within ${SERVER_WAIT_MS / 1000} s: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

const percentile = (sorted: readonly number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
const ascending = (values: readonly number[]): number[] => [...values].sort((a, b) => a - b);
const median = (values: readonly number[]): number => percentile(ascending(values), 0.5);

interface Percentiles {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

function percentilesMs(latenciesUs: readonly number[]): Percentiles {
  const s = ascending(latenciesUs);
  return { p50: percentile(s, 0.5) / 1000, p90: percentile(s, 0.9) / 1000, p99: percentile(s, 0.99) / 1000, max: s[s.length - 1]! / 1000 };
}

interface LatencyRun {
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
  readonly usage: AgentUsage;
}

async function latency(mode: Mode, variant: Variant, round: number, pids: Record<string, number>): Promise<{ run: LatencyRun; samples: number[] }> {
  const { rate, seconds } = variant === 'persistent' ? PERSISTENT : PER_CONNECTION;
  const { result, usage } = await measured(pids, () => load(mode, variant, rate, seconds));
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

/** Whether the agents saw the mesh pods' connections and none of the direct ones: else the numbers compare nothing. */
async function verifyCapture(): Promise<{ meshRecords: number; directRecords: number }> {
  const log = (await ambit(['lab', 'logs', '--lab', LAB, 'node/node-a'], 30_000)).stdout;
  const meshRecords = log.match(/"src\.namespace":"mesh".*"direction":"outbound"/g)?.length ?? 0;
  const directRecords = log.match(/"src\.namespace":"direct"/g)?.length ?? 0;
  if (meshRecords === 0 || directRecords > 0) {
    throw new Error(`capture is not what the bench assumes: node-a's agent logged ${meshRecords} outbound mesh and ${directRecords} direct connections`);
  }
  return { meshRecords, directRecords };
}

// -------------------------------------------------------------------------------------- reporting

const fmt = (n: number, digits = 2): string => n.toFixed(digits);
const gbps = (bps: number): string => fmt(bps / 1e9, 2);

function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ')).join('\n');
}

interface Summary {
  readonly throughput: { directGbps: number; meshGbps: number; meshPercentOfDirect: number; meshAgentCpuPercentOfCore: Record<string, number>; meshAgentMainThreadPercentOfCore: Record<string, number>; hostBusyPercent: Record<Mode, number> };
  readonly latency: Record<Variant, { direct: Percentiles; mesh: Percentiles; addedMs: Omit<Percentiles, 'max'> }>;
  readonly agentCost: Record<Variant, { requests: number; cpuSecondsPer1000: Record<string, number>; cpuSecondsPer1000Total: number; rssAfterKiB: Record<string, number> }>;
}

function summarize(iperfRuns: readonly IperfRun[], latencyRuns: readonly LatencyRun[], samples: Map<string, number[]>): Summary {
  const bps = (mode: Mode): number => median(iperfRuns.filter((r) => r.mode === mode).map((r) => r.bitsPerSecond));
  const meshIperf = iperfRuns.filter((r) => r.mode === 'mesh');
  const latencyBy = (variant: Variant): Summary['latency'][Variant] => {
    const direct = percentilesMs(samples.get(`direct/${variant}`) ?? []);
    const mesh = percentilesMs(samples.get(`mesh/${variant}`) ?? []);
    return { direct, mesh, addedMs: { p50: mesh.p50 - direct.p50, p90: mesh.p90 - direct.p90, p99: mesh.p99 - direct.p99 } };
  };
  const costBy = (variant: Variant): Summary['agentCost'][Variant] => {
    const runs = latencyRuns.filter((r) => r.mode === 'mesh' && r.variant === variant);
    const requests = runs.reduce((n, r) => n + r.completed, 0);
    const per1000: Record<string, number> = {};
    const rss: Record<string, number> = {};
    for (const node of NODES) {
      per1000[node] = (1000 * runs.reduce((s, r) => s + r.usage.agents[node]!.cpuSeconds, 0)) / requests;
      rss[node] = Math.max(...runs.map((r) => r.usage.agents[node]!.rssAfterKiB));
    }
    return { requests, cpuSecondsPer1000: per1000, cpuSecondsPer1000Total: Object.values(per1000).reduce((a, b) => a + b, 0), rssAfterKiB: rss };
  };
  return {
    throughput: {
      directGbps: bps('direct') / 1e9,
      meshGbps: bps('mesh') / 1e9,
      meshPercentOfDirect: (100 * bps('mesh')) / bps('direct'),
      meshAgentCpuPercentOfCore: Object.fromEntries(NODES.map((n) => [n, median(meshIperf.map((r) => r.usage.agents[n]!.cpuPercentOfCore))])),
      meshAgentMainThreadPercentOfCore: Object.fromEntries(NODES.map((n) => [n, median(meshIperf.map((r) => r.usage.agents[n]!.mainThreadPercentOfCore))])),
      hostBusyPercent: {
        direct: median(iperfRuns.filter((r) => r.mode === 'direct').map((r) => r.usage.hostBusyPercent)),
        mesh: median(meshIperf.map((r) => r.usage.hostBusyPercent)),
      },
    },
    latency: { persistent: latencyBy('persistent'), 'per-connection': latencyBy('per-connection') },
    agentCost: { persistent: costBy('persistent'), 'per-connection': costBy('per-connection') },
  };
}

function print(iperfRuns: readonly IperfRun[], latencyRuns: readonly LatencyRun[], s: Summary): void {
  const out = (line = ''): void => void process.stdout.write(`${line}\n`);
  const verdict = (ok: boolean): string => (ok ? 'meets target' : 'BELOW TARGET');
  out(`\nCapture data path, cross-node, ${ROUNDS} interleaved rounds (direct = not enrolled, mesh = through both agents)\n`);

  out(`Single-stream throughput (iperf3 -t ${IPERF_SECONDS}), per round in Gbit/s; agents' CPU in % of one core: process / event-loop thread / kernel part`);
  const agentCols = (r: IperfRun): string[] =>
    NODES.map((n) => {
      const a = r.usage.agents[n]!;
      return `${fmt(a.cpuPercentOfCore, 0)}/${fmt(a.mainThreadPercentOfCore, 0)}/${fmt(a.sysPercentOfCore, 0)}`;
    });
  out(
    table([
      ['run', 'round', 'Gbit/s', 'retransmits', ...NODES.map((n) => `${n} cpu%`), `host busy% (${cpus().length} cpus)`],
      ...iperfRuns.map((r) => [r.mode, String(r.round), gbps(r.bitsPerSecond), String(r.retransmits), ...agentCols(r), fmt(r.usage.hostBusyPercent, 0)]),
    ]),
  );
  const t = s.throughput;
  out(`median: direct ${fmt(t.directGbps)} Gbit/s, mesh ${fmt(t.meshGbps)} Gbit/s -> mesh is ${fmt(t.meshPercentOfDirect, 1)}% of direct (target >= ${TARGETS.throughputPercent}%: ${verdict(t.meshPercentOfDirect >= TARGETS.throughputPercent)})\n`);

  for (const variant of ['persistent', 'per-connection'] as const) {
    const { rate, seconds } = variant === 'persistent' ? PERSISTENT : PER_CONNECTION;
    const what = variant === 'persistent' ? 'one connection' : 'a new connection per request';
    out(`Latency, 1 KB request/response at ${rate}/s for ${seconds} s over ${what}, in ms`);
    const runs = latencyRuns.filter((r) => r.variant === variant);
    out(
      table([
        ['run', 'round', 'done', 'err+skip+timeout', 'rate/s', 'p50', 'p90', 'p99', 'max', ...NODES.map((n) => `${n} cpu s`)],
        ...runs.map((r) => [
          r.mode,
          String(r.round),
          `${r.completed}/${r.requests}`,
          String(r.errors + r.skipped + r.timeouts),
          fmt(r.achievedRate, 0),
          fmt(r.latencyMs.p50, 3),
          fmt(r.latencyMs.p90, 3),
          fmt(r.latencyMs.p99, 3),
          fmt(r.latencyMs.max, 3),
          ...NODES.map((n) => fmt(r.usage.agents[n]!.cpuSeconds, 2)),
        ]),
      ]),
    );
    const l = s.latency[variant];
    out(
      table([
        ['all rounds pooled', 'p50', 'p90', 'p99'],
        ['direct', fmt(l.direct.p50, 3), fmt(l.direct.p90, 3), fmt(l.direct.p99, 3)],
        ['mesh', fmt(l.mesh.p50, 3), fmt(l.mesh.p90, 3), fmt(l.mesh.p99, 3)],
        ['added by capture', fmt(l.addedMs.p50, 3), fmt(l.addedMs.p90, 3), fmt(l.addedMs.p99, 3)],
      ]),
    );
    const c = s.agentCost[variant];
    const perWhat = variant === 'persistent' ? 'requests' : 'connections';
    out(
      `agents' CPU per 1000 ${perWhat}: ${NODES.map((n) => `${n} ${fmt(c.cpuSecondsPer1000[n]!, 3)} s`).join(', ')}, total ${fmt(c.cpuSecondsPer1000Total, 3)} s; ` +
        `RSS after: ${NODES.map((n) => `${n} ${fmt(c.rssAfterKiB[n]! / 1024, 1)} MiB`).join(', ')}`,
    );
    if (variant === 'persistent') out(`added p90 ${fmt(l.addedMs.p90, 3)} ms (target <= ${TARGETS.addedP90Ms} ms: ${verdict(l.addedMs.p90 <= TARGETS.addedP90Ms)})`);
    out();
  }
}

// ------------------------------------------------------------------------------------------- main

async function main(): Promise<void> {
  preflight();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: stopping\n`);
      labDown();
      process.exit(130);
    });
  }
  try {
    await bringUpLab();
    const pids = agentPids();
    const startedAt = new Date();

    // Waits for the servers (the YAML has no probe), and warms JIT, connections and ARP on both paths.
    for (const mode of ['direct', 'mesh'] as const) await serversReady(mode);

    const iperfRuns: IperfRun[] = [];
    const latencyRuns: LatencyRun[] = [];
    const samples = new Map<string, number[]>();
    for (let round = 1; round <= ROUNDS; round++) {
      for (const mode of orderOf(round)) {
        process.stderr.write(`round ${round}/${ROUNDS}: ${mode}\n`);
        iperfRuns.push(await iperf(mode, round, pids));
        for (const variant of ['persistent', 'per-connection'] as const) {
          const { run, samples: s } = await latency(mode, variant, round, pids);
          latencyRuns.push(run);
          const key = `${mode}/${variant}`;
          samples.set(key, [...(samples.get(key) ?? []), ...s]);
        }
      }
    }
    const capture = await verifyCapture();

    const summary = summarize(iperfRuns, latencyRuns, samples);
    print(iperfRuns, latencyRuns, summary);
    const dir = join(ROOT, 'bench/results');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `capture-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
    const machine = { cpus: cpus().length, kernel: release(), node: process.version, clockTicks: CLK_TCK };
    const settings = { rounds: ROUNDS, iperfSeconds: IPERF_SECONDS, persistent: PERSISTENT, perConnection: PER_CONNECTION, targets: TARGETS };
    writeFileSync(file, `${JSON.stringify({ startedAt, machine, settings, capture, summary, iperfRuns, latencyRuns }, null, 2)}\n`);
    process.stdout.write(`raw results: ${file}\n`);
  } finally {
    labDown();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`capture bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  labDown();
  process.exit(1);
});

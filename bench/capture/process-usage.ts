// CPU and memory of the proxy processes (both agents, both HAProxies) around a measured piece of
// work, from /proc: utime+stime of the whole process and of its main thread, and VmRSS before, at
// its peak during, and after the work.

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import type { ProcessKey } from './plan.js';

export const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
/** Often enough to see a peak within a 5 s run, rare enough to cost the bench nothing measurable. */
const RSS_SAMPLE_MS = 100;

export type Pids = Partial<Record<ProcessKey, number>>;

interface ProcessSample {
  /** The whole process: all its threads (for Node: event loop, libuv pool, V8's GC and compiler). */
  readonly cpuSeconds: number;
  /** The kernel's share of cpuSeconds (system calls, and the TCP stack work done inside them). */
  readonly sysSeconds: number;
  /** The main thread alone (its tid is the pid): for Node, the event loop a single stream cannot spread. */
  readonly mainThreadCpuSeconds: number;
  readonly rssKiB: number;
}

export interface ProcessUsage {
  readonly cpuSeconds: number;
  readonly cpuPercentOfCore: number;
  readonly sysPercentOfCore: number;
  readonly mainThreadPercentOfCore: number;
  readonly rssBeforeKiB: number;
  readonly rssPeakKiB: number;
  readonly rssAfterKiB: number;
}

export interface Usage {
  readonly processes: Partial<Record<ProcessKey, ProcessUsage>>;
  /** How long the work took. */
  readonly wallSeconds: number;
  /** The whole machine's busy share (all cores) during the work. */
  readonly hostBusyPercent: number;
}

/** utime and stime of a /proc stat file, in seconds. */
function cpuOf(statFile: string): { user: number; sys: number } {
  // Fields after the command name, which may itself hold spaces and parentheses: utime and stime are
  // fields 14 and 15 of the line, so 12th and 13th after the closing parenthesis.
  const stat = readFileSync(statFile, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(fields[11]) / CLK_TCK, sys: Number(fields[12]) / CLK_TCK };
}

/** utime+stime of a whole process (all its threads), in seconds. */
export function processCpuSeconds(pid: number): number {
  const { user, sys } = cpuOf(`/proc/${pid}/stat`);
  return user + sys;
}

const rssOf = (pid: number): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);

function sample(pid: number): ProcessSample {
  const all = cpuOf(`/proc/${pid}/stat`);
  const main = cpuOf(`/proc/${pid}/task/${pid}/stat`);
  return { cpuSeconds: all.user + all.sys, sysSeconds: all.sys, mainThreadCpuSeconds: main.user + main.sys, rssKiB: rssOf(pid) };
}

/** Busy and total jiffies of the whole machine, to tell a proxy's limit from the machine's. */
function hostCpu(): { busy: number; total: number } {
  const [, ...values] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
  const n = values.map(Number);
  const total = n.reduce((a, b) => a + b, 0);
  return { busy: total - (n[3] ?? 0) - (n[4] ?? 0), total };
}

/** The machine's busy share over a quiet interval: the load others put on it, which every number here shares. */
export async function backgroundBusyPercent(ms: number): Promise<number> {
  const before = hostCpu();
  await new Promise((r) => setTimeout(r, ms));
  const after = hostCpu();
  return (100 * (after.busy - before.busy)) / (after.total - before.total);
}

const entries = (pids: Pids): [ProcessKey, number][] => Object.entries(pids) as [ProcessKey, number][];

export async function measured<T>(pids: Pids, work: () => Promise<T>): Promise<{ result: T; usage: Usage }> {
  const before = new Map(entries(pids).map(([key, pid]) => [key, sample(pid)]));
  const peak = new Map(entries(pids).map(([key]) => [key, before.get(key)!.rssKiB]));
  const sampler = setInterval(() => {
    // A process that died mid-run is reported after it (sample() throws there, inside the caller's cleanup), not from a timer.
    for (const [key, pid] of entries(pids)) if (existsSync(`/proc/${pid}/status`)) peak.set(key, Math.max(peak.get(key)!, rssOf(pid)));
  }, RSS_SAMPLE_MS);
  const hostBefore = hostCpu();
  const t0 = performance.now();
  let result: T;
  try {
    result = await work();
  } finally {
    clearInterval(sampler);
  }
  const wallSeconds = (performance.now() - t0) / 1000;
  const hostAfter = hostCpu();
  const processes: Usage['processes'] = {};
  for (const [key, pid] of entries(pids)) {
    const b = before.get(key)!;
    const a = sample(pid);
    processes[key] = {
      cpuSeconds: a.cpuSeconds - b.cpuSeconds,
      cpuPercentOfCore: (100 * (a.cpuSeconds - b.cpuSeconds)) / wallSeconds,
      sysPercentOfCore: (100 * (a.sysSeconds - b.sysSeconds)) / wallSeconds,
      mainThreadPercentOfCore: (100 * (a.mainThreadCpuSeconds - b.mainThreadCpuSeconds)) / wallSeconds,
      rssBeforeKiB: b.rssKiB,
      rssPeakKiB: Math.max(peak.get(key)!, a.rssKiB),
      rssAfterKiB: a.rssKiB,
    };
  }
  const hostBusyPercent = (100 * (hostAfter.busy - hostBefore.busy)) / (hostAfter.total - hostBefore.total);
  return { result, usage: { processes, wallSeconds, hostBusyPercent } };
}

// Many concurrent tunnelled connections from alpha's client pods to beta's echo pod, each exchanging a
// small message every few seconds, and what holding them costs the two agents: shared by the short
// test (scale-tunnels.test.ts) and the long bench (bench/scale.bench.ts).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { HOLD_CLIENT } from './fault-clients.js';
import { type FaultMesh, agentPid, clientPod, cpuSeconds, echoIp, nodeNetns, rssBytes } from './fault-lab.js';
import { LabProcess, type Report } from './lab-process.js';

export interface ScaleRun {
  readonly connections: number;
  /** Client pods sharing the connections (the mesh must have at least this many). */
  readonly pods: number;
  readonly everyMs: number;
  readonly holdMs: number;
  /** An echo later than this counts as a stall. */
  readonly stallMs: number;
}

interface AgentSample {
  readonly rss: number;
  readonly cpu: number;
}

export interface AgentCost {
  /** RSS growth from before the first connection to the end of the hold, per 1,000 connections, MiB. */
  readonly rssMiBPer1k: number;
  /** CPU while opening, per 1,000 connections, seconds: also vCPU at 1,000 new connections per second. */
  readonly openCpuSecondsPer1k: number;
  /** CPU while holding, per 1,000 connections, in vCPU. */
  readonly holdVcpuPer1k: number;
  readonly rssMiB: number;
}

export interface ScaleResult {
  readonly opened: number;
  readonly failed: number;
  readonly lost: number;
  readonly stalled: number;
  /** Stalls of a connection's first exchange: it waited for its tunnel to be opened, not a held tunnel that stopped. */
  readonly stalledFirst: number;
  readonly messages: number;
  readonly worstMs: number;
  /** The 99th percentile of the echoes' round trips, over every client pod's messages (worst pod's). */
  readonly p99Ms: number;
  readonly openSeconds: number;
  readonly errors: Readonly<Record<string, number>>;
  /** Lost connections by when ('opening': before every connection of its pod was up; 'held': after) and whether one echo came back first. */
  readonly lostHow: Readonly<Record<string, number>>;
  /** How each node's kernel handled the connects meanwhile: its listen-queue counters, increase over the run. */
  readonly kernel: Readonly<Record<'alpha' | 'beta', ListenCounters>>;
  readonly agents: Readonly<Record<'alpha' | 'beta', AgentCost>>;
}

const sample = (lab: string, node: string): AgentSample => {
  const pid = agentPid(lab, node);
  return { rss: rssBytes(pid), cpu: cpuSeconds(pid) };
};

/** Opens `run.connections` from `run.pods` client pods at once, holds them, and reports what clients and agents saw. */
export async function holdTunnels(lab: string, mesh: FaultMesh, run: ScaleRun): Promise<ScaleResult> {
  assert.ok(mesh.clients >= run.pods, `the mesh has ${mesh.clients} client pods, the run wants ${run.pods}`);
  const per = Math.ceil(run.connections / run.pods);
  const nodes = ['alpha', 'beta'] as const;
  const start = Object.fromEntries(nodes.map((n) => [n, sample(lab, n)])) as Record<(typeof nodes)[number], AgentSample>;
  const kernelAtStart = { alpha: listenCounters(lab, 'alpha'), beta: listenCounters(lab, 'beta') };
  const startedAt = Date.now();
  const clients = Array.from({ length: run.pods }, (_, i) =>
    new LabProcess(lab, clientPod(i), ['node', '-e', HOLD_CLIENT, echoIp(mesh), '9000', String(per), String(run.everyMs), String(run.holdMs), String(run.stallMs)]));
  try {
    // Opening is bounded by the clients' 200 connects in flight each; a minute per 2,000 is far beyond it.
    const openBudget = 60_000 + (per / 2_000) * 60_000;
    const open = await Promise.all(clients.map((c, i) => c.line(`client pod ${i} to open its connections`, (r) => r['event'] === 'all-open', openBudget)));
    const openSeconds = (Math.max(...open.map((r) => Number(r['at']))) - startedAt) / 1000;
    const opened = Object.fromEntries(nodes.map((n) => [n, sample(lab, n)])) as Record<(typeof nodes)[number], AgentSample>;
    const held = await Promise.all(clients.map((c, i) => c.line(`client pod ${i} to finish its hold`, (r) => r['event'] === 'held', run.holdMs + 60_000)));
    const end = Object.fromEntries(nodes.map((n) => [n, sample(lab, n)])) as Record<(typeof nodes)[number], AgentSample>;
    const sum = (key: string): number => held.reduce((a, r) => a + Number(r[key]), 0);
    const k = sum('opened') / 1000 || 1;
    const cost = (n: (typeof nodes)[number]): AgentCost => ({
      rssMiBPer1k: (end[n].rss - start[n].rss) / 2 ** 20 / k,
      openCpuSecondsPer1k: (opened[n].cpu - start[n].cpu) / k,
      holdVcpuPer1k: (end[n].cpu - opened[n].cpu) / (run.holdMs / 1000) / k,
      rssMiB: end[n].rss / 2 ** 20,
    });
    return {
      opened: sum('opened'),
      failed: sum('failed'),
      lost: sum('lost'),
      stalled: sum('stalled'),
      stalledFirst: sum('stalledFirst'),
      messages: sum('messages'),
      worstMs: Math.max(...held.map((r) => Number(r['worstMs']))),
      p99Ms: Math.max(...held.map((r) => Number(r['p99Ms']))),
      openSeconds,
      errors: mergeCounts(held, 'errors'),
      lostHow: mergeCounts(held, 'lostHow'),
      kernel: { alpha: since(listenCounters(lab, 'alpha'), kernelAtStart.alpha), beta: since(listenCounters(lab, 'beta'), kernelAtStart.beta) },
      agents: { alpha: cost('alpha'), beta: cost('beta') },
    };
  } finally {
    clients.forEach((c) => c.kill());
  }
}

/**
 * A node's TcpExt counters for connections its listeners' queues turned away: ListenOverflows (a full
 * accept queue dropped a SYN or a handshake's last ACK), SyncookiesSent (half-open handshakes past the
 * backlog) and SyncookiesFailed (an ACK that matched no handshake: the kernel resets that client).
 */
export type ListenCounters = Readonly<Record<(typeof LISTEN_COUNTERS)[number], number>>;
const LISTEN_COUNTERS = ['ListenOverflows', 'SyncookiesSent', 'SyncookiesFailed'] as const;

/** The node namespace's /proc/net/netstat (its own per network namespace). */
export function listenCounters(lab: string, node: string): ListenCounters {
  const lines = execFileSync('ip', ['netns', 'exec', nodeNetns(lab, node), 'cat', '/proc/net/netstat'], { encoding: 'utf8' }).split('\n');
  const names = lines.find((l) => l.startsWith('TcpExt:'))?.split(' ') ?? [];
  const values = lines.filter((l) => l.startsWith('TcpExt:'))[1]?.split(' ') ?? [];
  const read = (name: string): number => {
    const at = names.indexOf(name);
    assert.ok(at > 0, `no TcpExt ${name} in ${node}'s /proc/net/netstat`);
    return Number(values[at]);
  };
  return Object.fromEntries(LISTEN_COUNTERS.map((name) => [name, read(name)])) as ListenCounters;
}

function since(now: ListenCounters, before: ListenCounters): ListenCounters {
  return Object.fromEntries(LISTEN_COUNTERS.map((name) => [name, now[name] - before[name]])) as ListenCounters;
}

/** Sums one count-by-key field of every client pod's report. */
function mergeCounts(reports: readonly Report[], field: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of reports) for (const [key, n] of Object.entries((r[field] ?? {}) as Record<string, number>)) out[key] = (out[key] ?? 0) + n;
  return out;
}

// Many concurrent tunnelled connections from alpha's client pods to beta's echo pod, each exchanging a
// small message every few seconds, and what holding them costs the two agents: shared by the short
// test (scale-tunnels.test.ts) and the long bench (bench/scale.bench.ts).

import assert from 'node:assert/strict';
import { HOLD_CLIENT } from './fault-clients.js';
import { type FaultMesh, agentPid, clientPod, cpuSeconds, echoIp, rssBytes } from './fault-lab.js';
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
  readonly messages: number;
  readonly worstMs: number;
  /** The 99th percentile of the echoes' round trips, over every client pod's messages (worst pod's). */
  readonly p99Ms: number;
  readonly openSeconds: number;
  readonly errors: Readonly<Record<string, number>>;
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
      messages: sum('messages'),
      worstMs: Math.max(...held.map((r) => Number(r['worstMs']))),
      p99Ms: Math.max(...held.map((r) => Number(r['p99Ms']))),
      openSeconds,
      errors: mergeErrors(held),
      agents: { alpha: cost('alpha'), beta: cost('beta') },
    };
  } finally {
    clients.forEach((c) => c.kill());
  }
}

function mergeErrors(reports: readonly Report[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of reports) for (const [code, n] of Object.entries((r['errors'] ?? {}) as Record<string, number>)) out[code] = (out[code] ?? 0) + n;
  return out;
}

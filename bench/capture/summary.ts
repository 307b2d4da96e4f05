// What a run showed: each path's throughput against direct, its added latency, each proxy process's
// CPU per 1000 requests and RSS, and issue 4's targets judged on them.

import type { IperfRun, LatencyRun } from './load-runs.js';
import { type Mode, MODES, type NodeName, NODES, PLAIN_TARGETS, type ProcessKey, type ProxiedMode, PROXIED_MODES, processesOf, proxyOf, TARGETS, type Variant, VARIANTS } from './plan.js';
import type { ProcessUsage } from './process-usage.js';
import { type Added, added, median, type Percentiles, percentilesMs } from './stats.js';

const KIB_PER_MB = 1e6 / 1024;

export interface ThroughputSummary {
  /** Median over the rounds. */
  readonly gbps: number;
  readonly percentOfDirect: number;
  /** Median over the rounds, per process of the path's proxy (the agents for direct: their background). */
  readonly cpuPercentOfCore: Partial<Record<ProcessKey, number>>;
  readonly mainThreadPercentOfCore: Partial<Record<ProcessKey, number>>;
  readonly hostBusyPercent: number;
}

export interface LatencySummary {
  /** Pooled over the rounds. */
  readonly ms: Percentiles;
  readonly addedMs: Added;
}

export interface ProxyCost {
  readonly requests: number;
  /** CPU seconds per 1000 requests (or connections); at 1000 rps this is also vCPU per 1000 rps. */
  readonly cpuSecondsPer1000: Partial<Record<ProcessKey, number>>;
  /** The largest over the rounds. */
  readonly rssPeakKiB: Partial<Record<ProcessKey, number>>;
  /** Peak during a run minus before it, the largest over the rounds. */
  readonly rssGrowthKiB: Partial<Record<ProcessKey, number>>;
  /** After the last run minus before the first: what the runs left behind. */
  readonly rssRetainedKiB: Partial<Record<ProcessKey, number>>;
}

export interface Check {
  readonly what: string;
  readonly target: string;
  readonly value: string;
  readonly ok: boolean;
}

export interface Summary {
  readonly throughput: Record<Mode, ThroughputSummary>;
  readonly latency: Record<Variant, Record<Mode, LatencySummary>>;
  readonly cost: Record<Variant, Record<ProxiedMode, ProxyCost>>;
  readonly checks: readonly Check[];
}

function perProcess(keys: readonly ProcessKey[], value: (key: ProcessKey) => number): Partial<Record<ProcessKey, number>> {
  return Object.fromEntries(keys.map((key) => [key, value(key)]));
}

const usageOf = (u: { processes: Partial<Record<ProcessKey, ProcessUsage>> }, key: ProcessKey): ProcessUsage => {
  const p = u.processes[key];
  if (!p) throw new Error(`no usage sampled for ${key}`);
  return p;
};

function throughputOf(iperfRuns: readonly IperfRun[]): Record<Mode, ThroughputSummary> {
  const runsOf = (mode: Mode): IperfRun[] => iperfRuns.filter((r) => r.mode === mode);
  const directBps = median(runsOf('direct').map((r) => r.bitsPerSecond));
  const one = (mode: Mode): ThroughputSummary => {
    const runs = runsOf(mode);
    const bps = median(runs.map((r) => r.bitsPerSecond));
    const keys = processesOf(proxyOf(mode));
    return {
      gbps: bps / 1e9,
      percentOfDirect: (100 * bps) / directBps,
      cpuPercentOfCore: perProcess(keys, (k) => median(runs.map((r) => usageOf(r.usage, k).cpuPercentOfCore))),
      mainThreadPercentOfCore: perProcess(keys, (k) => median(runs.map((r) => usageOf(r.usage, k).mainThreadPercentOfCore))),
      hostBusyPercent: median(runs.map((r) => r.usage.hostBusyPercent)),
    };
  };
  return Object.fromEntries(MODES.map((m) => [m, one(m)])) as Record<Mode, ThroughputSummary>;
}

function latencyOf(samples: ReadonlyMap<string, readonly number[]>, variant: Variant): Record<Mode, LatencySummary> {
  const ms = (mode: Mode): Percentiles => percentilesMs(samples.get(`${mode}/${variant}`) ?? []);
  const direct = ms('direct');
  return Object.fromEntries(MODES.map((m) => [m, { ms: ms(m), addedMs: added(ms(m), direct) }])) as Record<Mode, LatencySummary>;
}

function costOf(latencyRuns: readonly LatencyRun[], variant: Variant, mode: ProxiedMode): ProxyCost {
  const runs = latencyRuns.filter((r) => r.mode === mode && r.variant === variant);
  const requests = runs.reduce((n, r) => n + r.completed, 0);
  const keys = processesOf(proxyOf(mode));
  const usages = (k: ProcessKey): ProcessUsage[] => runs.map((r) => usageOf(r.usage, k));
  return {
    requests,
    cpuSecondsPer1000: perProcess(keys, (k) => (1000 * usages(k).reduce((s, u) => s + u.cpuSeconds, 0)) / requests),
    rssPeakKiB: perProcess(keys, (k) => Math.max(...usages(k).map((u) => u.rssPeakKiB))),
    rssGrowthKiB: perProcess(keys, (k) => Math.max(...usages(k).map((u) => u.rssPeakKiB - u.rssBeforeKiB))),
    rssRetainedKiB: perProcess(keys, (k) => usages(k).at(-1)!.rssAfterKiB - usages(k)[0]!.rssBeforeKiB),
  };
}

const ms3 = (n: number): string => `${n.toFixed(3)} ms`;

/** Issue 4's targets, judged on one HBONE-shaped path: Ambit's, or the Node floor's (`who` prefixes each line). */
function hboneChecks(mode: 'ambit' | 'node-h2', who: string, t: Record<Mode, ThroughputSummary>, l: Record<Mode, LatencySummary>, c: Record<ProxiedMode, ProxyCost>): Check[] {
  const p90 = l[mode].addedMs.p90;
  const haproxyP90 = l.haproxy.addedMs.p90;
  const percent = t[mode].percentOfDirect;
  const perProcess = (node: NodeName): Check[] => {
    const key = `${proxyOf(mode)}/${node}` as const;
    const vcpu = c[mode].cpuSecondsPer1000[key]!;
    const growthMB = c[mode].rssGrowthKiB[key]! / KIB_PER_MB;
    return [
      { what: `${who}${node}: vCPU per 1000 rps`, target: `<= ${TARGETS.vcpuPer1000RpsPerAgent}`, value: vcpu.toFixed(3), ok: vcpu <= TARGETS.vcpuPer1000RpsPerAgent },
      { what: `${who}${node}: RSS growth at 1000 rps`, target: `<= ${TARGETS.rssGrowthMB} MB`, value: `${growthMB.toFixed(1)} MB`, ok: growthMB <= TARGETS.rssGrowthMB },
    ];
  };
  return [
    { what: `${who}throughput, % of direct`, target: `>= ${TARGETS.throughputPercentOfDirect}%`, value: `${percent.toFixed(1)}%`, ok: percent >= TARGETS.throughputPercentOfDirect },
    { what: `${who}throughput vs HAProxy`, target: `>= ${t.haproxy.percentOfDirect.toFixed(1)}% (HAProxy)`, value: `${percent.toFixed(1)}%`, ok: percent >= t.haproxy.percentOfDirect },
    { what: `${who}added p90 at 1000 rps`, target: `<= ${TARGETS.addedP90Ms} ms`, value: ms3(p90), ok: p90 <= TARGETS.addedP90Ms },
    { what: `${who}added p90 vs HAProxy`, target: `<= ${ms3(haproxyP90)} (HAProxy)`, value: ms3(p90), ok: p90 <= haproxyP90 },
    ...NODES.flatMap(perProcess),
  ];
}

/**
 * Issue 4's targets for the Ambit (HBONE) path, each next to HAProxy's figure where the target is
 * relative to it; the same targets for the Node floor, to show which of them Node itself allows; then
 * issue 3's for the plain relay.
 */
function checksOf(t: Record<Mode, ThroughputSummary>, l: Record<Mode, LatencySummary>, c: Record<ProxiedMode, ProxyCost>): Check[] {
  return [
    ...hboneChecks('ambit', 'Ambit ', t, l, c),
    ...hboneChecks('node-h2', 'Node floor ', t, l, c),
    { what: 'plain relay (issue 3): throughput, % of direct', target: `>= ${PLAIN_TARGETS.throughputPercentOfDirect}%`, value: `${t['ambit-plain'].percentOfDirect.toFixed(1)}%`, ok: t['ambit-plain'].percentOfDirect >= PLAIN_TARGETS.throughputPercentOfDirect },
    { what: 'plain relay (issue 3): added p90 at 1000 rps', target: `<= ${PLAIN_TARGETS.addedP90Ms} ms`, value: ms3(l['ambit-plain'].addedMs.p90), ok: l['ambit-plain'].addedMs.p90 <= PLAIN_TARGETS.addedP90Ms },
  ];
}

export function summarize(iperfRuns: readonly IperfRun[], latencyRuns: readonly LatencyRun[], samples: ReadonlyMap<string, readonly number[]>): Summary {
  const throughput = throughputOf(iperfRuns);
  const latency = Object.fromEntries(VARIANTS.map((v) => [v, latencyOf(samples, v)])) as Summary['latency'];
  const cost = Object.fromEntries(VARIANTS.map((v) => [v, Object.fromEntries(PROXIED_MODES.map((m) => [m, costOf(latencyRuns, v, m)]))])) as Summary['cost'];
  return { throughput, latency, cost, checks: checksOf(throughput, latency.persistent, cost.persistent) };
}

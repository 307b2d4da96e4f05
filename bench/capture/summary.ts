// What a run showed: each path's throughput against direct (one stream and two), its added latency,
// each proxy process's CPU per 1000 requests and RSS, the agents' GC during bulk, and the targets
// judged on them against HAProxy in the same run.

import { type Check, withRatio } from '../lib/checks.js';
import type { IperfRun, LatencyRun } from './load-runs.js';
import { type Mode, MODES, type NodeName, NODES, PLAIN_TARGETS, type ProcessKey, type ProxiedMode, PROXIED_MODES, processesOf, proxyOf, rateOf, type Streams, STREAMS, TARGETS, type Variant, VARIANTS } from './plan.js';
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

export interface Summary {
  readonly throughput: Record<Streams, Record<Mode, ThroughputSummary>>;
  /** Each agent's GC seconds over the HBONE bulk runs (one and two streams), in % of their wall time. */
  readonly gcPercentOfWall: Record<NodeName, number>;
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

function throughputOf(allRuns: readonly IperfRun[], streams: Streams): Record<Mode, ThroughputSummary> {
  const iperfRuns = allRuns.filter((r) => r.streams === streams);
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

function gcPercentOf(iperfRuns: readonly IperfRun[]): Record<NodeName, number> {
  const runs = iperfRuns.filter((r) => r.mode === 'ambit');
  const wall = runs.reduce((a, r) => a + r.usage.wallSeconds, 0);
  return Object.fromEntries(NODES.map((n) => [n, (100 * runs.reduce((a, r) => a + (r.agentGcSeconds?.[n] ?? 0), 0)) / wall])) as Record<NodeName, number>;
}

/**
 * The targets against HAProxy on one HBONE-shaped path: Ambit's (`threads` says at how many data
 * threads), or the Node floor's, to show what Node itself allows. CPU is judged node by node, each
 * agent against the HAProxy doing the same side's work.
 */
function againstHaproxy(mode: 'ambit' | 'node-h2', who: string, threads: string, s: Omit<Summary, 'checks'>): Check[] {
  const cpu = (variant: Variant, node: NodeName): Check => {
    const mine = s.cost[variant][mode].cpuSecondsPer1000[`${proxyOf(mode)}/${node}`]!;
    const theirs = s.cost[variant].haproxy.cpuSecondsPer1000[`haproxy/${node}`]!;
    const load = variant === 'persistent' ? `1 KB keep-alive at ${rateOf(variant).rate} rps` : `a new connection per request at ${rateOf(variant).rate}/s`;
    return { what: `${who}${node}: CPU s per 1000 requests, ${load}`, target: `<= ${TARGETS.cpuVsHaproxy.toFixed(1)}x HAProxy's ${theirs.toFixed(3)}`, value: withRatio(mine, theirs), ok: mine <= TARGETS.cpuVsHaproxy * theirs };
  };
  const p90 = s.latency.persistent[mode].addedMs.p90;
  const haproxyP90 = s.latency.persistent.haproxy.addedMs.p90;
  const bulk = (streams: Streams): Check => {
    const mine = s.throughput[streams][mode].gbps;
    const theirs = s.throughput[streams].haproxy.gbps;
    const what = streams === 1 ? 'single-stream throughput' : `throughput with ${streams} parallel streams${mode === 'ambit' ? ` (${threads})` : ''}`;
    return { what: `${who}${what}, Gbit/s`, target: `>= ${TARGETS.throughputVsHaproxy.toFixed(1)}x HAProxy's ${theirs.toFixed(2)}`, value: withRatio(mine, theirs, 2), ok: mine >= TARGETS.throughputVsHaproxy * theirs };
  };
  return [
    ...VARIANTS.flatMap((v) => NODES.map((n) => cpu(v, n))),
    { what: `${who}added p90, 1 KB keep-alive at ${rateOf('persistent').rate} rps`, target: `<= HAProxy's ${ms3(haproxyP90)} + ${TARGETS.addedP90OverHaproxyMs} ms`, value: ms3(p90), ok: p90 <= haproxyP90 + TARGETS.addedP90OverHaproxyMs },
    ...STREAMS.map(bulk),
  ];
}

/** Ambit's own targets beyond HAProxy's: memory growth under load and GC during bulk, per agent. */
function agentChecks(s: Omit<Summary, 'checks'>): Check[] {
  return NODES.flatMap((node): Check[] => {
    const growthMB = s.cost.persistent.ambit.rssGrowthKiB[`ambit/${node}`]! / KIB_PER_MB;
    const gc = s.gcPercentOfWall[node];
    return [
      { what: `Ambit ${node}: RSS growth at ${rateOf('persistent').rate} rps`, target: `<= ${TARGETS.rssGrowthMB} MB`, value: `${growthMB.toFixed(1)} MB`, ok: growthMB <= TARGETS.rssGrowthMB },
      { what: `Ambit ${node}: GC time during the HBONE bulk runs`, target: `< ${TARGETS.gcPercentOfWall}% of wall`, value: `${gc.toFixed(2)}%`, ok: gc < TARGETS.gcPercentOfWall },
    ];
  });
}

/** Ambit's targets, the same HAProxy-relative ones for the Node floor, then the plain relay's against direct. */
function checksOf(s: Omit<Summary, 'checks'>, threads: string): Check[] {
  const plain = s.throughput[1]['ambit-plain'].percentOfDirect;
  const plainP90 = s.latency.persistent['ambit-plain'].addedMs.p90;
  return [
    ...againstHaproxy('ambit', 'Ambit ', threads, s),
    ...agentChecks(s),
    ...againstHaproxy('node-h2', 'Node floor ', threads, s),
    { what: 'Ambit plain relay: single-stream throughput, % of direct', target: `>= ${PLAIN_TARGETS.throughputPercentOfDirect}%`, value: `${plain.toFixed(1)}%`, ok: plain >= PLAIN_TARGETS.throughputPercentOfDirect },
    { what: `Ambit plain relay: added p90 at ${rateOf('persistent').rate} rps`, target: `<= ${PLAIN_TARGETS.addedP90Ms} ms`, value: ms3(plainP90), ok: plainP90 <= PLAIN_TARGETS.addedP90Ms },
  ];
}

/** `threads` names the agents' data threads in the checks, e.g. "--data-threads 2" or "default data threads". */
export function summarize(iperfRuns: readonly IperfRun[], latencyRuns: readonly LatencyRun[], samples: ReadonlyMap<string, readonly number[]>, threads: string): Summary {
  const throughput = Object.fromEntries(STREAMS.map((n) => [n, throughputOf(iperfRuns, n)])) as Summary['throughput'];
  const latency = Object.fromEntries(VARIANTS.map((v) => [v, latencyOf(samples, v)])) as Summary['latency'];
  const cost = Object.fromEntries(VARIANTS.map((v) => [v, Object.fromEntries(PROXIED_MODES.map((m) => [m, costOf(latencyRuns, v, m)]))])) as Summary['cost'];
  const measuredOnly = { throughput, gcPercentOfWall: gcPercentOf(iperfRuns), latency, cost };
  return { ...measuredOnly, checks: checksOf(measuredOnly, threads) };
}

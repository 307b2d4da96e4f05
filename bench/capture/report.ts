// The bench's printout: per-round tables for each measurement, then one headline table of the paths
// side by side with the target next to each figure, then each target's verdict (pass or miss).

import { cpus } from 'node:os';
import { formatChecks } from '../lib/checks.js';
import type { IperfRun, LatencyRun } from './load-runs.js';
import { IPERF_SECONDS, MODES, type Mode, type NodeName, NODES, PLAIN_TARGETS, type ProcessKey, type ProxiedMode, PROXIED_MODES, processesOf, proxyOf, rateOf, STREAMS, TARGETS, VARIANTS } from './plan.js';
import type { Summary } from './summary.js';

const out = (line = ''): void => void process.stdout.write(`${line}\n`);
const fmt = (n: number, digits = 2): string => n.toFixed(digits);
const mib = (kib: number): string => fmt(kib / 1024, 1);
const mb = (kib: number): string => fmt((kib * 1024) / 1e6, 1);
const LABEL: Record<Mode, string> = { direct: 'direct', ambit: 'Ambit', 'ambit-plain': 'Ambit plain', 'node-h2': 'Node floor', haproxy: 'HAProxy' };

function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ')).join('\n');
}

function printThroughputRounds(iperfRuns: readonly IperfRun[]): void {
  out(`Throughput (iperf3 -t ${IPERF_SECONDS}, one stream and -P 2), per round. Proxy CPU in % of one core: process / main thread / kernel part`);
  out(`(the proxy of a direct run is the agents, idle: their background work)`);
  const proxyCols = (r: IperfRun): string[] =>
    processesOf(proxyOf(r.mode)).map((k) => {
      const u = r.usage.processes[k]!;
      return `${fmt(u.cpuPercentOfCore, 0)}/${fmt(u.mainThreadPercentOfCore, 0)}/${fmt(u.sysPercentOfCore, 0)}`;
    });
  out(
    table([
      ['path', 'round', 'streams', 'Gbit/s', 'retransmits', ...NODES.map((n) => `proxy ${n} cpu%`), 'agents GC s a/b', `host busy% (${cpus().length} cpus)`],
      ...iperfRuns.map((r) => [
        LABEL[r.mode],
        String(r.round),
        String(r.streams),
        fmt(r.bitsPerSecond / 1e9),
        String(r.retransmits),
        ...proxyCols(r),
        r.agentGcSeconds ? NODES.map((n) => fmt(r.agentGcSeconds![n], 3)).join(' / ') : '-',
        fmt(r.usage.hostBusyPercent, 0),
      ]),
    ]),
  );
  out();
}

function printLatencyRounds(latencyRuns: readonly LatencyRun[]): void {
  for (const variant of VARIANTS) {
    const { rate, seconds } = rateOf(variant);
    const what = variant === 'persistent' ? 'one connection' : 'a new connection per request';
    out(`Latency, 1 KB request/response at ${rate}/s for ${seconds} s over ${what}, in ms; proxy CPU seconds and RSS peak (MiB) during the run`);
    out(
      table([
        ['path', 'round', 'done', 'err+skip+timeout', 'rate/s', 'p50', 'p90', 'p99', 'max', ...NODES.map((n) => `proxy ${n} cpu s / rss`), 'host busy%'],
        ...latencyRuns
          .filter((r) => r.variant === variant)
          .map((r) => [
            LABEL[r.mode],
            String(r.round),
            `${r.completed}/${r.requests}`,
            String(r.errors + r.skipped + r.timeouts),
            fmt(r.achievedRate, 0),
            fmt(r.latencyMs.p50, 3),
            fmt(r.latencyMs.p90, 3),
            fmt(r.latencyMs.p99, 3),
            fmt(r.latencyMs.max, 3),
            ...processesOf(proxyOf(r.mode)).map((k) => `${fmt(r.usage.processes[k]!.cpuSeconds)} / ${mib(r.usage.processes[k]!.rssPeakKiB)}`),
            fmt(r.usage.hostBusyPercent, 0),
          ]),
      ]),
    );
    out();
  }
}

/** The paths side by side, pooled over the rounds, with Ambit's target beside each row. */
function printHeadline(s: Summary, rounds: number): void {
  const p = s.latency.persistent;
  const c = s.cost.persistent;
  const row = (what: string, cell: (m: Mode) => string, target = ''): string[] => [what, ...MODES.map(cell), target];
  const added = (k: 'p50' | 'p90' | 'p99') => (m: Mode): string => (m === 'direct' ? `(${fmt(p.direct.ms[k], 3)})` : fmt(p[m].addedMs[k], 3));
  const proxyOnly = (cell: (m: ProxiedMode) => string) => (m: Mode): string => (m === 'direct' ? '-' : cell(m));
  const process = (m: ProxiedMode, node: NodeName): ProcessKey => `${proxyOf(m)}/${node}`;
  const rows: string[][] = [
    ['', ...MODES.map((m) => LABEL[m]), 'target for Ambit (plain relay: against direct)'],
    ...STREAMS.flatMap((n) => [
      row(`throughput Gbit/s, ${n} stream${n > 1 ? 's' : ''}`, (m) => fmt(s.throughput[n][m].gbps), `>= ${TARGETS.throughputVsHaproxy.toFixed(1)}x HAProxy's`),
      row(`  % of direct`, (m) => fmt(s.throughput[n][m].percentOfDirect, 1), n === 1 ? `plain >= ${PLAIN_TARGETS.throughputPercentOfDirect}%` : ''),
    ]),
    row('added p50 ms (direct: p50)', added('p50')),
    row('added p90 ms (direct: p90)', added('p90'), `<= HAProxy's + ${TARGETS.addedP90OverHaproxyMs} ms; plain <= ${PLAIN_TARGETS.addedP90Ms} ms`),
    row('added p99 ms (direct: p99)', added('p99'), 'report only (scheduler noise)'),
  ];
  for (const node of NODES) {
    rows.push(row(`CPU s/1000 req, ${node}`, proxyOnly((m) => fmt(c[m].cpuSecondsPer1000[process(m, node)]!, 3)), `<= ${TARGETS.cpuVsHaproxy.toFixed(1)}x HAProxy's per agent`));
  }
  for (const node of NODES) rows.push(row(`RSS peak MiB, ${node}`, proxyOnly((m) => mib(c[m].rssPeakKiB[process(m, node)]!))));
  for (const node of NODES) {
    rows.push(row(`RSS growth MB, ${node}`, proxyOnly((m) => `${mb(c[m].rssGrowthKiB[process(m, node)]!)} (kept ${mb(c[m].rssRetainedKiB[process(m, node)]!)})`), `<= ${TARGETS.rssGrowthMB} MB per agent`));
  }
  for (const node of NODES) rows.push(row(`GC % of wall in bulk, ${node}`, (m) => (m === 'ambit' ? fmt(s.gcPercentOfWall[node], 2) : '-'), `< ${TARGETS.gcPercentOfWall}% per agent`));
  const { rate, seconds } = rateOf('persistent');
  out(`Summary: throughput is the median of ${rounds} rounds; latency, CPU and RSS are of the ${rate} rps runs (${rounds} x ${seconds} s, one connection), pooled`);
  out(`(CPU s per 1000 requests at ${rate} rps is vCPU per 1000 rps; RSS growth is the largest peak-minus-before of a run, "kept" is after the last run minus before the first)`);
  out(table(rows));
  out();
}

function printPerConnection(s: Summary): void {
  const p = s.latency['per-connection'];
  const c = s.cost['per-connection'];
  const { rate } = rateOf('per-connection');
  out(`A new connection per request (${rate}/s): added p50/p90/p99 ms, and CPU s per 1000 connections per node (target: Ambit <= ${TARGETS.cpuVsHaproxy.toFixed(1)}x HAProxy's)`);
  out(
    table([
      ['', 'added p50', 'added p90', 'added p99', ...NODES.map((n) => `CPU ${n}`)],
      ...PROXIED_MODES.map((m) => [LABEL[m], fmt(p[m].addedMs.p50, 3), fmt(p[m].addedMs.p90, 3), fmt(p[m].addedMs.p99, 3), ...NODES.map((n) => fmt(c[m].cpuSecondsPer1000[`${proxyOf(m)}/${n}`]!, 3))]),
    ]),
  );
  out();
}

/** Above this background load the latencies mostly measure other people's work: say so. */
const BUSY_WARNING_PERCENT = 20;

export function printReport(iperfRuns: readonly IperfRun[], latencyRuns: readonly LatencyRun[], s: Summary, backgroundBusyPercent: number, rounds: number, threads: string): void {
  out(`\nCross-node data path, ${rounds} interleaved rounds: direct (not enrolled), Ambit (captured, HBONE through both agents, ${threads}), Ambit plain (captured, to a pod outside the mesh: node-a's plain relay), Node floor (a bare node:http2 CONNECT tunnel over mTLS between the nodes), HAProxy (mTLS TCP tunnel between the nodes, its default threads)`);
  out(`Machine busy before the rounds, with nothing of the bench's running: ${fmt(backgroundBusyPercent, 0)}% of ${cpus().length} cpus`);
  if (backgroundBusyPercent > BUSY_WARNING_PERCENT) out(`WARNING: the machine was busy with other work; latencies and throughput below are dominated by it, compare ratios only and rerun when quiet`);
  out();
  printThroughputRounds(iperfRuns);
  printLatencyRounds(latencyRuns);
  printHeadline(s, rounds);
  printPerConnection(s);
  out("Targets: Ambit's HBONE path against HAProxy in this run (and, to show what Node itself allows, the Node floor against the same); the plain relay against direct");
  for (const line of formatChecks(s.checks)) out(line);
}

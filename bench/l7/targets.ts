// The L7 bench's targets, judged on one run: Ambit's HTTP path (routing each request) against the bare
// Node HTTP floor of the same run, with HAProxy in HTTP mode's figure beside each.

import { type Check, withRatio } from '../lib/checks.js';
import { NODES } from '../capture/plan.js';
import type { Added, Percentiles } from '../capture/stats.js';

export type L7Mode = 'direct' | 'ambit-l4' | 'ambit-l7' | 'node-http' | 'haproxy-http';

/** One rate on one path, pooled over the rounds. */
export interface L7Row {
  readonly mode: L7Mode;
  readonly rate: number;
  readonly latencyMs: Percentiles;
  readonly addedMs?: Added;
  /** CPU seconds per 1000 requests, per process (pooled over the rounds), keyed `<proxy>/<node>`. */
  readonly cpuPer1000: Record<string, number>;
  readonly rssPeakMiB: Record<string, number>;
  readonly failures: number;
  readonly achievedRate: number;
  readonly hostBusyPercent: number;
}

export const L7_TARGETS = {
  /** Per agent, CPU per 1000 requests at 1000 rps at most this times the floor's process on the same node. */
  cpuVsFloor: 1.15,
  cpuRate: 1000,
  /** Added p90 at most the floor's plus this, at each of these rates. */
  addedP90OverFloorMs: 0.5,
  latencyRates: [500, 1000],
  /** Sustained wherever the floor sustains it: no failure and at least this share of the rate achieved. */
  sustainedRate: 2000,
  sustainedShare: 0.95,
} as const;

const sustains = (r: L7Row): boolean => r.failures === 0 && r.achievedRate >= L7_TARGETS.sustainedShare * r.rate;
const ms = (n: number): string => `${n.toFixed(3)} ms`;

export function l7Checks(rows: readonly L7Row[]): Check[] {
  const row = (mode: L7Mode, rate: number): L7Row => {
    const r = rows.find((x) => x.mode === mode && x.rate === rate);
    if (!r) throw new Error(`no ${mode} row at ${rate} rps`);
    return r;
  };
  const cpu = NODES.map((node): Check => {
    const at = (mode: L7Mode, proxy: string): number => row(mode, L7_TARGETS.cpuRate).cpuPer1000[`${proxy}/${node}`]!;
    const [ambit, floor, haproxy] = [at('ambit-l7', 'ambit'), at('node-http', 'node-http'), at('haproxy-http', 'haproxy')];
    return {
      what: `Ambit L7 ${node}: CPU s per 1000 requests at ${L7_TARGETS.cpuRate} rps`,
      target: `<= ${L7_TARGETS.cpuVsFloor}x the floor's ${floor.toFixed(3)} (HAProxy HTTP: ${haproxy.toFixed(3)})`,
      value: withRatio(ambit, floor),
      ok: ambit <= L7_TARGETS.cpuVsFloor * floor,
    };
  });
  const latency = L7_TARGETS.latencyRates.map((rate): Check => {
    const [ambit, floor, haproxy] = (['ambit-l7', 'node-http', 'haproxy-http'] as const).map((m) => row(m, rate).addedMs!.p90);
    return {
      what: `Ambit L7: added p90 at ${rate} rps`,
      target: `<= the floor's ${ms(floor!)} + ${L7_TARGETS.addedP90OverFloorMs} ms (HAProxy HTTP: ${ms(haproxy!)})`,
      value: ms(ambit!),
      ok: ambit! <= floor! + L7_TARGETS.addedP90OverFloorMs,
    };
  });
  const rate = L7_TARGETS.sustainedRate;
  const [ambit, floor, haproxy] = (['ambit-l7', 'node-http', 'haproxy-http'] as const).map((m) => row(m, rate));
  const achieved = (r: L7Row): string => `${r.achievedRate.toFixed(0)} rps, ${r.failures} failed`;
  const sustained: Check = {
    what: `Ambit L7: ${rate} rps sustained where the floor sustains it`,
    target: `floor ${achieved(floor!)}${sustains(floor!) ? '' : ': not sustained, no requirement'} (HAProxy HTTP: ${achieved(haproxy!)})`,
    value: achieved(ambit!),
    ok: !sustains(floor!) || sustains(ambit!),
  };
  return [...cpu, ...latency, sustained];
}

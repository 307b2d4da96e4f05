// Percentiles and medians over the bench's samples (nearest-rank, so every reported value was observed).

export interface Percentiles {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

export type Added = Omit<Percentiles, 'max'>;

const percentile = (sorted: readonly number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
const ascending = (values: readonly number[]): number[] => [...values].sort((a, b) => a - b);

export const median = (values: readonly number[]): number => percentile(ascending(values), 0.5);

export function percentilesMs(latenciesUs: readonly number[]): Percentiles {
  const s = ascending(latenciesUs);
  return { p50: percentile(s, 0.5) / 1000, p90: percentile(s, 0.9) / 1000, p99: percentile(s, 0.99) / 1000, max: s[s.length - 1]! / 1000 };
}

/** What a path adds over the baseline at the same percentile. */
export const added = (path: Percentiles, baseline: Percentiles): Added => ({ p50: path.p50 - baseline.p50, p90: path.p90 - baseline.p90, p99: path.p99 - baseline.p99 });

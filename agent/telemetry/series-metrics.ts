// A counter and a histogram whose label sets are resolved once into a handle, then updated per request
// without touching the labels again. prom-client's own metrics check and hash every label on every
// update (Istio's request metrics carry 25 labels, updated four times per request); these register
// in the same prom-client Registry and print the same exposition text, so /metrics and OTLP read them
// as before.

import type { Registry } from 'prom-client';
import { seriesId } from './workload-series.js';

type Labels = Readonly<Record<string, string>>;

/** One sample as a Registry prints it: `sharedLabels` after the sample's own (`le`). */
interface Sample {
  readonly labels: Readonly<Record<string, string | number>>;
  readonly sharedLabels?: Labels;
  readonly value: number;
  readonly metricName?: string;
}

/** What a Registry reads from a metric's get() (and getForPromString()). */
interface MetricSnapshot {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  readonly values: Sample[];
  readonly aggregator: 'sum';
}

/** One label set of a counter: `inc` only adds. */
export interface CounterHandle {
  inc(): void;
}

/** One label set of a histogram. */
export interface HistogramHandle {
  observe(value: number): void;
}

interface CounterSeries extends CounterHandle {
  readonly labels: Labels;
  value: number;
}

interface HistogramSeries extends HistogramHandle {
  readonly labels: Labels;
  /** Per bucket (not cumulative); the last slot is +Inf. */
  readonly counts: number[];
  sum: number;
  count: number;
}

/** The part of prom-client's metric interface a Registry uses. */
abstract class SeriesMetric<S extends { readonly labels: Labels }> {
  readonly aggregator = 'sum' as const;
  protected readonly series = new Map<string, S>();

  constructor(
    readonly name: string,
    readonly help: string,
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  /** Drops one label set (its workload left the mesh). */
  remove(labels: Labels): void {
    this.series.delete(seriesId(labels));
  }

  reset(): void {
    this.series.clear();
  }

  protected handle(labels: Labels, create: () => S): S {
    const key = seriesId(labels);
    let series = this.series.get(key);
    if (!series) {
      series = create();
      this.series.set(key, series);
    }
    return series;
  }
}

export class SeriesCounter extends SeriesMetric<CounterSeries> {
  readonly type = 'counter' as const;

  /** The handle of `labels`: hashed here, once, not on each `inc`. */
  labels(labels: Labels): CounterHandle {
    return this.handle(labels, () => {
      const series: CounterSeries = { labels, value: 0, inc: () => void series.value++ };
      return series;
    });
  }

  get(): Promise<MetricSnapshot> {
    const values = [...this.series.values()].map((s) => ({ labels: { ...s.labels }, value: s.value }));
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator });
  }
}

export class SeriesHistogram extends SeriesMetric<HistogramSeries> {
  readonly type = 'histogram' as const;

  constructor(
    name: string,
    help: string,
    registry: Registry,
    readonly upperBounds: readonly number[],
  ) {
    super(name, help, registry);
  }

  labels(labels: Labels): HistogramHandle {
    return this.handle(labels, () => {
      const bounds = this.upperBounds;
      const series: HistogramSeries = {
        labels,
        counts: new Array<number>(bounds.length + 1).fill(0),
        sum: 0,
        count: 0,
        observe: (value) => {
          let i = 0;
          while (i < bounds.length && value > bounds[i]!) i++;
          series.counts[i]!++;
          series.sum += value;
          series.count++;
        },
      };
      return series;
    });
  }

  /** Buckets (cumulative, `le` first as prom-client prints it), then _sum and _count, per label set. */
  getForPromString(): Promise<MetricSnapshot> {
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values: this.#values(false), aggregator: this.aggregator });
  }

  get(): Promise<MetricSnapshot> {
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values: this.#values(true), aggregator: this.aggregator });
  }

  #values(merged: boolean): Sample[] {
    const out: Sample[] = [];
    const bucket = `${this.name}_bucket`;
    const value = (own: Record<string, string | number>, v: number, metricName: string, labels: Labels): Sample =>
      merged ? { labels: { ...labels, ...own }, value: v, metricName } : { labels: own, sharedLabels: labels, value: v, metricName };
    for (const s of this.series.values()) {
      let cumulative = 0;
      this.upperBounds.forEach((le, i) => {
        cumulative += s.counts[i]!;
        out.push(value({ le }, cumulative, bucket, s.labels));
      });
      out.push(value({ le: '+Inf' }, s.count, bucket, s.labels));
      out.push(value({}, s.sum, `${this.name}_sum`, s.labels));
      out.push(value({}, s.count, `${this.name}_count`, s.labels));
    }
    return out;
  }
}

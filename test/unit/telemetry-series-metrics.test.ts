// The request metrics' counter and histogram: /metrics prints exactly what prom-client's own Counter and
// Histogram print for the same updates (so scrapers and OTLP see no change), a removed label set
// leaves the text, and an update through a handle never reads the labels again (the per-request
// hashing prom-client does is what these exist to avoid).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Counter, Histogram, Registry } from 'prom-client';
import { SeriesCounter, SeriesHistogram } from '../../agent/telemetry/series-metrics.js';

const BUCKETS = [0.5, 1, 5, 10, 25];
const A = { reporter: 'source', response_code: '200', source_workload: 'client' };
const B = { reporter: 'destination', response_code: '503', source_workload: 'client' };
const OBSERVED = [0.2, 0.5, 0.7, 3, 10, 11, 400];

test('the exposition text is prom-client\'s own, label for label and sample for sample, and a removed set leaves it', async () => {
  const ours = new Registry();
  const theirs = new Registry();
  const counter = new SeriesCounter('istio_requests_total', 'The total number of requests', ours);
  const histogram = new SeriesHistogram('istio_request_duration_milliseconds', 'The duration of requests, in milliseconds', ours, BUCKETS);
  const promCounter = new Counter({ name: 'istio_requests_total', help: 'The total number of requests', labelNames: Object.keys(A), registers: [theirs] });
  const promHistogram = new Histogram({ name: 'istio_request_duration_milliseconds', help: 'The duration of requests, in milliseconds', labelNames: Object.keys(A), buckets: BUCKETS, registers: [theirs] });
  for (const labels of [A, B]) {
    const total = counter.labels(labels);
    const duration = histogram.labels(labels);
    for (const v of labels === A ? OBSERVED : OBSERVED.slice(2)) {
      total.inc();
      duration.observe(v);
      promCounter.inc(labels);
      promHistogram.observe(labels, v);
    }
  }
  assert.equal(await ours.metrics(), await theirs.metrics());
  // The JSON OTLP reads: the same samples (prom-client adds an empty exemplar slot, which OTLP ignores).
  assert.deepEqual(withoutExemplars(await ours.getMetricsAsJSON()), withoutExemplars(await theirs.getMetricsAsJSON()));

  counter.remove(B);
  histogram.remove(B);
  promCounter.remove(B);
  promHistogram.remove(B);
  assert.equal(await ours.metrics(), await theirs.metrics());
  assert.doesNotMatch(await ours.metrics(), /reporter="destination"/);
});

test('an update through a handle reads none of its labels: they are resolved once, when the handle is made', async () => {
  const registry = new Registry();
  const counter = new SeriesCounter('c', 'c', registry);
  const histogram = new SeriesHistogram('h', 'h', registry, BUCKETS);
  let reads = 0;
  const labels = new Proxy(A, {
    get: (target, key, receiver) => {
      reads++;
      return Reflect.get(target, key, receiver);
    },
    ownKeys: (target) => {
      reads++;
      return Reflect.ownKeys(target);
    },
  });
  const total = counter.labels(labels);
  const duration = histogram.labels(labels);
  assert.ok(reads > 0, 'making a handle reads the labels');
  reads = 0;
  for (let i = 0; i < 1000; i++) {
    total.inc();
    duration.observe(i % 30);
  }
  assert.equal(reads, 0, 'updates read no label');
  // The same label set (another object, same values) finds the same series.
  counter.labels({ ...A }).inc();
  assert.match(await registry.metrics(), /^c\{reporter="source",response_code="200",source_workload="client"\} 1001$/m);
  assert.match(await registry.metrics(), /^h_count\{reporter="source",response_code="200",source_workload="client"\} 1000$/m);
});

function withoutExemplars(metrics: readonly object[]): unknown {
  return JSON.parse(JSON.stringify(metrics, (key, value: unknown) => (key === 'exemplar' ? undefined : value)));
}

// OTLP metrics push: the encoding of each Prometheus type (checked on a real prom-client registry), the
// flags, and a real `ambit run` process pushing to a test collector on loopback, which also sees a
// failing collector logged once and recovered from.

import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Counter, Gauge, Histogram, Registry, Summary } from 'prom-client';
import { parseRunArgs } from '../../agent/cli/run.js';
import { parseDuration } from '../../agent/cli/usage.js';
import { type OtlpMetric, OtlpMetricsPusher, type PromMetric, encodeMetrics, parseOtlpMetricsFlags } from '../../agent/telemetry/otlp-metrics.js';
import type { Logger } from '../../agent/telemetry/log.js';
import { OtlpMetricsCollector } from '../fixtures/otlp/metrics-collector.js';

const MAIN = fileURLToPath(new URL('../../agent/cli/main.ts', import.meta.url));

const attrs = (point: { attributes: { key: string; value: { stringValue: string } }[] }): Record<string, string> =>
  Object.fromEntries(point.attributes.map((a) => [a.key, a.value.stringValue]));

test('encoding: counters are cumulative monotonic sums, gauges gauges, histograms per-bucket counts, summaries quantiles', async () => {
  const registry = new Registry();
  const registers = [registry];
  const opened = new Counter({ name: 'istio_tcp_connections_opened_total', help: 'opened', labelNames: ['reporter', 'source_workload'], registers });
  opened.inc({ reporter: 'source', source_workload: 'client' }, 3);
  opened.inc({ reporter: 'destination', source_workload: 'client' });
  new Gauge({ name: 'istio_tcp_sockets_open', help: 'open', labelNames: ['reporter'], registers }).set({ reporter: 'source' }, 2);
  new Gauge({ name: 'never_set', help: 'a labelled gauge without samples', labelNames: ['x'], registers });
  const duration = new Histogram({ name: 'istio_request_duration_milliseconds', help: 'duration', labelNames: ['response_code'], buckets: [1, 5, 10], registers });
  for (const v of [0.5, 3, 4, 7, 50]) duration.observe({ response_code: '200' }, v);
  const lag = new Summary({ name: 'lag_seconds', help: 'lag', percentiles: [0.5, 0.99], registers });
  for (const v of [1, 2, 3]) lag.observe(v);

  const request = encodeMetrics((await registry.getMetricsAsJSON()) as unknown as PromMetric[], {
    resource: { 'service.name': 'ambit', 'k8s.node.name': 'n1' },
    version: '0.1.0',
    startTimeMs: 1_700_000_000_000,
    nowMs: 1_700_000_030_500,
  });
  const [resourceMetrics] = request.resourceMetrics;
  assert.deepEqual(attrs(resourceMetrics!.resource), { 'service.name': 'ambit', 'k8s.node.name': 'n1' });
  const scope = resourceMetrics!.scopeMetrics[0]!;
  assert.deepEqual(scope.scope, { name: 'ambit', version: '0.1.0' });
  const byName = new Map<string, OtlpMetric>(scope.metrics.map((m) => [m.name, m]));
  assert.equal(byName.has('never_set'), false, 'a metric without data points is left out');

  const counter = byName.get('istio_tcp_connections_opened_total')!;
  assert.equal(counter.description, 'opened');
  assert.equal(counter.sum?.aggregationTemporality, 2, 'CUMULATIVE');
  assert.equal(counter.sum?.isMonotonic, true);
  const points = counter.sum!.dataPoints.map((p): Record<string, string | number> => ({ ...attrs(p), value: p.asDouble })).sort((a, b) => String(a['reporter']).localeCompare(String(b['reporter'])));
  assert.deepEqual(points, [
    { reporter: 'destination', source_workload: 'client', value: 1 },
    { reporter: 'source', source_workload: 'client', value: 3 },
  ]);
  // OTLP/JSON: 64-bit integers as decimal strings, nanoseconds.
  assert.equal(counter.sum!.dataPoints[0]!.startTimeUnixNano, '1700000000000000000');
  assert.equal(counter.sum!.dataPoints[0]!.timeUnixNano, '1700000030500000000');

  assert.deepEqual(byName.get('istio_tcp_sockets_open')!.gauge!.dataPoints.map((p) => [attrs(p), p.asDouble]), [[{ reporter: 'source' }, 2]]);

  const histogram = byName.get('istio_request_duration_milliseconds')!.histogram!;
  assert.equal(histogram.aggregationTemporality, 2);
  assert.equal(histogram.dataPoints.length, 1);
  const h = histogram.dataPoints[0]!;
  assert.deepEqual(attrs(h), { response_code: '200' }, 'le is a bucket bound, not an attribute');
  assert.deepEqual(h.explicitBounds, [1, 5, 10]);
  // 0.5 | 3, 4 | 7 | 50: one count per bucket, one more bucket than bounds, summing to count.
  assert.deepEqual(h.bucketCounts, ['1', '2', '1', '1']);
  assert.equal(h.count, '5');
  assert.equal(h.sum, 64.5);

  const summary = byName.get('lag_seconds')!.summary!.dataPoints[0]!;
  assert.equal(summary.count, '3');
  assert.equal(summary.sum, 6);
  assert.deepEqual(summary.quantileValues.map((q) => q.quantile), [0.5, 0.99]);
  assert.equal(summary.quantileValues[0]!.value, 2);
});

test('flags: a base URL gets /v1/metrics, the interval needs an endpoint, only http(s), env fallback; ambit run takes them', () => {
  const ok = (values: Record<string, string>, env: NodeJS.ProcessEnv = {}) => {
    const r = parseOtlpMetricsFlags(values, parseDuration, env);
    assert.ok(r.ok, r.ok ? '' : r.message);
    return r.otlpMetrics;
  };
  assert.equal(ok({}), undefined);
  assert.deepEqual(ok({ 'otlp-metrics-endpoint': 'http://collector:4318' }), { endpoint: 'http://collector:4318/v1/metrics', intervalMs: 30_000 });
  assert.deepEqual(ok({ 'otlp-metrics-endpoint': 'https://c.example/otlp/v1/metrics', 'otlp-metrics-interval': '10s' }), { endpoint: 'https://c.example/otlp/v1/metrics', intervalMs: 10_000 });
  assert.equal(ok({}, { OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'http://env:4318/v1/metrics' })?.endpoint, 'http://env:4318/v1/metrics');
  const refused = (values: Record<string, string>, message: RegExp) => {
    const r = parseOtlpMetricsFlags(values, parseDuration, {});
    assert.ok(!r.ok && message.test(r.message), r.ok ? 'accepted' : r.message);
  };
  refused({ 'otlp-metrics-interval': '10s' }, /needs a collector/);
  refused({ 'otlp-metrics-endpoint': 'grpc://c:4317' }, /expected an http:\/\/ or https:\/\/ URL \(OTLP\/HTTP\), got grpc:/);
  refused({ 'otlp-metrics-endpoint': 'not a url' }, /expected an http:\/\/ or https:\/\/ URL/);
  refused({ 'otlp-metrics-endpoint': 'http://c', 'otlp-metrics-interval': '100ms' }, /at least 1s/);
  const { config } = parseRunArgs(['--node', 'n1', '--capture', 'none', '--config', 'mesh/', '--otlp-metrics-endpoint', 'http://c:4318', '--otlp-metrics-interval', '15s'], {});
  assert.deepEqual(config.otlpMetrics, { endpoint: 'http://c:4318/v1/metrics', intervalMs: 15_000 });
  assert.equal(parseRunArgs(['--node', 'n1', '--capture', 'none', '--config', 'mesh/'], {}).config.otlpMetrics, undefined);
});

test('a collector that refuses is warned about once, and the next push after it recovers carries the counts', async () => {
  const collector = await OtlpMetricsCollector.start();
  const registry = new Registry();
  const counter = new Counter({ name: 'pushed_total', help: 'h', registers: [registry] });
  const lines: string[] = [];
  // The pusher logs with info, warn, debug and error only.
  const record = (level: string) => (_fields: object, message: string) => void lines.push(`${level} ${message}`);
  const log = { info: record('info'), warn: record('warn'), debug: record('debug'), error: record('error') } as unknown as Logger;
  const pusher = new OtlpMetricsPusher(registry, { endpoint: collector.url, intervalMs: 60_000 }, { resource: { 'service.name': 'ambit' }, version: '0.1.0' }, log);
  try {
    collector.failWith = 503;
    counter.inc(2);
    await pusher.push();
    await pusher.push();
    assert.equal(collector.refused, 2);
    assert.equal(lines.filter((l) => l.startsWith('warn ')).length, 1, lines.join('\n'));
    assert.match(lines.find((l) => l.startsWith('warn '))!, /OTLP metrics push to http:\/\/127\.0\.0\.1:\d+\/v1\/metrics failed: HTTP 503: \{"message":"overloaded"\}; trying again in 60 s/);
    collector.failWith = undefined;
    counter.inc(3);
    await pusher.push();
    assert.ok(lines.some((l) => /^info OTLP metrics push .* works again/.test(l)));
    const metric = collector.requests.at(-1)!.body.resourceMetrics[0]!.scopeMetrics[0]!.metrics.find((m) => m.name === 'pushed_total');
    assert.equal(metric?.sum?.dataPoints[0]?.asDouble, 5, 'cumulative: nothing lost while the collector refused');
    assert.equal(collector.requests.at(-1)!.contentType, 'application/json');
  } finally {
    await pusher.close();
    await collector.close();
  }
});

test('ambit run --otlp-metrics-endpoint: a real agent pushes its registry, and once more when it stops', async () => {
  const collector = await OtlpMetricsCollector.start();
  const dir = await mkdtemp(join(tmpdir(), 'ambit-otlp-metrics-'));
  const yaml = join(dir, 'mesh.yaml');
  await writeFile(yaml, 'apiVersion: v1\nkind: Node\nmetadata: { name: n1 }\nstatus: { addresses: [{ type: InternalIP, address: 172.31.79.1 }] }\n');
  const agent: ChildProcessWithoutNullStreams = spawn(process.execPath, [
    '--import', 'tsx', MAIN, 'run', '--config', yaml, '--node', 'n1', '--capture', 'none', '--state-dir', join(dir, 'state'),
    '--readiness-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0', '--metrics-address', '127.0.0.1:0',
    '--otlp-metrics-endpoint', collector.url, '--otlp-metrics-interval', '1s',
  ]);
  let logs = '';
  agent.stdout.on('data', (d: Buffer) => (logs += d.toString()));
  agent.stderr.on('data', (d: Buffer) => (logs += d.toString()));
  const until = async (what: string, check: () => boolean, ms: number): Promise<void> => {
    const deadline = Date.now() + ms;
    while (!check()) {
      if (Date.now() > deadline || agent.exitCode !== null) assert.fail(`waiting for ${what}; agent log:\n${logs}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  try {
    // Generous: tsx compiles the whole agent on start, which takes seconds on a busy machine.
    await until('two pushes', () => collector.requests.length >= 2, 120_000);
    const { body } = collector.requests.at(-1)!;
    const pushed = body.resourceMetrics[0]!;
    assert.deepEqual(attrs(pushed.resource), { 'service.name': 'ambit', 'service.version': '0.1.0', 'k8s.node.name': 'n1' });
    const names = new Set(pushed.scopeMetrics[0]!.metrics.map((m) => m.name));
    for (const name of ['istio_build', 'process_cpu_user_seconds_total', 'nodejs_eventloop_lag_seconds']) assert.ok(names.has(name), `${name} pushed; got ${[...names].join(', ')}`);
    const build = pushed.scopeMetrics[0]!.metrics.find((m) => m.name === 'istio_build')!;
    assert.deepEqual(attrs(build.gauge!.dataPoints[0]!), { component: 'ztunnel', tag: 'ambit-0.1.0' });
    assert.match(logs, /"msg":"pushing metrics over OTLP\/HTTP to http:\/\/127\.0\.0\.1:\d+\/v1\/metrics every 1 s"/);
    const before = collector.requests.length;
    agent.kill('SIGTERM');
    await new Promise((r) => agent.once('exit', r));
    assert.ok(collector.requests.length > before, 'a last push on the way out');
  } finally {
    if (agent.exitCode === null) agent.kill('SIGKILL');
    await collector.close();
    await rm(dir, { recursive: true, force: true });
  }
});

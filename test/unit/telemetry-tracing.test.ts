// Traces: W3C traceparent and B3 parsing and propagation, the --otlp-endpoint / --trace-sampling flags,
// and spans exported over real OTLP/HTTP to a test collector: the source agent's CLIENT span is the
// parent of the destination agent's SERVER span, under the application's own span.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { parseArgs } from 'node:util';
import { requestHeaders } from '../../agent/l7/request.js';
import { RequestTracer, TRACING_FLAGS, parseTracingFlags } from '../../agent/telemetry/tracing.js';
import {
  TRACE_HEADER_NAMES,
  extractTrace,
  formatTraceparent,
  parseB3Multi,
  parseB3Single,
  parseTraceparent,
  traceHeaders,
} from '../../agent/telemetry/trace-context.js';
import { OtlpCollector } from '../fixtures/otlp/collector.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const APP_SPAN = '00f067aa0ba902b7';

test('traceparent: W3C syntax, refusals, and formatting', () => {
  assert.deepEqual(parseTraceparent(`00-${TRACE}-${APP_SPAN}-01`), { traceId: TRACE, spanId: APP_SPAN, sampled: true });
  assert.deepEqual(parseTraceparent(`00-${TRACE}-${APP_SPAN}-00`)?.sampled, false);
  assert.deepEqual(parseTraceparent(`cc-${TRACE}-${APP_SPAN}-09-future`)?.sampled, true, 'a later version may add fields; flag bit 0 is sampled');
  for (const bad of [
    `00-${TRACE.toUpperCase()}-${APP_SPAN}-01`,
    `00-${'0'.repeat(32)}-${APP_SPAN}-01`,
    `00-${TRACE}-${'0'.repeat(16)}-01`,
    `ff-${TRACE}-${APP_SPAN}-01`,
    `00-${TRACE}-${APP_SPAN}-01-extra`,
    `00-${TRACE.slice(1)}-${APP_SPAN}-01`,
    'garbage',
  ]) {
    assert.equal(parseTraceparent(bad), undefined, bad);
  }
  assert.equal(formatTraceparent({ traceId: TRACE, spanId: APP_SPAN, sampled: true }), `00-${TRACE}-${APP_SPAN}-01`);
});

test('B3: single and multi headers, 64-bit trace ids padded, debug and deferred sampling', () => {
  assert.deepEqual(parseB3Single(`${TRACE}-${APP_SPAN}-1-05e3ac9a4f6e3b90`), { traceId: TRACE, spanId: APP_SPAN, sampled: true });
  assert.deepEqual(parseB3Single(`a3ce929d0e0e4736-${APP_SPAN}-d`), { traceId: `0000000000000000a3ce929d0e0e4736`, spanId: APP_SPAN, sampled: true });
  assert.equal(parseB3Single(`${TRACE}-${APP_SPAN}`)?.sampled, false);
  assert.equal(parseB3Single('1'), undefined);
  const multi = requestHeaders(['X-B3-TraceId', TRACE, 'X-B3-SpanId', APP_SPAN, 'X-B3-Flags', '1']);
  assert.deepEqual(parseB3Multi(multi), { traceId: TRACE, spanId: APP_SPAN, sampled: true });
  assert.equal(parseB3Multi(requestHeaders(['x-b3-traceid', TRACE])), undefined);
});

test('extraction prefers traceparent, keeps tracestate, and ignores a repeated traceparent', () => {
  const both = requestHeaders(['traceparent', `00-${TRACE}-${APP_SPAN}-01`, 'tracestate', 'a=1', 'tracestate', 'b=2', 'b3', `${'1'.repeat(32)}-${'2'.repeat(16)}-1`]);
  assert.deepEqual(extractTrace(both), { context: { traceId: TRACE, spanId: APP_SPAN, sampled: true, traceState: 'a=1,b=2' }, format: 'w3c' });
  const twice = requestHeaders(['traceparent', `00-${TRACE}-${APP_SPAN}-01`, 'traceparent', `00-${TRACE}-${APP_SPAN}-01`]);
  assert.equal(extractTrace(twice), undefined);
  assert.equal(extractTrace(requestHeaders(['b3', `${TRACE}-${APP_SPAN}-0`]))?.format, 'b3');
  assert.deepEqual(traceHeaders({ traceId: TRACE, spanId: '1111111111111111', sampled: false }, 'b3multi', APP_SPAN), {
    traceparent: `00-${TRACE}-1111111111111111-00`,
    'x-b3-traceid': TRACE,
    'x-b3-spanid': '1111111111111111',
    'x-b3-sampled': '0',
    'x-b3-parentspanid': APP_SPAN,
  });
  assert.ok(TRACE_HEADER_NAMES.includes('traceparent') && TRACE_HEADER_NAMES.includes('x-b3-sampled'));
});

test('--otlp-endpoint and --trace-sampling, as ambit run would parse them', () => {
  const parse = (args: string[], env: NodeJS.ProcessEnv = {}) => parseTracingFlags(parseArgs({ args, options: TRACING_FLAGS }).values, env);
  assert.deepEqual(parse([]), { ok: true });
  assert.deepEqual(parse(['--otlp-endpoint', 'http://collector:4318']), { ok: true, tracing: { endpoint: 'http://collector:4318/v1/traces', samplingPercent: 1 } });
  assert.deepEqual(parse(['--otlp-endpoint', 'https://c.example/otlp/v1/traces', '--trace-sampling', '12.5']), {
    ok: true,
    tracing: { endpoint: 'https://c.example/otlp/v1/traces', samplingPercent: 12.5 },
  });
  assert.deepEqual(parse([], { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel:4318' }), { ok: true, tracing: { endpoint: 'http://otel:4318/v1/traces', samplingPercent: 1 } });
  assert.deepEqual(parse(['--trace-sampling', '101', '--otlp-endpoint', 'http://c:4318']), {
    ok: false,
    message: '--trace-sampling "101": expected a percentage from 0 to 100, such as 1 or 12.5',
  });
  assert.deepEqual(parse(['--trace-sampling', '5']), { ok: false, message: '--trace-sampling needs a collector: pass --otlp-endpoint <url> too' });
  assert.equal(parse(['--otlp-endpoint', 'grpc://c:4317']).ok, false);
  assert.equal(parse(['--otlp-endpoint', 'not a url']).ok, false);
});

let collector: OtlpCollector;
before(async () => {
  collector = await OtlpCollector.start();
});
after(async () => {
  await collector.close();
});

const PRODUCTPAGE = { canonicalService: 'productpage', namespace: 'bookinfo', canonicalRevision: 'v1' };
const REVIEWS = { canonicalService: 'reviews', namespace: 'bookinfo', canonicalRevision: 'v2' };

test('a request crossing two agents: app span → CLIENT span (source agent) → SERVER span (destination agent), exported over OTLP', async () => {
  const sourceAgent = await RequestTracer.create({ endpoint: collector.url, samplingPercent: 100 }, 'node-a');
  const destinationAgent = await RequestTracer.create({ endpoint: collector.url, samplingPercent: 100 }, 'node-b');
  const fromApp = requestHeaders(['traceparent', `00-${TRACE}-${APP_SPAN}-01`, 'tracestate', 'vendor=x', 'user-agent', 'curl/7.88', 'x-request-id', 'req-7']);
  const base = { method: 'GET', path: '/reviews/0?x=1', authority: 'reviews:9080', httpVersion: 'HTTP/1.1', requestId: 'req-7' };

  const client = sourceAgent.startSpan('client', { ...base, headers: fromApp, workload: PRODUCTPAGE, upstreamCluster: 'reviews.bookinfo.svc.cluster.local', peerAddress: '10.1.0.1:40000' });
  assert.equal(client.traceId, TRACE);
  assert.equal(client.sampled, true);
  const clientSpanId = parseTraceparent(client.upstreamHeaders['traceparent']!)!.spanId;
  assert.notEqual(clientSpanId, APP_SPAN);
  assert.equal(client.upstreamHeaders['tracestate'], 'vendor=x');

  // What the destination agent receives: the request's headers with the trace headers replaced.
  const onTheWire = requestHeaders({ 'user-agent': 'curl/7.88', ...client.upstreamHeaders });
  const server = destinationAgent.startSpan('server', { ...base, headers: onTheWire, workload: REVIEWS, peerAddress: '10.1.0.1:40000' });
  const serverSpanId = parseTraceparent(server.upstreamHeaders['traceparent']!)!.spanId;
  server.end({ statusCode: 200, upstreamHost: '10.1.0.2:9080', requestBytes: 0, responseBytes: 358 });
  client.end({ statusCode: 200, upstreamHost: '10.1.0.2:15008', responseFlags: '-', requestBytes: 0, responseBytes: 358 });
  client.end({ statusCode: 500 }); // ignored

  await Promise.all([sourceAgent.flush(), destinationAgent.flush()]);
  await collector.waitForSpans(2);
  const ours = collector.spans.filter((s) => s.traceId === TRACE);
  assert.equal(ours.length, 2);
  const c = ours.find((s) => s.kind === 3)!;
  const s = ours.find((s) => s.kind === 2)!;
  assert.equal(c.spanId, clientSpanId);
  assert.equal(c.parentSpanId, APP_SPAN, 'the client span continues the application\'s trace');
  assert.equal(s.spanId, serverSpanId);
  assert.equal(s.parentSpanId, c.spanId, 'the destination agent\'s span is the child of the source agent\'s');
  assert.equal(c.name, 'reviews:9080/*');
  assert.equal(c.resource['service.name'], 'productpage.bookinfo');
  assert.equal(s.resource['service.name'], 'reviews.bookinfo');
  assert.equal(c.resource['host.name'], 'node-a');
  for (const [k, v] of Object.entries({
    component: 'proxy',
    node_id: 'node-a',
    'http.method': 'GET',
    'http.url': 'http://reviews:9080/reviews/0?x=1',
    'http.protocol': 'HTTP/1.1',
    'http.status_code': 200,
    user_agent: 'curl/7.88',
    'guid:x-request-id': 'req-7',
    upstream_cluster: 'reviews.bookinfo.svc.cluster.local',
    upstream_host: '10.1.0.2:15008',
    response_flags: '-',
    response_size: 358,
    'istio.canonical_service': 'productpage',
    'istio.namespace': 'bookinfo',
    'istio.canonical_revision': 'v1',
  })) {
    assert.deepEqual(c.attributes[k], v, k);
  }
  assert.equal(s.attributes['istio.canonical_service'], 'reviews');
  assert.equal(s.attributes['upstream_host'], '10.1.0.2:9080');
  assert.ok(collector.contentTypes.every((t) => t.startsWith('application/json')));
  await Promise.all([sourceAgent.shutdown(), destinationAgent.shutdown()]);
});

test('sampling: a new trace follows the ratio, an unsampled parent is never exported, a 5xx span is an error', async () => {
  const seen = collector.spans.length;
  const never = await RequestTracer.create({ endpoint: collector.url, samplingPercent: 0 }, 'node-a');
  const fresh = never.startSpan('client', { headers: requestHeaders([]), method: 'GET', path: '/', authority: 'a:80', httpVersion: 'HTTP/2' });
  assert.equal(fresh.sampled, false);
  assert.match(fresh.upstreamHeaders['traceparent']!, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/, 'an unsampled trace still propagates');
  fresh.end({ statusCode: 200 });

  const always = await RequestTracer.create({ endpoint: collector.url, samplingPercent: 100 }, 'node-b');
  const unsampledParent = always.startSpan('server', { headers: requestHeaders(['traceparent', `00-${TRACE}-${APP_SPAN}-00`]), method: 'GET', path: '/', authority: 'a:80', httpVersion: 'HTTP/1.1' });
  assert.equal(unsampledParent.sampled, false, 'parent-based: the caller said no');
  unsampledParent.end({ statusCode: 200 });
  const root = always.startSpan('server', { headers: requestHeaders(['b3', `${'ab'.repeat(16)}-${'cd'.repeat(8)}-1`]), method: 'POST', path: '/x', authority: 'a:80', httpVersion: 'HTTP/2' });
  assert.equal(root.upstreamHeaders['b3']?.split('-')[3], 'cd'.repeat(8), 'answered in b3 too, with the parent span');
  root.end({ statusCode: 503, responseFlags: 'UO' });
  await Promise.all([never.flush(), always.flush()]);
  await collector.waitForSpans(seen + 1);
  const added = collector.spans.slice(seen);
  assert.equal(added.length, 1);
  assert.equal(added[0]!.traceId, 'ab'.repeat(16));
  assert.equal(added[0]!.parentSpanId, 'cd'.repeat(8));
  assert.equal(added[0]!.statusCode, 2);
  assert.equal(added[0]!.resource['service.name'], 'ambit', 'no workload given');
  await Promise.all([never.shutdown(), always.shutdown()]);
});

test('an unsampled span builds no tags: its context goes upstream, its request is not read for tags', async () => {
  /** Headers that note which names a span reads: tags read user-agent, the context only trace headers. */
  const watched = (): { headers: ReturnType<typeof requestHeaders>; read: string[] } => {
    const read: string[] = [];
    const inner = requestHeaders(['user-agent', 'curl/8.5']);
    const headers = new Proxy(inner, {
      get: (target, key) => (key === 'get' ? (name: string) => (read.push(name), target.get(name)) : Reflect.get(target, key, target)),
    });
    return { headers, read };
  };
  const never = await RequestTracer.create({ endpoint: collector.url, samplingPercent: 0 }, 'node-a');
  const always = await RequestTracer.create({ endpoint: collector.url, samplingPercent: 100 }, 'node-a');
  const unsampled = watched();
  const span = never.startSpan('client', { headers: unsampled.headers, method: 'GET', path: '/', authority: 'a:80', httpVersion: 'HTTP/1.1' });
  span.end({ statusCode: 200 });
  assert.equal(span.sampled, false);
  assert.match(span.upstreamHeaders['traceparent']!, /-00$/, 'its context still goes upstream');
  assert.deepEqual(unsampled.read.filter((name) => name === 'user-agent'), [], 'no tag was built');
  const sampled = watched();
  always.startSpan('client', { headers: sampled.headers, method: 'GET', path: '/', authority: 'a:80', httpVersion: 'HTTP/1.1' }).end({ statusCode: 200 });
  assert.ok(sampled.read.includes('user-agent'), 'a sampled span is tagged with the user agent');
  await Promise.all([never.shutdown(), always.shutdown()]);
});

test('tracing off: no spans, the incoming context passes through untouched', () => {
  const off = RequestTracer.disabled();
  assert.equal(off.enabled, false);
  const span = off.startSpan('client', { headers: requestHeaders(['traceparent', `00-${TRACE}-${APP_SPAN}-01`]), method: 'GET', path: '/', authority: 'a', httpVersion: 'HTTP/1.1' });
  assert.equal(span.traceId, TRACE);
  assert.deepEqual(span.upstreamHeaders, {});
  span.end({ statusCode: 200 });
});

// The access log's lines, built by their fixed-shape serializers (agent/telemetry/access-log.ts), are
// the lines pino wrote for the same records: for many random records (strings with quotes, backslashes,
// control characters, non-ASCII, lone surrogates; absent fields; numbers JSON cannot hold), each line
// from RequestTelemetry and ConnectionTelemetry equals the one pino makes from the record as an object
// (the shape these files logged before), and a level the logger drops writes nothing.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import type { MeshService, SpiffeId, Workload } from '../../agent/state/model.js';
import { type ConnectionDescription, type ConnectionOutcome, ConnectionTelemetry, type ResponseFlag } from '../../agent/telemetry/connections.js';
import { MeshMetrics } from '../../agent/telemetry/metrics.js';
import { type HttpResponseFlag, type RequestDescription, type RequestOutcome, RequestTelemetry, formatFlags } from '../../agent/telemetry/requests.js';

/** A fixed clock, so that a line's time field is the same for both loggers. */
const TIME = ',"time":"2026-12-07T10:00:00.000Z"';

/** A pino logger as the agent builds the access log (base bindings, then a `target` child), writing into `lines`. */
function accessLogger(level: pino.LevelWithSilent, lines: string[]): pino.Logger {
  const root = pino({ level, base: { pid: 4242, node: 'node-a' }, timestamp: () => TIME }, { write: (line: string) => void lines.push(line) });
  return root.child({ target: 'access' });
}

/** mulberry32: a small seeded generator, so that a failure can be run again. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PIECES = ['a', 'Z', '0', ' ', '/', ':', '"', '\\', '\n', '\t', '\u0000', '\u001f', '\u007f', 'é', '€', '\u2028', '😀', '\\"', '{', '}'];
/** Lone surrogates, in one record of four: a record with one is compared parsed (assertSameLine), the others byte for byte. */
const LONE_SURROGATES = ['\ud800', '\udc00'];

function generator(seed: number) {
  const r = random(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(r() * items.length)]!;
  const pieces = seed % 4 === 0 ? [...PIECES, ...LONE_SURROGATES] : PIECES;
  // Lengths up to 120 cross pino's own threshold (JSON.stringify for strings over 100 characters).
  const string = (): string => Array.from({ length: Math.floor(r() * (r() < 0.2 ? 120 : 12)) }, () => pick(pieces)).join('');
  const maybe = <T>(make: () => T): T | undefined => (r() < 0.4 ? undefined : make());
  const number = (): number => pick([0, 1, 200, 503, -1, 1.5, 2 ** 40, Number.NaN, Number.POSITIVE_INFINITY, Math.floor(r() * 1e6)]);
  // Byte counts feed counters as well, which take no negative or NaN values.
  const count = (): number => pick([0, 1, 4500, 2 ** 40, Math.floor(r() * 1e9)]);
  const workload = (): Workload =>
    ({ key: `${string()}/${string()}`, name: string(), namespace: string(), uid: string(), workloadName: string(), labels: {}, ips: [] }) as unknown as Workload;
  const connection = (): ConnectionDescription => ({
    direction: pick(['inbound', 'outbound'] as const),
    src: { addr: string(), ...opt('workload', maybe(workload)), ...opt('identity', maybe(string)) },
    dst: {
      addr: string(),
      ...opt('hboneAddr', maybe(string)),
      ...opt('workload', maybe(workload)),
      ...opt('service', maybe(() => ({ hostname: string(), name: string(), namespace: string() }) as unknown as MeshService)),
      ...opt('identity', maybe(() => string() as SpiffeId)),
    },
    securityPolicy: pick(['mutual_tls', 'unknown'] as const),
  });
  return { r, pick, string, maybe, number, count, connection };
}

/** `{ [key]: value }` when the value is there: a random record's absent fields are absent, not undefined. */
function opt<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

/**
 * Byte-identical, except where pino itself does not escape: a lone surrogate in a string of at most
 * 100 characters, which pino writes raw (and UTF-8 then turns into U+FFFD, losing it) while JSON.stringify
 * writes it as \udXXX. Such a line must say the same thing (equal once parsed), not the same bytes.
 */
function assertSameLine(actual: string | undefined, expected: string | undefined, seed: number): void {
  assert.ok(actual !== undefined && expected !== undefined, `seed ${seed}: one of the two lines is missing`);
  const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
  if (loneSurrogate.test(expected)) assert.deepEqual(JSON.parse(actual), JSON.parse(expected), `seed ${seed}`);
  else assert.equal(actual, expected, `seed ${seed}`);
}

const REQUEST_FLAGS: readonly HttpResponseFlag[] = ['UO', 'UF', 'DI', 'FI', 'RL', 'NR', 'UT', 'DC'];

test('a request\'s access-log line is the line pino wrote for the same record, for 2000 random records', () => {
  for (let seed = 1; seed <= 2000; seed++) {
    const g = generator(seed);
    const ours: string[] = [];
    const pinos: string[] = [];
    const telemetry = new RequestTelemetry(new MeshMetrics('test'), accessLogger('info', ours));
    const c = g.connection();
    const d: RequestDescription = {
      connection: c,
      protocol: g.pick(['http', 'grpc'] as const),
      method: g.string(),
      path: g.string(),
      authority: g.string(),
      httpVersion: g.string(),
      ...opt('requestId', g.maybe(g.string)),
      ...opt('traceId', g.maybe(g.string)),
      ...opt('userAgent', g.maybe(g.string)),
    };
    const o: RequestOutcome = {
      responseCode: g.number(),
      requestBytes: g.number(),
      responseBytes: g.number(),
      ...opt('grpcStatus', g.maybe(g.number)),
      ...opt('flags', g.maybe(() => Array.from({ length: Math.floor(g.r() * 3) }, () => g.pick(REQUEST_FLAGS)))),
      ...opt('upstreamHost', g.maybe(g.string)),
      ...opt('routeName', g.maybe(g.string)),
      ...opt('responseCodeDetails', g.maybe(g.string)),
    };
    const durationMs = g.pick([0, 0.4, 2.5, 1234.5, -3, Number.NaN]);
    telemetry.record(d, o, durationMs);
    // The record as these fields were logged through pino: a child per flow, then the request's own fields.
    const flow = accessLogger('info', pinos).child({
      'src.addr': c.src.addr,
      'src.workload': c.src.workload?.name,
      'src.namespace': c.src.workload?.namespace,
      'src.identity': c.src.identity,
      'dst.addr': c.dst.addr,
      'dst.service': c.dst.service?.hostname,
      'dst.workload': c.dst.workload?.name,
      'dst.namespace': c.dst.workload?.namespace,
      'dst.identity': c.dst.identity,
      direction: c.direction,
    });
    const fields = {
      method: d.method,
      path: d.path,
      protocol: d.httpVersion,
      authority: d.authority,
      response_code: o.responseCode,
      grpc_status: d.protocol === 'grpc' ? o.grpcStatus : undefined,
      response_flags: formatFlags(o.flags),
      response_code_details: o.responseCodeDetails,
      duration: `${Math.round(durationMs)}ms`,
      bytes_received: o.requestBytes,
      bytes_sent: o.responseBytes,
      upstream_host: o.upstreamHost,
      route_name: o.routeName,
      x_request_id: d.requestId,
      trace_id: d.traceId,
      user_agent: d.userAgent,
    };
    if (o.flags && o.flags.length > 0) flow.warn(fields, 'request complete');
    else flow.info(fields, 'request complete');
    assert.equal(ours.length, 1, `seed ${seed}: one line per record`);
    assertSameLine(ours[0], pinos[0], seed);
  }
});

test('a connection\'s access-log lines (opened, complete, idle, failed, refused) are the lines pino wrote, for 1000 random connections', () => {
  for (let seed = 1; seed <= 1000; seed++) {
    const g = generator(seed);
    const ours: string[] = [];
    const pinos: string[] = [];
    // debug, so that the 'connection opened' line is written too.
    const telemetry = new ConnectionTelemetry(new MeshMetrics('test'), accessLogger('debug', ours));
    const reference = accessLogger('debug', pinos);
    const c = g.connection();
    const base = {
      'src.addr': c.src.addr,
      'src.workload': c.src.workload?.name,
      'src.namespace': c.src.workload?.namespace,
      'src.identity': c.src.identity,
      'dst.addr': c.dst.addr,
      'dst.hbone_addr': c.dst.hboneAddr,
      'dst.service': c.dst.service?.hostname,
      'dst.workload': c.dst.workload?.name,
      'dst.namespace': c.dst.workload?.namespace,
      'dst.identity': c.dst.identity,
      direction: c.direction,
    };
    const kind = g.pick(['closed', 'error', 'idle', 'failed'] as const);
    if (kind === 'failed') {
      const flag = g.pick(['DENY', 'CONNECT', 'NO_ROUTE', 'TLS_FAILURE'] satisfies ResponseFlag[]);
      const error = g.string();
      telemetry.failed(c, flag, error);
      reference.warn({ ...base, error, response_flags: flag }, 'connection failed');
    } else {
      const message = g.string();
      const side = g.string();
      const outcome: ConnectionOutcome = {
        bytesSent: g.count(),
        bytesReceived: g.count(),
        ...(kind === 'error' ? { error: { side, message } } : kind === 'idle' ? { error: { side, message, reason: 'idle-timeout' as const } } : {}),
      };
      const handle = telemetry.opened(c);
      reference.debug(base, 'connection opened');
      handle.closed(outcome);
      // The duration is the one field the two cannot share (a clock read inside closed): taken from our line.
      const duration = (JSON.parse(ours[1] ?? '{}') as { duration?: string }).duration;
      const fields = { ...base, bytes_sent: outcome.bytesSent, bytes_recv: outcome.bytesReceived, duration };
      if (kind === 'idle') reference.info({ ...fields, error: message, reason: 'idle_timeout' }, 'connection complete');
      else if (kind === 'error') reference.error({ ...fields, error: `${side}: ${message}` }, 'connection complete');
      else reference.info(fields, 'connection complete');
    }
    assert.equal(ours.length, pinos.length, `seed ${seed}: as many lines as pino wrote`);
    ours.forEach((line, i) => assertSameLine(line, pinos[i], seed));
  }
});

test('a level the access log drops writes nothing: info and warn under error, debug under info', () => {
  const c: ConnectionDescription = { direction: 'inbound', src: { addr: '10.1.0.1:40000' }, dst: { addr: '10.1.0.2:9080' }, securityPolicy: 'mutual_tls' };
  const d: RequestDescription = { connection: c, protocol: 'http', method: 'GET', path: '/', authority: 'a', httpVersion: 'HTTP/1.1' };
  const atError: string[] = [];
  new RequestTelemetry(new MeshMetrics('test'), accessLogger('error', atError)).record(d, { responseCode: 200, requestBytes: 0, responseBytes: 0 }, 1);
  new RequestTelemetry(new MeshMetrics('test'), accessLogger('error', atError)).record(d, { responseCode: 503, requestBytes: 0, responseBytes: 0, flags: ['UF'] }, 1);
  const connections = new ConnectionTelemetry(new MeshMetrics('test'), accessLogger('error', atError));
  connections.opened(c).closed({ bytesSent: 1, bytesReceived: 1 });
  connections.failed(c, 'CONNECT', 'refused');
  assert.deepEqual(atError, []);
  // At error, a connection that failed in its relay is still written; at info, an opened one is not.
  connections.opened(c).closed({ bytesSent: 1, bytesReceived: 1, error: { side: 'upstream', message: 'reset' } });
  assert.equal(atError.length, 1);
  assert.match(atError[0]!, /"level":50.*"msg":"connection complete"/);
  const atInfo: string[] = [];
  new ConnectionTelemetry(new MeshMetrics('test'), accessLogger('info', atInfo)).opened(c).closed({ bytesSent: 1, bytesReceived: 1 });
  assert.deepEqual(atInfo.map((l) => (JSON.parse(l) as { msg: string }).msg), ['connection complete']);
});

// Reads a VirtualService into the typed routes of istio-networking.ts, applying the rules istiod's
// validation applies (pkg/config/validation), so that what Ambit accepts is what Istio would accept.

import {
  readDestination,
  readExportTo,
  readGateways,
  readHost,
  readPercentage,
  readStringMatch,
  readStringMatches,
} from './istio-common.js';
import type {
  CorsPolicy,
  HTTPDirectResponse,
  HTTPFaultInjection,
  HTTPMatchRequest,
  HTTPMirrorPolicy,
  HTTPRedirect,
  HTTPRetry,
  HTTPRewrite,
  HTTPRoute,
  HTTPRouteAction,
  HTTPRouteDestination,
  HeaderManipulation,
  HeaderOperations,
  L4MatchAttributes,
  RouteDestination,
  StringMatch,
  TCPRoute,
  VirtualServiceObject,
} from './istio-networking.js';
import type { ObjectBase } from './kubernetes.js';
import { isDns1123Label } from './formats.js';
import { type Field, type MapReader, PORT_RANGE } from './yaml-reader.js';

// Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on conditions, the ones istiod accepts in retryOn.
const RETRY_ON = new Set([
  '5xx', 'gateway-error', 'reset', 'reset-before-request', 'connect-failure', 'retriable-4xx', 'refused-stream',
  'retriable-status-codes', 'retriable-headers', 'envoy-ratelimited', 'http3-post-connect-failure',
  'cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable',
]);
const GRPC_STATUSES = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE',
  'DATA_LOSS', 'UNAUTHENTICATED',
] as const;
const HTTP_STATUS = { min: 200, max: 599 };
// istiod refuses durations under a millisecond: Envoy would round them to "no timeout".
const AT_LEAST_1MS = { min: 1 };

export function parseVirtualService(root: MapReader, base: ObjectBase<'VirtualService'>): VirtualServiceObject | undefined {
  const spec = root.require('spec')?.map();
  if (!spec) return undefined;
  const gateways = readGateways(spec, 'gateways');
  const hostsField = spec.require('hosts');
  const hosts = spec.strings('hosts', (item) => readHost(item, { wildcard: true }));
  if (hostsField && hosts.length === 0 && hostsField.list()?.length === 0) {
    // A VirtualService without hosts is a delegate, which only a root VirtualService on a gateway can use.
    hostsField.fail('expected at least one host (delegate VirtualServices are not supported)');
  }
  const appliesToMesh = gateways.length === 0 || gateways.includes('mesh');
  if (appliesToMesh && hosts.includes('*')) hostsField?.fail('"*" is not allowed as a host for the mesh; name the services');
  const duplicate = hosts.find((h, i) => hosts.indexOf(h) !== i);
  if (duplicate !== undefined) hostsField?.fail(`host "${duplicate}" is listed twice`);
  const exportTo = readExportTo(spec);

  const http = spec.list('http').flatMap((f) => parseHttpRoute(f) ?? []);
  const tcp = spec.list('tcp').flatMap((f) => parseTcpRoute(f) ?? []);
  const tls = spec.get('tls');
  if (tls) tls.warn('TLS routes are not supported by Ambit yet and are ignored');
  if (!spec.has('http') && !spec.has('tcp') && !tls) root.ctx.error(spec.line, spec.path, 'expected http, tcp or tls routes, got none');
  return { ...base, spec: { hosts, gateways, exportTo, http, tcp } };
}

function parseHttpRoute(field: Field): HTTPRoute | undefined {
  const m = field.map();
  if (!m) return undefined;
  const name = m.string('name');
  const match = m.list('match').flatMap((f) => parseHttpMatch(f) ?? []);
  if (m.has('delegate')) m.get('delegate')?.fail('delegation is not supported by Ambit; put the routes in this VirtualService');
  const action = parseAction(m);
  const rewrite = m.get('rewrite');
  const fault = m.get('fault');
  if (action && action.kind !== 'route') {
    // As istiod: a redirect or direct response never reaches a backend, so these would be dead config.
    if (rewrite) rewrite.fail(`rewrite cannot be combined with ${action.kind}`);
    if (fault) fault.fail(`fault cannot be combined with ${action.kind}`);
  }
  const rewriteValue = rewrite ? parseRewrite(rewrite) : undefined;
  const faultValue = fault ? parseFault(fault) : undefined;
  const timeoutMs = m.duration('timeout', AT_LEAST_1MS);
  const retries = m.get('retries');
  const retriesValue = retries ? parseRetries(retries) : undefined;
  const mirrors = parseMirrors(m);
  const headers = parseHeaders(m);
  const cors = m.get('corsPolicy');
  const corsPolicy = cors ? parseCorsPolicy(cors) : undefined;
  if (!action) return undefined;
  return {
    ...(name !== undefined ? { name } : {}),
    match,
    action,
    ...(rewriteValue ? { rewrite: rewriteValue } : {}),
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    ...(retriesValue ? { retries: retriesValue } : {}),
    ...(faultValue ? { fault: faultValue } : {}),
    mirrors,
    headers,
    ...(corsPolicy ? { corsPolicy } : {}),
  };
}

function parseHttpMatch(field: Field): HTTPMatchRequest | undefined {
  const m = field.map();
  if (!m) return undefined;
  const stringMatch = (key: string): { [k: string]: StringMatch } => {
    const f = m.get(key);
    const value = f ? readStringMatch(f) : undefined;
    return value ? { [key]: value } : {};
  };
  const name = m.string('name');
  const port = m.int('port', PORT_RANGE);
  const sourceNamespace = m.get('sourceNamespace');
  const namespace = sourceNamespace?.string();
  if (namespace !== undefined && !isDns1123Label(namespace)) sourceNamespace?.fail(`expected a namespace name, got ${JSON.stringify(namespace)}`);
  return {
    ...(name !== undefined ? { name } : {}),
    ...stringMatch('uri'),
    ...stringMatch('scheme'),
    ...stringMatch('method'),
    ...stringMatch('authority'),
    headers: readStringMatches(m, 'headers', 'header'),
    withoutHeaders: readStringMatches(m, 'withoutHeaders', 'header'),
    queryParams: readStringMatches(m, 'queryParams', 'query'),
    ...(port !== undefined ? { port } : {}),
    sourceLabels: m.labels('sourceLabels'),
    ...(namespace !== undefined ? { sourceNamespace: namespace } : {}),
    gateways: readGateways(m, 'gateways'),
    ignoreUriCase: m.bool('ignoreUriCase') ?? false,
  };
}

function parseAction(m: MapReader): HTTPRouteAction | undefined {
  const kind = m.oneOf(['route', 'redirect', 'directResponse']);
  if (kind === undefined) {
    m.ctx.error(m.line, m.path, 'expected one of route, redirect or directResponse, got none');
    return undefined;
  }
  if (kind === 'route') {
    const destinations = parseWeighted(m)?.map(({ destination, weight, m: d }): HTTPRouteDestination => ({ destination, weight, headers: parseHeaders(d) }));
    return destinations && { kind, destinations };
  }
  if (kind === 'redirect') {
    const redirect = m.map('redirect');
    const value = redirect && parseRedirect(redirect);
    return value && { kind, redirect: value };
  }
  const response = m.map('directResponse');
  const value = response && parseDirectResponse(response);
  return value && { kind, directResponse: value };
}

interface Weighted extends RouteDestination {
  /** The destination's own mapping, for what HTTP routes read beside destination and weight. */
  readonly m: MapReader;
}

/** route[] of an HTTP or TCP route: destinations with weights, which must not all be zero. */
function parseWeighted(m: MapReader): Weighted[] | undefined {
  const field = m.require('route');
  const items = field?.list();
  if (!field || !items) return undefined;
  if (items.length === 0) return field.fail('expected at least one destination, got an empty list');
  const out: Weighted[] = [];
  for (const item of items) {
    const d = item.map();
    const destination = d?.require('destination');
    const dest = destination ? readDestination(destination) : undefined;
    const weight = d?.int('weight', { min: 0 }) ?? 0;
    if (d && dest) out.push({ m: d, destination: dest, weight });
  }
  if (out.length > 1 && out.every((d) => d.weight === 0)) {
    return field.fail('the weights add up to 0; give at least one destination a positive weight');
  }
  return out;
}

function parseRedirect(m: MapReader): HTTPRedirect | undefined {
  const uri = m.string('uri');
  const authority = m.string('authority');
  const portKind = m.oneOf(['port', 'derivePort']);
  const port = portKind === 'port' ? m.int('port', PORT_RANGE) : portKind && m.enum('derivePort', ['FROM_PROTOCOL_DEFAULT', 'FROM_REQUEST_PORT']);
  const scheme = m.enum('scheme', ['http', 'https']);
  const redirectCode = m.int('redirectCode', { min: 300, max: 399 }) ?? 301;
  if (uri === undefined && authority === undefined && portKind === undefined && scheme === undefined) {
    m.ctx.error(m.line, m.path, 'expected at least one of uri, authority, scheme or port, got none');
    return undefined;
  }
  return {
    ...(uri !== undefined ? { uri } : {}),
    ...(authority !== undefined ? { authority } : {}),
    ...(port !== undefined ? { port } : {}),
    ...(scheme !== undefined ? { scheme } : {}),
    redirectCode,
  };
}

function parseDirectResponse(m: MapReader): HTTPDirectResponse | undefined {
  const status = m.require('status')?.int(HTTP_STATUS);
  const body = m.map('body');
  if (body?.has('bytes')) body.get('bytes')?.fail('body.bytes is not supported by Ambit; use body.string');
  const text = body?.require('string')?.string();
  if (status === undefined) return undefined;
  return { status, ...(text !== undefined ? { body: text } : {}) };
}

function parseRewrite(field: Field): HTTPRewrite | undefined {
  const m = field.map();
  if (!m) return undefined;
  m.oneOf(['uri', 'uriRegexRewrite']);
  const uri = m.string('uri');
  const authority = m.string('authority');
  const regexRewrite = m.map('uriRegexRewrite');
  const regex = regexRewrite?.require('match')?.regex({ fullMatch: false });
  const match = regexRewrite?.string('match');
  const replacement = regexRewrite?.require('rewrite')?.string();
  const uriRegexRewrite = match !== undefined && regex && replacement !== undefined ? { match, regex, rewrite: replacement } : undefined;
  if (uri === undefined && authority === undefined && !regexRewrite) return field.fail('expected at least one of uri, uriRegexRewrite or authority, got none');
  return { ...(uri !== undefined ? { uri } : {}), ...(authority !== undefined ? { authority } : {}), ...(uriRegexRewrite ? { uriRegexRewrite } : {}) };
}

function parseRetries(field: Field): HTTPRetry | undefined {
  const m = field.map();
  if (!m) return undefined;
  const attempts = m.int('attempts', { min: 0 }) ?? 0;
  const perTryTimeoutMs = m.duration('perTryTimeout', AT_LEAST_1MS);
  const retryOn = (m.string('retryOn') ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const condition of retryOn) {
    const status = Number(condition);
    const isStatus = /^\d{3}$/.test(condition) && status >= 100 && status <= 599;
    if (!isStatus && !RETRY_ON.has(condition)) {
      m.get('retryOn')?.fail(`"${condition}" is not a retry condition; expected HTTP status codes or any of ${[...RETRY_ON].join(', ')}`);
    }
  }
  const retryRemoteLocalities = m.bool('retryRemoteLocalities') ?? false;
  m.ignore('backoff');
  if (attempts === 0 && (perTryTimeoutMs !== undefined || retryOn.length > 0 || m.has('retryRemoteLocalities'))) {
    return field.fail('retries are configured but attempts is 0, which disables them; set attempts');
  }
  return { attempts, ...(perTryTimeoutMs !== undefined ? { perTryTimeoutMs } : {}), retryOn, retryRemoteLocalities };
}

function parseFault(field: Field): HTTPFaultInjection | undefined {
  const m = field.map();
  if (!m) return undefined;
  const delay = m.map('delay');
  const abort = m.map('abort');
  if (!delay && !abort) return field.fail('expected delay, abort or both, got neither');
  let delayValue: HTTPFaultInjection['delay'];
  if (delay) {
    if (delay.has('exponentialDelay')) delay.get('exponentialDelay')?.fail('exponentialDelay is not supported; use fixedDelay');
    const fixedDelayMs = delay.require('fixedDelay')?.duration(AT_LEAST_1MS);
    const percentage = readPercentage(delay, 'percentage');
    if (fixedDelayMs !== undefined) delayValue = { fixedDelayMs, ...(percentage !== undefined ? { percentage } : {}) };
  }
  let abortValue: HTTPFaultInjection['abort'];
  if (abort) {
    const percentage = readPercentage(abort, 'percentage');
    const pct = percentage !== undefined ? { percentage } : {};
    const kind = abort.oneOf(['httpStatus', 'grpcStatus', 'http2Error']);
    if (kind === 'httpStatus') {
      const httpStatus = abort.int('httpStatus', HTTP_STATUS);
      if (httpStatus !== undefined) abortValue = { kind, httpStatus, ...pct };
    } else if (kind === 'grpcStatus') {
      const grpcStatus = abort.enum('grpcStatus', GRPC_STATUSES);
      if (grpcStatus !== undefined) abortValue = { kind, grpcStatus, ...pct };
    } else {
      abort.ctx.error(abort.line, abort.path, kind ? 'http2Error aborts are not supported (Istio neither)' : 'expected httpStatus or grpcStatus, got neither');
    }
  }
  return { ...(delayValue ? { delay: delayValue } : {}), ...(abortValue ? { abort: abortValue } : {}) };
}

function parseMirrors(m: MapReader): HTTPMirrorPolicy[] {
  m.oneOf(['mirror', 'mirrors']);
  const mirror = m.get('mirror');
  if (mirror) {
    const destination = readDestination(mirror);
    const percentage = readPercentage(m, 'mirrorPercentage');
    return destination ? [{ destination, ...(percentage !== undefined ? { percentage } : {}) }] : [];
  }
  if (m.has('mirrorPercentage')) m.get('mirrorPercentage')?.fail('mirrorPercentage applies to mirror; with mirrors, give each one a percentage');
  return m.maps('mirrors').flatMap((mirror) => {
    const destination = mirror.require('destination');
    const dest = destination ? readDestination(destination) : undefined;
    const percentage = readPercentage(mirror, 'percentage');
    return dest ? [{ destination: dest, ...(percentage !== undefined ? { percentage } : {}) }] : [];
  });
}

function parseHeaders(m: MapReader): HeaderManipulation {
  const headers = m.map('headers');
  return { request: parseHeaderOperations(headers, 'request'), response: parseHeaderOperations(headers, 'response') };
}

function parseHeaderOperations(headers: MapReader | undefined, key: string): HeaderOperations {
  const ops = headers?.map(key);
  return { set: ops?.stringMap('set') ?? {}, add: ops?.stringMap('add') ?? {}, remove: ops?.strings('remove') ?? [] };
}

function parseCorsPolicy(field: Field): CorsPolicy | undefined {
  const m = field.map();
  if (!m) return undefined;
  const maxAgeMs = m.duration('maxAge', AT_LEAST_1MS);
  const allowCredentials = m.bool('allowCredentials');
  m.ignore('allowOrigin', 'unmatchedPreflights');
  return {
    allowOrigins: m.list('allowOrigins').flatMap((f) => readStringMatch(f) ?? []),
    allowMethods: m.strings('allowMethods'),
    allowHeaders: m.strings('allowHeaders'),
    exposeHeaders: m.strings('exposeHeaders'),
    ...(maxAgeMs !== undefined ? { maxAgeMs } : {}),
    ...(allowCredentials !== undefined ? { allowCredentials } : {}),
  };
}

function parseTcpRoute(field: Field): TCPRoute | undefined {
  const m = field.map();
  if (!m) return undefined;
  const match = m.maps('match').map((attrs): L4MatchAttributes => {
    const port = attrs.int('port', PORT_RANGE);
    const sourceNamespace = attrs.string('sourceNamespace');
    return {
      ...(port !== undefined ? { port } : {}),
      destinationSubnets: attrs.strings('destinationSubnets', (item) => item.ipOrCidr()),
      sourceLabels: attrs.labels('sourceLabels'),
      ...(sourceNamespace !== undefined ? { sourceNamespace } : {}),
      gateways: readGateways(attrs, 'gateways'),
    };
  });
  const route = parseWeighted(m)?.map(({ destination, weight }): RouteDestination => ({ destination, weight }));
  return route && { match, route };
}

// Reads an HTTPRoute (gateway.networking.k8s.io v1 and v1beta1) into the typed rules of types.ts, with the
// checks the CRD's schema and CEL rules make, and says which fields Ambit ignores in the mesh.

import type { ObjectBase } from '../kubernetes.js';
import type { Field, MapReader } from '../yaml-reader.js';
import { PORT_RANGE } from '../yaml-reader.js';
import { readFilteredBackendRef, readGatewayDuration, readHeaderModifier, readNamedMatches, readRequestMirror, readRouteSpec, readSectionName } from './parse-common.js';
import type { HttpRouteFilter, HttpRouteMatch, HttpRouteObject, HttpRouteRetry, HttpRouteRule, PathMatch, PathModifier } from './types.js';

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const;
const FILTER_TYPES = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite', 'RequestMirror', 'CORS', 'ExtensionRef', 'ExternalAuth'] as const;
const FILTER_FIELD: Readonly<Record<(typeof FILTER_TYPES)[number], string>> = {
  RequestHeaderModifier: 'requestHeaderModifier',
  ResponseHeaderModifier: 'responseHeaderModifier',
  RequestRedirect: 'requestRedirect',
  URLRewrite: 'urlRewrite',
  RequestMirror: 'requestMirror',
  CORS: 'cors',
  ExtensionRef: 'extensionRef',
  ExternalAuth: 'externalAuth',
};

export function parseHttpRoute(root: MapReader, base: ObjectBase<'HTTPRoute'>): HttpRouteObject | undefined {
  const ns = base.metadata.namespace;
  const spec = readRouteSpec(root, ns, (s): HttpRouteRule[] => {
    ignoreHostnames(s);
    return s.has('rules') ? s.list('rules').flatMap((f) => readRule(f, ns) ?? []) : [defaultRule()];
  });
  return spec && { ...base, spec };
}

/** GAMMA: meshes SHOULD NOT infer anything from hostnames (GEP-1294), so they are read and ignored. */
export function ignoreHostnames(spec: MapReader): void {
  const hostnames = spec.get('hostnames');
  if (hostnames && (hostnames.list()?.length ?? 0) > 0) hostnames.warn('ignored for routes bound to a Service (GAMMA, GEP-1294: meshes do not use hostnames); match the Host header instead');
}

/** The CRD's default: one rule, matching PathPrefix "/", with no backends. */
function defaultRule(): HttpRouteRule {
  return { matches: [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] }], filters: [], backendRefs: [] };
}

function readRule(field: Field, ns: string): HttpRouteRule | undefined {
  const m = field.map();
  if (!m) return undefined;
  const name = readSectionName(m, 'name');
  const matchFields = m.list('matches');
  const matches = matchFields.length === 0 ? defaultRule().matches : matchFields.flatMap((f) => readMatch(f) ?? []);
  const filters = m.list('filters').flatMap((f) => readFilter(f, ns) ?? []);
  checkFilterCombination(m, filters, matches);
  const backendRefs = m.maps('backendRefs').flatMap((b) => readFilteredBackendRef(b, ns, FILTER_TYPES) ?? []);
  const timeouts = m.map('timeouts');
  const requestTimeoutMs = timeouts?.get('request') ? readGatewayDuration(timeouts.get('request')!) : undefined;
  const backendRequestTimeoutMs = timeouts?.get('backendRequest') ? readGatewayDuration(timeouts.get('backendRequest')!) : undefined;
  if (requestTimeoutMs && backendRequestTimeoutMs && backendRequestTimeoutMs > requestTimeoutMs) {
    timeouts?.get('backendRequest')?.fail(`backendRequest (${backendRequestTimeoutMs}ms) must not exceed request (${requestTimeoutMs}ms), as the API requires`);
  }
  const retry = m.get('retry') ? readRetry(m.get('retry')!) : undefined;
  if (m.has('sessionPersistence')) m.get('sessionPersistence')?.warn('session persistence is not applied by Ambit yet; requests are balanced as without it');
  return {
    ...(name !== undefined ? { name } : {}),
    matches,
    filters,
    backendRefs,
    ...(requestTimeoutMs !== undefined ? { requestTimeoutMs } : {}),
    ...(backendRequestTimeoutMs !== undefined ? { backendRequestTimeoutMs } : {}),
    ...(retry ? { retry } : {}),
  };
}

function readMatch(field: Field): HttpRouteMatch | undefined {
  const m = field.map();
  if (!m) return undefined;
  const pathField = m.get('path');
  const path = pathField ? readPathMatch(pathField) : { type: 'PathPrefix' as const, value: '/' };
  const headers = readNamedMatches(m, 'headers', 'header');
  const queryParams = readNamedMatches(m, 'queryParams', 'query');
  const method = m.enum('method', METHODS);
  if (!path) return undefined;
  return { path, headers, queryParams, ...(method !== undefined ? { method } : {}) };
}

function readPathMatch(field: Field): PathMatch | undefined {
  const m = field.map();
  if (!m) return undefined;
  const type = m.enum('type', ['Exact', 'PathPrefix', 'RegularExpression']) ?? 'PathPrefix';
  const valueField = m.get('value');
  const value = valueField?.string() ?? '/';
  if (type === 'RegularExpression') {
    const regex = valueField?.regex({ fullMatch: true });
    return regex ? { type, value, regex } : valueField ? undefined : { type, value, regex: /^\/$/ };
  }
  if (!value.startsWith('/') || value.includes('//')) {
    return (valueField ?? field).fail(`expected a path that starts with "/" and has no "//", got ${JSON.stringify(value)}`);
  }
  if (type === 'Exact') return { type, value };
  // A trailing "/" is ignored for PathPrefix, so "/abc/" matches as "/abc" does.
  return { type, value: value.length > 1 && value.endsWith('/') ? value.slice(0, -1) : value };
}

function readFilter(field: Field, ns: string): HttpRouteFilter | undefined {
  const m = field.map();
  if (!m) return undefined;
  const type = m.require('type')?.enum(FILTER_TYPES);
  if (type === undefined) return undefined;
  const key = FILTER_FIELD[type];
  for (const other of Object.values(FILTER_FIELD)) if (other !== key && m.has(other)) m.get(other)?.fail(`is not allowed with type ${type}`);
  const body = m.require(key);
  if (!body) return undefined;
  switch (type) {
    case 'RequestHeaderModifier':
    case 'ResponseHeaderModifier': {
      const modifier = readHeaderModifier(body);
      return modifier ? { type, modifier } : undefined;
    }
    case 'RequestRedirect':
      return readRedirect(body);
    case 'URLRewrite': {
      const r = body.map();
      const hostname = r?.get('hostname')?.nonEmptyString();
      const path = r?.get('path') ? readPathModifier(r.get('path')!) : undefined;
      return { type, ...(hostname !== undefined ? { hostname } : {}), ...(path ? { path } : {}) };
    }
    case 'RequestMirror': {
      const mirror = readRequestMirror(body, ns);
      return mirror ? { type, mirror } : undefined;
    }
    default:
      // CORS (standard since v1.5), ExtensionRef and ExternalAuth: refused rather than silently skipped,
      // because a route that drops a filter would let through requests the user meant to stop or change.
      return field.fail(`filter type ${type} is not supported by Ambit yet; remove it, or express it with an Istio resource (docs/istio-api.md)`);
  }
}

function readRedirect(field: Field): HttpRouteFilter | undefined {
  const r = field.map();
  if (!r) return undefined;
  const scheme = r.enum('scheme', ['http', 'https']);
  const hostname = r.get('hostname')?.nonEmptyString();
  const path = r.get('path') ? readPathModifier(r.get('path')!) : undefined;
  const port = r.int('port', PORT_RANGE);
  const statusCode = r.get('statusCode')?.int() ?? 302;
  if (statusCode !== 301 && statusCode !== 302) r.get('statusCode')?.fail(`expected 301 or 302, got ${statusCode}`);
  return {
    type: 'RequestRedirect',
    redirect: { ...(scheme ? { scheme } : {}), ...(hostname !== undefined ? { hostname } : {}), ...(path ? { path } : {}), ...(port !== undefined ? { port } : {}), statusCode },
  };
}

function readPathModifier(field: Field): PathModifier | undefined {
  const m = field.map();
  if (!m) return undefined;
  const type = m.require('type')?.enum(['ReplaceFullPath', 'ReplacePrefixMatch']);
  if (type === undefined) return undefined;
  const key = type === 'ReplaceFullPath' ? 'replaceFullPath' : 'replacePrefixMatch';
  const valueField = m.require(key);
  const value = valueField?.string();
  if (value === undefined) return undefined;
  if (value !== '' && !value.startsWith('/')) return valueField?.fail(`expected a path that starts with "/", got ${JSON.stringify(value)}`);
  return { type, value };
}

/** The CEL rules on a rule's filters: each kind once (mirrors aside), redirect and rewrite apart, and ReplacePrefixMatch only under one PathPrefix match. */
function checkFilterCombination(rule: MapReader, filters: readonly HttpRouteFilter[], matches: readonly HttpRouteMatch[]): void {
  const field = rule.get('filters');
  for (const type of ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite'] as const) {
    if (filters.filter((f) => f.type === type).length > 1) field?.fail(`${type} may appear only once in a rule`);
  }
  const redirect = filters.find((f) => f.type === 'RequestRedirect');
  const rewrite = filters.find((f) => f.type === 'URLRewrite');
  if (redirect && rewrite) field?.fail('RequestRedirect and URLRewrite cannot be used together in one rule');
  const usesPrefix = (redirect?.type === 'RequestRedirect' && redirect.redirect.path?.type === 'ReplacePrefixMatch') || (rewrite?.type === 'URLRewrite' && rewrite.path?.type === 'ReplacePrefixMatch');
  if (usesPrefix && !(matches.length === 1 && matches[0]!.path.type === 'PathPrefix')) {
    field?.fail('ReplacePrefixMatch needs exactly one match, with a PathPrefix path');
  }
}


function readRetry(field: Field): HttpRouteRetry | undefined {
  const m = field.map();
  if (!m) return undefined;
  const codes = m.list('codes').flatMap((c) => c.int({ min: 400, max: 599 }) ?? []);
  const attempts = m.int('attempts', { min: 0 });
  const backoffMs = m.get('backoff') ? readGatewayDuration(m.get('backoff')!) : undefined;
  return { codes, ...(attempts !== undefined ? { attempts } : {}), ...(backoffMs !== undefined ? { backoffMs } : {}) };
}

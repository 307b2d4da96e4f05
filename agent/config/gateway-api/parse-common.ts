// Readers for the pieces every Gateway API route shares (parentRefs, backendRefs, header and query
// matches, header modifiers, GEP-2257 durations), with the validation the CRDs' schemas apply, so that
// what Ambit accepts from a file is what the API server would have admitted.

import { isDns1123Label, isDns1123Subdomain } from '../formats.js';
import type { HeaderOperations, StringMatch } from '../istio-networking.js';
import { type Field, type MapReader, PORT_RANGE } from '../yaml-reader.js';
import type { BackendRef, NamedMatch, ParentRef, RequestMirror } from './types.js';

// RFC 7230's token, which the CRDs require of header names.
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;
// GEP-2257: up to four parts of one to five digits, each with h, m, s or ms.
const GATEWAY_DURATION = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/;
const UNIT_MS: Readonly<Record<string, number>> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

/** A GEP-2257 duration ("10s", "1h30m", "500ms") in milliseconds; 0 is allowed and means "no timeout". */
export function readGatewayDuration(field: Field): number | undefined {
  const text = field.string();
  if (text === undefined) return undefined;
  if (!GATEWAY_DURATION.test(text)) return field.fail(`expected a Gateway API duration such as "10s", "500ms" or "1h30m" (GEP-2257), got ${JSON.stringify(text)}`);
  let ms = 0;
  for (const [, amount, unit] of text.matchAll(/([0-9]+)(ms|h|m|s)/g)) ms += Number(amount) * UNIT_MS[unit!]!;
  return ms;
}

/** The rule name (a SectionName: a DNS-1123 subdomain). */
export function readSectionName(m: MapReader, key: string): string | undefined {
  const field = m.get(key);
  const name = field?.nonEmptyString();
  if (name === undefined || isDns1123Subdomain(name)) return name;
  return field?.fail(`expected a DNS-1123 subdomain such as "rule-1", got ${JSON.stringify(name)}`);
}

function readObjectName(m: MapReader, key: string): string | undefined {
  const field = m.require(key);
  const name = field?.nonEmptyString();
  if (name === undefined || isDns1123Subdomain(name)) return name;
  return field?.fail(`expected an object name (DNS-1123 subdomain), got ${JSON.stringify(name)}`);
}

function readNamespace(m: MapReader, fallback: string): string | undefined {
  const field = m.get('namespace');
  if (!field) return fallback;
  const ns = field.nonEmptyString();
  if (ns === undefined || isDns1123Label(ns)) return ns;
  return field.fail(`expected a namespace name, got ${JSON.stringify(ns)}`);
}

/** parentRefs: group defaults to the Gateway API's own and kind to Gateway, as the CRD's defaults say. */
export function readParentRefs(spec: MapReader, routeNamespace: string): ParentRef[] {
  const refs = spec.maps('parentRefs').flatMap((m) => {
    const group = m.string('group') ?? 'gateway.networking.k8s.io';
    const kind = m.string('kind') ?? 'Gateway';
    const name = readObjectName(m, 'name');
    const namespace = readNamespace(m, routeNamespace);
    const port = m.int('port', PORT_RANGE);
    const sectionName = readSectionName(m, 'sectionName');
    if (name === undefined || namespace === undefined) return [];
    return [{ group, kind, namespace, name, ...(port !== undefined ? { port } : {}), ...(sectionName !== undefined ? { sectionName } : {}) }];
  });
  if (!spec.has('parentRefs')) spec.ctx.warn(spec.line, spec.childPath('parentRefs'), 'no parentRefs: the route binds to nothing; name a Service to route its traffic in the mesh');
  return refs;
}

/**
 * Whether any parentRef names a Service, i.e. the route is the mesh's (GAMMA). A route bound only to
 * Gateways belongs to an ingress controller: Ambit reads no further, so that what it would refuse (a
 * CORS filter, say) is never reported against a route that was not meant for it.
 */
export function bindsToService(parentRefs: readonly ParentRef[]): boolean {
  return parentRefs.some((p) => p.group === '' && p.kind === 'Service');
}

/**
 * A backendRef (or a mirror's backendRef). The group defaults to core and the kind to Service; a Service
 * needs a port, as the CRD's validation requires.
 */
/**
 * The opening every route kind shares: its spec and parentRefs, and its rules (`readRules`) only when it
 * binds to a Service. A route bound only to Gateways belongs to an ingress controller and is read no further.
 */
export function readRouteSpec<R>(root: MapReader, routeNamespace: string, readRules: (spec: MapReader) => R[]): { parentRefs: ParentRef[]; rules: R[] } | undefined {
  const spec = root.require('spec')?.map();
  if (!spec) return undefined;
  const parentRefs = readParentRefs(spec, routeNamespace);
  if (!bindsToService(parentRefs)) {
    spec.ignoreRest();
    return { parentRefs, rules: [] };
  }
  return { parentRefs, rules: readRules(spec) };
}

export function readBackendRef(m: MapReader, routeNamespace: string, options: { weighted: boolean }): BackendRef | undefined {
  const group = m.string('group') ?? '';
  const kind = m.string('kind') ?? 'Service';
  const name = readObjectName(m, 'name');
  const namespace = readNamespace(m, routeNamespace);
  const port = m.int('port', PORT_RANGE);
  if (group === '' && kind === 'Service' && port === undefined && !m.has('port')) m.ctx.error(m.line, m.childPath('port'), 'required field is missing: a backendRef to a Service names its port');
  const weight = options.weighted ? (m.int('weight', { min: 0, max: 1_000_000 }) ?? 1) : 1;
  if (name === undefined || namespace === undefined) return undefined;
  return { group, kind, namespace, name, ...(port !== undefined ? { port } : {}), weight };
}

/** A header modifier: set and add are lists of {name, value}, remove a list of names. Names lowercased. */
export function readHeaderModifier(field: Field): HeaderOperations | undefined {
  const m = field.map();
  if (!m) return undefined;
  const pairs = (key: 'set' | 'add'): Record<string, string> => {
    const out: Record<string, string> = {};
    for (const item of m.maps(key)) {
      const name = readHeaderName(item.require('name'));
      const value = item.require('value')?.string();
      if (name === undefined || value === undefined) continue;
      if (Object.hasOwn(out, name)) item.get('name')?.fail(`header ${JSON.stringify(name)} is listed twice in ${key}`);
      out[name] = value;
    }
    return out;
  };
  const set = pairs('set');
  const add = pairs('add');
  const remove = m.strings('remove', (item) => readHeaderName(item));
  return { set, add, remove };
}

function readHeaderName(field: Field | undefined): string | undefined {
  const name = field?.nonEmptyString();
  if (name === undefined) return undefined;
  return HEADER_NAME.test(name) ? name.toLowerCase() : field?.fail(`expected an HTTP header name (RFC 7230 token), got ${JSON.stringify(name)}`);
}

/**
 * Header or query parameter matches: type Exact (the default) or RegularExpression. Only the first entry
 * of a name counts, as the API requires; header names compare case-insensitively, query names do not.
 */
export function readNamedMatches(m: MapReader, key: string, names: 'header' | 'query'): NamedMatch[] {
  const out: NamedMatch[] = [];
  for (const item of m.maps(key)) {
    const nameField = item.require('name');
    const raw = nameField?.nonEmptyString();
    const type = item.enum('type', ['Exact', 'RegularExpression']) ?? 'Exact';
    const valueField = item.require('value');
    if (raw === undefined || !valueField) continue;
    if (names === 'header' && !HEADER_NAME.test(raw)) {
      nameField?.fail(`expected an HTTP header name (RFC 7230 token), got ${JSON.stringify(raw)}`);
      continue;
    }
    const name = names === 'header' ? raw.toLowerCase() : raw;
    let match: StringMatch | undefined;
    if (type === 'Exact') {
      const value = valueField.string();
      if (value !== undefined) match = { kind: 'exact', value };
    } else {
      const regex = valueField.regex({ fullMatch: true });
      if (regex) match = { kind: 'regex', value: valueField.string() ?? '', regex };
    }
    if (!match) continue;
    if (out.some((e) => e.name === name)) {
      nameField?.warn(`${names} ${JSON.stringify(raw)} is matched by an earlier entry; the API says only the first entry of a name counts, so this one is ignored`);
      continue;
    }
    out.push({ name, match });
  }
  return out;
}

/** RequestMirror: a backendRef and either percent (0-100) or fraction (numerator/denominator). */
export function readRequestMirror(field: Field, routeNamespace: string): RequestMirror | undefined {
  const m = field.map();
  if (!m) return undefined;
  const backendMap = m.require('backendRef')?.map();
  const backend = backendMap ? readBackendRef(backendMap, routeNamespace, { weighted: false }) : undefined;
  const which = m.oneOf(['percent', 'fraction']);
  let percentage: number | undefined;
  if (which === 'percent') percentage = m.int('percent', { min: 0, max: 100 });
  else if (which === 'fraction') {
    const f = m.map('fraction');
    const numerator = f?.require('numerator')?.int({ min: 0 });
    const denominator = f?.get('denominator')?.int({ min: 1 }) ?? 100;
    if (numerator !== undefined && numerator > denominator) f?.get('numerator')?.fail(`expected a numerator no larger than the denominator (${denominator}), got ${numerator}`);
    else if (numerator !== undefined) percentage = (numerator / denominator) * 100;
  }
  if (!backend) return undefined;
  return { backend, ...(percentage !== undefined ? { percentage } : {}) };
}

/**
 * A route's backendRef with its own filters, which Ambit applies only when they modify headers
 * (RequestHeaderModifier, ResponseHeaderModifier); any other filter type there is refused.
 */
export function readFilteredBackendRef(m: MapReader, routeNamespace: string, filterTypes: readonly string[]): BackendRef | undefined {
  const ref = readBackendRef(m, routeNamespace, { weighted: true });
  let requestHeaders: HeaderOperations | undefined;
  let responseHeaders: HeaderOperations | undefined;
  for (const f of m.list('filters')) {
    const fm = f.map();
    const type = fm?.require('type')?.enum(filterTypes);
    const body = (key: string): Field | undefined => fm?.require(key);
    if (type === 'RequestHeaderModifier') requestHeaders = readHeaderModifierAt(body('requestHeaderModifier'));
    else if (type === 'ResponseHeaderModifier') responseHeaders = readHeaderModifierAt(body('responseHeaderModifier'));
    else if (type !== undefined) f.fail(`a backendRef's filters may only modify headers in Ambit (RequestHeaderModifier, ResponseHeaderModifier); got ${type}`);
  }
  if (!ref) return undefined;
  return { ...ref, ...(requestHeaders ? { requestHeaders } : {}), ...(responseHeaders ? { responseHeaders } : {}) };
}

function readHeaderModifierAt(field: Field | undefined): HeaderOperations | undefined {
  return field ? readHeaderModifier(field) : undefined;
}

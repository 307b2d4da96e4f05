// Readers for the pieces Istio resources share (string matches, destinations, hosts, percentages,
// exportTo, workload selectors), with istiod's validation rules and messages a user can act on.

import { isDns1123Label } from './formats.js';
import type { Destination, ExportTo, StringMatch, WorkloadSelector } from './istio-networking.js';
import { type Field, type MapReader, PORT_RANGE } from './yaml-reader.js';

/** Istio's apiVersions per group, newest first, as the messages list them. */
export const NETWORKING_VERSIONS = ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3'] as const;
export const SECURITY_VERSIONS = ['security.istio.io/v1', 'security.istio.io/v1beta1'] as const;

/** A StringMatch: exactly one of exact, prefix, regex. */
export function readStringMatch(field: Field): StringMatch | undefined {
  const m = field.map();
  if (!m) return undefined;
  const kind = m.oneOf(['exact', 'prefix', 'regex']);
  if (kind === undefined) return field.fail('expected one of exact, prefix or regex, got none');
  const value = m.get(kind)?.string();
  if (value === undefined) return undefined;
  if (kind !== 'regex') return { kind, value };
  const regex = m.get(kind)?.regex({ fullMatch: true });
  return regex ? { kind, value, regex } : undefined;
}

/** A map of name to StringMatch (headers, queryParams). Header names are lowercased: HTTP ignores their case. */
export function readStringMatches(m: MapReader, key: string, names: 'header' | 'query'): Record<string, StringMatch> {
  const out: Record<string, StringMatch> = {};
  for (const [name, field] of m.map(key)?.entries() ?? []) {
    if (name === '') {
      field.fail(`expected a non-empty ${names} name`);
      continue;
    }
    const match = readStringMatch(field);
    if (match) out[names === 'header' ? name.toLowerCase() : name] = match;
  }
  return out;
}

/** A service host as Istio writes it: a short name, an FQDN, a `*.`-prefixed wildcard, or `*` alone. */
export function readHost(field: Field, options: { wildcard: boolean }): string | undefined {
  const host = field.nonEmptyString();
  if (host === undefined) return undefined;
  if (host === '*') return options.wildcard ? host : field.fail('expected a service host name, got "*"');
  const labels = (options.wildcard && host.startsWith('*.') ? host.slice(2) : host).split('.');
  if (host.length <= 255 && labels.every(isDns1123Label)) return host;
  return field.fail(
    `expected a host name such as "reviews", "reviews.bookinfo.svc.cluster.local"${options.wildcard ? ' or "*.example.com"' : ''}, got ${JSON.stringify(host)}`,
  );
}

export function readDestination(field: Field): Destination | undefined {
  const m = field.map();
  if (!m) return undefined;
  const hostField = m.require('host');
  const host = hostField ? readHost(hostField, { wildcard: false }) : undefined;
  const subset = m.get('subset');
  const subsetName = subset ? readSubsetName(subset) : undefined;
  const port = readPortSelector(m, 'port');
  if (host === undefined) return undefined;
  return { host, ...(subsetName !== undefined ? { subset: subsetName } : {}), ...(port !== undefined ? { port } : {}) };
}

export function readSubsetName(field: Field): string | undefined {
  const name = field.nonEmptyString();
  if (name === undefined || isDns1123Label(name)) return name;
  return field.fail(`expected a subset name (a DNS-1123 label such as "v1"), got ${JSON.stringify(name)}`);
}

/** Istio's PortSelector: `port: {number: 9080}`. */
export function readPortSelector(m: MapReader, key: string): number | undefined {
  return m.map(key)?.require('number')?.int(PORT_RANGE);
}

/** Istio's Percent wrapper: `{value: 12.5}`, from 0 to 100. */
export function readPercentage(m: MapReader, key: string): number | undefined {
  return m.map(key)?.require('value')?.number({ min: 0, max: 100 });
}

/** exportTo: ".", "*", "~" or namespace names; "*" and "~" only on their own, as istiod requires. */
export function readExportTo(spec: MapReader): ExportTo {
  const field = spec.get('exportTo');
  const values = spec.strings('exportTo', (item) => {
    const value = item.nonEmptyString();
    if (value === undefined || value === '.' || value === '*' || value === '~' || isDns1123Label(value)) return value;
    return item.fail(`expected ".", "*", "~" or a namespace name, got ${JSON.stringify(value)}`);
  });
  if (values.length > 1 && (values.includes('*') || values.includes('~'))) {
    field?.fail(`"*" and "~" cannot be combined with other values, got ${values.join(', ')}`);
  }
  if (new Set(values).size !== values.length) field?.fail(`expected each value once, got ${values.join(', ')}`);
  return values;
}

/** A WorkloadSelector (`{matchLabels: {...}}`), or undefined when absent. */
export function readWorkloadSelector(spec: MapReader, key: string): WorkloadSelector | undefined {
  const selector = spec.map(key);
  if (!selector) return undefined;
  // Label syntax already refuses "*", which istiod also rejects here: a selector is an exact match.
  const labels = selector.labels('matchLabels');
  if (Object.keys(labels).length === 0) selector.ctx.warn(selector.line, selector.path, 'selector has no labels, so it selects every workload in the namespace');
  return { matchLabels: labels };
}

/** Gateway names: "mesh", "<name>" or "<namespace>/<name>". */
export function readGateways(m: MapReader, key: string): string[] {
  return m.strings(key, (item) => {
    const value = item.nonEmptyString();
    if (value === undefined) return undefined;
    const parts = value.split('/');
    const ok = parts.length <= 2 && parts.every((p) => p.length > 0 && p.split('.').every(isDns1123Label));
    return ok ? value : item.fail(`expected "mesh", a gateway name or "<namespace>/<name>", got ${JSON.stringify(value)}`);
  });
}

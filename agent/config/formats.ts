// The string syntaxes Kubernetes and Istio define inside their YAML (names, labels, IPs, CIDRs,
// durations, regular expressions), each checked the way the API server or istiod checks it.

import { isIP } from 'node:net';

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** A DNS-1123 label: Namespace and Service names, which become one label of a DNS name. */
export function isDns1123Label(value: string): boolean {
  return value.length <= 63 && DNS1123_LABEL.test(value);
}

/** A DNS-1123 subdomain: the name of most other objects (Pod, Node, ServiceAccount, Istio resources). */
export function isDns1123Subdomain(value: string): boolean {
  return value.length <= 253 && value.split('.').every((label) => label.length > 0 && DNS1123_LABEL.test(label));
}

export const DNS1123_LABEL_EXPECTED =
  "a DNS-1123 label (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)";
export const DNS1123_SUBDOMAIN_EXPECTED =
  "a DNS-1123 name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)";

const LABEL_NAME = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;

/** Why a label key is invalid (Kubernetes' qualified-name rule), or undefined when it is valid. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.indexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && !isDns1123Subdomain(prefix)) return `label key prefix "${prefix}" is not a DNS-1123 subdomain`;
  if (name === '' || name.length > 63 || !LABEL_NAME.test(name)) {
    return `invalid label key "${key}": expected at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, with an optional DNS prefix and '/'`;
  }
  return undefined;
}

/** Why a label value is invalid, or undefined when it is valid (empty values are allowed). */
export function labelValueProblem(value: string): string | undefined {
  if (value.length <= 63 && LABEL_NAME.test(value)) return undefined;
  return `invalid label value "${value}": expected at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit`;
}

/** The address family of a literal IP address, or undefined when the string is not one. */
export function ipFamily(value: string): 4 | 6 | undefined {
  const family = isIP(value);
  return family === 4 || family === 6 ? family : undefined;
}

/** An IP prefix such as 10.244.1.0/24 or fd00::/64 (host bits may be set, as Kubernetes and Istio allow). */
export function isCidr(value: string): boolean {
  const slash = value.indexOf('/');
  if (slash < 0) return false;
  const family = ipFamily(value.slice(0, slash));
  const bits = value.slice(slash + 1);
  if (family === undefined || !/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

const DURATION_UNITS_MS: Readonly<Record<string, number>> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001, 'µs': 0.001, ns: 0.000_001 };
const DURATION = /^(?:\d+(?:\.\d+)?(?:h|ms|m|s|us|µs|ns))+$/;
const DURATION_PART = /(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)/g;

/**
 * A duration as Istio accepts it (Go's syntax, a superset of protobuf's "1.5s"): "100ms", "1.5s", "2m",
 * "1h30m". Returns milliseconds, or undefined when the string is not a duration.
 */
export function parseDurationMs(value: string): number | undefined {
  if (!DURATION.test(value)) return undefined;
  let ms = 0;
  for (const [, amount, unit] of value.matchAll(DURATION_PART)) ms += Number(amount) * (DURATION_UNITS_MS[unit!] ?? 0);
  return ms;
}

export type CompiledRegex = { readonly ok: true; readonly regex: RegExp } | { readonly ok: false; readonly problem: string };

// RE2 has no lookaround and no backreferences; JavaScript would accept them and match differently
// from Envoy, so they are refused rather than silently given another meaning.
const RE2_UNSUPPORTED: readonly [RegExp, string][] = [
  [/\(\?<?[=!]/, 'lookaround assertions are not supported by RE2'],
  [/\\[1-9]|\\k</, 'backreferences are not supported by RE2'],
];

/**
 * Compiles an Istio (RE2) regular expression to a JavaScript RegExp. `fullMatch` anchors it at both ends,
 * because Envoy's safe_regex matchers must match the whole value, not a substring.
 */
export function compileRe2(source: string, options: { fullMatch: boolean }): CompiledRegex {
  for (const [pattern, problem] of RE2_UNSUPPORTED) {
    if (pattern.test(source)) return { ok: false, problem };
  }
  // RE2 spells named groups (?P<name>...) and sets flags with a leading (?i) / (?s) / (?m).
  let body = source.replace(/\(\?P</g, '(?<');
  let flags = options.fullMatch ? '' : 'g';
  const leadingFlags = /^\(\?([ims]+)\)/.exec(body);
  if (leadingFlags) {
    flags += leadingFlags[1];
    body = body.slice(leadingFlags[0].length);
  }
  try {
    return { ok: true, regex: new RegExp(options.fullMatch ? `^(?:${body})$` : body, flags) };
  } catch (err) {
    // V8 says "Invalid regular expression: /<pattern>/: <reason>"; the reason is what helps.
    const message = err instanceof Error ? err.message : String(err);
    return { ok: false, problem: message.slice(message.lastIndexOf(': ') + 2).toLowerCase() };
  }
}

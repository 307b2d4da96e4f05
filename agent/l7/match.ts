// Istio's match conditions, evaluated as Envoy evaluates the routes istiod generates from them: within
// one HTTPMatchRequest every field must hold (AND); a route's match blocks are alternatives (OR).

import type { HTTPMatchRequest, L4MatchAttributes, StringMatch } from '../config/istio-networking.js';
import { matchesLabels } from '../state/build.js';
import { parseIpv4Prefix, prefixContains } from '../system/ipv4.js';
import { type HttpRequestAttributes, type RequestSource, joinedHeader, pathOnly, queryParams } from './request.js';

/**
 * One StringMatch against one value. Regexes were compiled anchored (RE2 full-match semantics, as
 * Envoy's safe_regex requires); `ignoreCase` applies to exact and prefix only, as Envoy's
 * case_sensitive=false does, never to a regex.
 */
export function stringMatches(match: StringMatch, value: string, ignoreCase = false): boolean {
  switch (match.kind) {
    case 'exact':
      return ignoreCase ? value.toLowerCase() === match.value.toLowerCase() : value === match.value;
    case 'prefix':
      return ignoreCase ? value.toLowerCase().startsWith(match.value.toLowerCase()) : value.startsWith(match.value);
    case 'regex':
      return match.regex.test(value);
    case 'pathPrefix':
      return pathPrefixMatches(match.value, value);
  }
}

/** Gateway API's PathPrefix: "/abc" covers "/abc", "/abc/" and "/abc/d", never "/abcd"; "/" covers all. */
export function pathPrefixMatches(prefix: string, path: string): boolean {
  if (prefix === '/') return path.startsWith('/');
  return path === prefix || path.startsWith(`${prefix}/`);
}

/** A request parsed once for matching: its path without query, and its query parameters. */
export interface MatchInput {
  readonly request: HttpRequestAttributes;
  readonly path: string;
  /** Parsed on first use: most routes never look at the query. */
  readonly query: () => ReadonlyMap<string, readonly string[]>;
}

export function matchInput(request: HttpRequestAttributes): MatchInput {
  let query: ReadonlyMap<string, readonly string[]> | undefined;
  return { request, path: pathOnly(request.path), query: () => (query ??= queryParams(request.path)) };
}

/** Whether one HTTPMatchRequest holds for a request arriving over the mesh (not a gateway). */
export function httpMatchApplies(match: HTTPMatchRequest, input: MatchInput): boolean {
  const req = input.request;
  // A match scoped to named gateways is not for mesh traffic; "mesh" or no gateways at all is.
  if (match.gateways.length > 0 && !match.gateways.includes('mesh')) return false;
  // The uri matcher sees the path without its query string, as Envoy's path matchers do.
  if (match.uri && !stringMatches(match.uri, input.path, match.ignoreUriCase)) return false;
  if (match.scheme && !stringMatches(match.scheme, req.scheme ?? 'http')) return false;
  if (match.method && !stringMatches(match.method, req.method)) return false;
  if (match.authority && !stringMatches(match.authority, req.authority)) return false;
  if (match.port !== undefined && match.port !== req.port) return false;
  if (!sourceApplies(match.sourceLabels, match.sourceNamespace, req.source)) return false;
  for (const [name, m] of Object.entries(match.headers)) {
    const value = joinedHeader(req.headers, name);
    if (value === undefined || !stringMatches(m, value)) return false;
  }
  // withoutHeaders is Envoy's invert_match: an absent header does not match, so it does not exclude.
  for (const [name, m] of Object.entries(match.withoutHeaders)) {
    const value = joinedHeader(req.headers, name);
    if (value !== undefined && stringMatches(m, value)) return false;
  }
  for (const [name, m] of Object.entries(match.queryParams)) {
    // Envoy's query parameter matcher reads the first value of a repeated parameter.
    const value = input.query().get(name)?.[0];
    if (value === undefined || !stringMatches(m, value)) return false;
  }
  return true;
}

/** The first of a route's match blocks that holds; [] holds for every request (index -1 says "no block"). */
export function firstMatchingBlock(matches: readonly HTTPMatchRequest[], input: MatchInput): { readonly index: number; readonly match?: HTTPMatchRequest } | undefined {
  if (matches.length === 0) return { index: -1 };
  const index = matches.findIndex((m) => httpMatchApplies(m, input));
  return index < 0 ? undefined : { index, match: matches[index]! };
}

/** What a TCP route can match on: the connection, not its bytes. */
export interface ConnectionAttributes {
  /** The Service port the connection was made to. */
  readonly port: number;
  /** The original destination IP (a Service VIP or a pod IP). */
  readonly destinationIp: string;
  readonly source: RequestSource;
}

export function l4MatchApplies(match: L4MatchAttributes, conn: ConnectionAttributes): boolean {
  if (match.gateways.length > 0 && !match.gateways.includes('mesh')) return false;
  if (match.port !== undefined && match.port !== conn.port) return false;
  if (!sourceApplies(match.sourceLabels, match.sourceNamespace, conn.source)) return false;
  if (match.destinationSubnets.length > 0 && !match.destinationSubnets.some((s) => inSubnet(s, conn.destinationIp))) return false;
  return true;
}

function sourceApplies(labels: HTTPMatchRequest['sourceLabels'], namespace: string | undefined, source: RequestSource): boolean {
  if (namespace !== undefined && namespace !== source.namespace) return false;
  return matchesLabels(labels, source.labels);
}

/** An IP or CIDR (IPv4, as the rest of the data path today) containing `ip`. */
function inSubnet(subnet: string, ip: string): boolean {
  if (!subnet.includes('/')) return subnet === ip;
  const prefix = parseIpv4Prefix(subnet);
  return prefix !== undefined && prefixContains(prefix, ip);
}

// The order in which Gateway API route matches are tried, as the API's text orders them. HTTPRoute: an
// Exact path, then the longest PathPrefix, then a method match, then the most header matches, then the
// most query parameter matches; GRPCRoute: the longest service, the longest method, then the most header
// matches. Ties across routes go to the oldest route (creationTimestamp), then the first by
// "{namespace}/{name}"; ties within a route to the first rule, then its first match.
// RegularExpression paths are "implementation-specific": Ambit's choice is to try them after Exact and
// before any PathPrefix (a pattern is usually written to be more specific than a prefix), longer first.

import type { GatewayRouteObject, GrpcRouteMatch, HttpRouteMatch } from './types.js';

/** One match of one rule of one route, with what the order needs to know about where it came from. */
export interface RankedMatch<M> {
  readonly route: GatewayRouteObject;
  readonly ruleIndex: number;
  readonly matchIndex: number;
  readonly match: M;
}

/** Sorts in place and returns the array: the first element is tried first. */
export function sortHttpMatches<T extends RankedMatch<HttpRouteMatch>>(matches: T[]): T[] {
  return matches.sort((a, b) => compareHttp(a.match, b.match) || compareRoutes(a, b));
}

export function sortGrpcMatches<T extends RankedMatch<GrpcRouteMatch | undefined>>(matches: T[]): T[] {
  return matches.sort((a, b) => compareGrpc(a.match, b.match) || compareRoutes(a, b));
}

/** Oldest route first (an object without a timestamp, from a file, ties), then namespace/name, then rule and match order. */
export function compareRoutes(a: Omit<RankedMatch<unknown>, 'match'>, b: Omit<RankedMatch<unknown>, 'match'>): number {
  return (
    compareCreation(a.route, b.route) ||
    routeKey(a.route).localeCompare(routeKey(b.route)) ||
    a.ruleIndex - b.ruleIndex ||
    a.matchIndex - b.matchIndex
  );
}

function compareCreation(a: GatewayRouteObject, b: GatewayRouteObject): number {
  const ta = a.metadata.creationTimestamp;
  const tb = b.metadata.creationTimestamp;
  if (ta === undefined || tb === undefined) return 0;
  return Date.parse(ta) - Date.parse(tb);
}

function routeKey(route: GatewayRouteObject): string {
  return `${route.metadata.namespace}/${route.metadata.name}`;
}

/** Negative when `a` goes first. */
function compareHttp(a: HttpRouteMatch, b: HttpRouteMatch): number {
  return pathRank(b) - pathRank(a) || Number(b.method !== undefined) - Number(a.method !== undefined) || b.headers.length - a.headers.length || b.queryParams.length - a.queryParams.length;
}

// Exact outranks every regex, and every regex outranks every prefix; within a kind, longer wins.
const EXACT = 2_000_000;
const REGEX = 1_000_000;

function pathRank(m: HttpRouteMatch): number {
  switch (m.path.type) {
    case 'Exact':
      return EXACT;
    case 'RegularExpression':
      return REGEX + m.path.value.length;
    case 'PathPrefix':
      return m.path.value === '/' ? 0 : m.path.value.length;
  }
}

function compareGrpc(a: GrpcRouteMatch | undefined, b: GrpcRouteMatch | undefined): number {
  const len = (s: string | undefined): number => s?.length ?? 0;
  return len(b?.method?.service) - len(a?.method?.service) || len(b?.method?.method) - len(a?.method?.method) || (b?.headers.length ?? 0) - (a?.headers.length ?? 0);
}

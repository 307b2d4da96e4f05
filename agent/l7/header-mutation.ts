// Istio's header operations (set, add, remove) on requests and responses, in Envoy's order: the chosen
// destination's operations first, then the route's, each removing before it adds, so that on a
// conflict the route-level `set` is the one left standing.

import type { HeaderManipulation, HeaderOperations } from '../config/istio-networking.js';

/** One level's operations with names lowercased: HTTP header names are case-insensitive. */
export interface HeaderMutation {
  readonly remove: readonly string[];
  /** Replaces every value of the header. */
  readonly set: readonly (readonly [string, string])[];
  /** Appends a value (another header line), keeping what was there. */
  readonly add: readonly (readonly [string, string])[];
}

export function headerMutation(ops: HeaderOperations): HeaderMutation {
  const pairs = (r: Readonly<Record<string, string>>): [string, string][] => Object.entries(r).map(([k, v]) => [k.toLowerCase(), v]);
  return { remove: ops.remove.map((n) => n.toLowerCase()), set: pairs(ops.set), add: pairs(ops.add) };
}

export function isEmptyMutation(m: HeaderMutation): boolean {
  return m.remove.length === 0 && m.set.length === 0 && m.add.length === 0;
}

/** The request and response mutations of a destination then its route, empty levels left out. */
export function mutationsFor(destination: HeaderManipulation | undefined, route: HeaderManipulation): { request: HeaderMutation[]; response: HeaderMutation[] } {
  const levels = destination ? [destination, route] : [route];
  return {
    request: levels.map((l) => headerMutation(l.request)).filter((m) => !isEmptyMutation(m)),
    response: levels.map((l) => headerMutation(l.response)).filter((m) => !isEmptyMutation(m)),
  };
}

/** Applies mutations in order to a header map (lowercase name → values) and returns a new map. */
export function applyHeaderMutations(
  headers: ReadonlyMap<string, readonly string[]>,
  mutations: readonly HeaderMutation[],
): Map<string, string[]> {
  return mutateHeaders(new Map<string, string[]>([...headers].map(([k, v]) => [k, [...v]])), mutations);
}

/**
 * Applies mutations in order to a header map its caller owns, in place (no copy of a request's headers
 * per request when, as mostly, a route has no operations); returns the same map.
 */
export function mutateHeaders(headers: Map<string, string[]>, mutations: readonly HeaderMutation[]): Map<string, string[]> {
  for (const m of mutations) {
    for (const name of m.remove) headers.delete(name);
    for (const [name, value] of m.set) headers.set(name, [value]);
    for (const [name, value] of m.add) headers.set(name, [...(headers.get(name) ?? []), value]);
  }
  return headers;
}

// Consistent-hash load balancing (sticky sessions): the request's hash key (a header, a cookie, the
// source IP or a query parameter, per the DestinationRule), and the two tables Envoy offers to map a
// hash to an endpoint so that endpoints coming and going move as few keys as possible: a ring (ketama)
// and Maglev.

import type { ConsistentHashAlgorithm, ConsistentHashKey } from '../config/istio-networking.js';
import type { LbEndpoint, LbPick, LoadBalancer, PickContext } from './load-balancer.js';
import { type Random, mathRandom, randomIndex } from './random.js';
import { type HttpRequestAttributes, queryParams, requestCookies } from './request.js';

/** A 32-bit hash of a string: FNV-1a over UTF-16 units, finished with murmur3's mixer for avalanche. */
export function hash32(value: string, seed = 0): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < value.length; i++) {
    h ^= value.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A cookie the proxy must set on the response so that the client's next requests stick. */
export interface IssuedCookie {
  readonly name: string;
  readonly value: string;
  readonly path?: string;
  /** undefined for a session cookie (ttl 0s). */
  readonly maxAgeSeconds?: number;
}

export interface RequestHash {
  /** undefined when the request has no value for the key: Envoy then picks at random. */
  readonly hash?: number;
  readonly setCookie?: IssuedCookie;
}

type HashInput = Pick<HttpRequestAttributes, 'headers' | 'path' | 'source'>;

export function requestHash(key: ConsistentHashKey, request: HashInput): RequestHash {
  switch (key.kind) {
    case 'httpHeaderName': {
      const values = request.headers.get(key.name.toLowerCase());
      // Envoy sorts repeated values first, so their order on the wire does not move the request.
      return values && values.length > 0 ? { hash: hash32([...values].sort().join('\u0000')) } : {};
    }
    case 'useSourceIp':
      return request.source.ip !== undefined ? { hash: hash32(request.source.ip) } : {};
    case 'httpQueryParameterName': {
      const value = queryParams(request.path).get(key.name)?.[0];
      return value !== undefined ? { hash: hash32(value) } : {};
    }
    case 'httpCookie': {
      const value = requestCookies(request.headers).get(key.name);
      if (value !== undefined) return { hash: hash32(value) };
      // Without a ttl Envoy never issues the cookie: the request is balanced as if it had no key.
      if (key.ttlMs === undefined) return {};
      // Envoy derives the new cookie from the client's address, so that requests racing on one
      // connection get the same cookie and land on the same endpoint.
      const issued = hash32(`${request.source.ip ?? ''}:${request.source.port ?? 0}`).toString(16).padStart(8, '0');
      const setCookie: IssuedCookie = {
        name: key.name,
        value: issued,
        ...(key.path !== undefined ? { path: key.path } : {}),
        ...(key.ttlMs > 0 ? { maxAgeSeconds: Math.ceil(key.ttlMs / 1000) } : {}),
      };
      return { hash: hash32(issued), setCookie };
    }
  }
}

/** The Set-Cookie header value for an issued cookie, in the shape Envoy writes. */
export function formatSetCookie(cookie: IssuedCookie): string {
  const parts = [`${cookie.name}="${cookie.value}"`];
  if (cookie.maxAgeSeconds !== undefined) parts.push(`Max-Age=${cookie.maxAgeSeconds}`);
  if (cookie.path !== undefined) parts.push(`Path=${cookie.path}`);
  parts.push('HttpOnly');
  return parts.join('; ');
}

/** A table from hash to endpoint key, built for one set of endpoint keys. */
export interface HashTable {
  lookup(hash: number): string;
}

// Envoy's defaults and bounds.
export const DEFAULT_MIN_RING_SIZE = 1024;
const MAX_RING_SIZE = 8 * 1024 * 1024;
export const DEFAULT_MAGLEV_TABLE_SIZE = 65537;

/**
 * A ketama ring. Each endpoint gets the same number of points, hashed from its own key only, so an
 * endpoint joining or leaving moves just the keys on its own points. Envoy gives each endpoint
 * ceil(minimumRingSize / n) points; rounding that up to a power of two keeps the count (and so every
 * other endpoint's points) unchanged as n varies within a power-of-two band, at no cost to the minimum.
 */
export class RingHashTable implements HashTable {
  private readonly points: Uint32Array;
  private readonly owners: string[];

  constructor(keys: readonly string[], minimumRingSize = DEFAULT_MIN_RING_SIZE) {
    const perEndpoint = keys.length === 0 ? 0 : Math.min(nextPowerOfTwo(Math.ceil(minimumRingSize / keys.length)), Math.floor(MAX_RING_SIZE / keys.length));
    const entries: [number, string][] = [];
    for (const key of keys) for (let i = 0; i < perEndpoint; i++) entries.push([hash32(`${key}_${i}`), key]);
    // Ties (equal hashes) are broken by key so that the ring does not depend on the input order.
    entries.sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
    this.points = Uint32Array.from(entries.map((e) => e[0]));
    this.owners = entries.map((e) => e[1]);
  }

  get size(): number {
    return this.points.length;
  }

  lookup(hash: number): string {
    const h = hash >>> 0;
    let lo = 0;
    let hi = this.points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return this.owners[lo === this.points.length ? 0 : lo]!;
  }
}

/**
 * Maglev (Eisenbud et al., NSDI 2016): each endpoint fills a prime-sized table in its own permutation
 * order; lookups are one array read, and a change of endpoints moves close to the minimal share of keys.
 */
export class MaglevTable implements HashTable {
  private readonly table: Int32Array;
  private readonly keys: readonly string[];

  constructor(keys: readonly string[], tableSize = DEFAULT_MAGLEV_TABLE_SIZE) {
    // Sorted, so that the table depends on the set of endpoints and not on their order.
    this.keys = [...keys].sort();
    const m = tableSize;
    this.table = new Int32Array(m).fill(-1);
    const n = this.keys.length;
    if (n === 0) return;
    const offset = this.keys.map((k) => hash32(k, 0x9e3779b9) % m);
    const skip = this.keys.map((k) => (hash32(k, 0x7f4a7c15) % (m - 1)) + 1);
    const position = offset.slice();
    let filled = 0;
    for (;;) {
      for (let i = 0; i < n; i++) {
        let c = position[i]!;
        while (this.table[c]! >= 0) c = (c + skip[i]!) % m;
        this.table[c] = i;
        position[i] = (c + skip[i]!) % m;
        if (++filled === m) return;
      }
    }
  }

  lookup(hash: number): string {
    return this.keys[this.table[(hash >>> 0) % this.table.length]!]!;
  }
}

function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

export class ConsistentHashBalancer implements LoadBalancer {
  readonly algorithm: string;
  private cached?: { readonly signature: string; readonly table: HashTable };

  constructor(
    private readonly hashAlgorithm: ConsistentHashAlgorithm,
    private readonly random: Random = mathRandom,
  ) {
    this.algorithm = hashAlgorithm.kind === 'maglev' ? 'MAGLEV' : 'RING_HASH';
  }

  /** Retries are not steered away from the hashed endpoint: stickiness is the point of this policy. */
  pick(endpoints: readonly LbEndpoint[], ctx?: PickContext): LbPick {
    if (endpoints.length === 0) return { kind: 'empty' };
    if (ctx?.hash === undefined) return { kind: 'endpoint', endpoint: endpoints[randomIndex(this.random, endpoints.length)]! };
    const key = this.tableFor(endpoints).lookup(ctx.hash);
    return { kind: 'endpoint', endpoint: endpoints.find((e) => e.key === key)! };
  }

  /** Tables are rebuilt only when the set of eligible endpoints changes. */
  private tableFor(endpoints: readonly LbEndpoint[]): HashTable {
    const keys = endpoints.map((e) => e.key);
    const signature = [...keys].sort().join(' ');
    if (this.cached?.signature !== signature) {
      const table =
        this.hashAlgorithm.kind === 'maglev'
          ? new MaglevTable(keys, this.hashAlgorithm.tableSize)
          : new RingHashTable(keys, this.hashAlgorithm.minimumRingSize);
      this.cached = { signature, table };
    }
    return this.cached.table;
  }
}

// Host names on the connection path (a ServiceEntry with resolution DNS, its host-name endpoints):
// resolved when a connection needs them through the agent's upstream DNS server, as ztunnel resolves
// hostname workloads with its own resolver, and cached by the answer's TTL within a floor and ceiling.
// c-ares asks over its own sockets, so a lookup never blocks the event loop or takes a libuv thread.

import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { DnsUpstream } from './dns-proxy.js';

/** A TTL below this is raised to it, so that a TTL-0 answer does not put a query on every connection. */
export const MIN_TTL_S = 1;
/** A TTL above this is lowered to it, so that a changed record is seen within five minutes whatever it said. */
export const MAX_TTL_S = 300;
/** How long a name that did not resolve is remembered (RFC 2308's negative caching, at our floor's scale). */
export const NEGATIVE_TTL_S = 5;
/** Names cached at once; past it the entry cached first is dropped. */
export const MAX_CACHED_NAMES = 4096;
/** One try waits this long for the upstream (c-ares retries once more). */
const QUERY_TIMEOUT_MS = 2500;

export type HostResolution =
  | { readonly ok: true; readonly addresses: readonly string[] }
  | { readonly ok: false; readonly reason: string };

interface CacheEntry {
  readonly result: HostResolution;
  readonly expiresAt: number;
}

export interface HostResolverOptions {
  readonly upstream: DnsUpstream;
  /** Milliseconds; tests move it to expire TTLs without waiting. */
  readonly now?: () => number;
}

export class HostResolver {
  readonly #resolver: Resolver;
  readonly #upstream: DnsUpstream;
  readonly #now: () => number;
  /** By family and name (`4 api.example`): the family asked first decides the answer. */
  readonly #cache = new Map<string, CacheEntry>();
  /** Lookups in flight, by family and name: concurrent connections to one name share one query. */
  readonly #pending = new Map<string, Promise<HostResolution>>();

  constructor(options: HostResolverOptions) {
    this.#upstream = options.upstream;
    this.#now = options.now ?? Date.now;
    this.#resolver = new Resolver({ timeout: QUERY_TIMEOUT_MS, tries: 2 });
    this.#resolver.setServers([`${options.upstream.ip}:${options.upstream.port}`]);
  }

  /**
   * The addresses of `hostname` of the family the client dialled (the other family's when it has none,
   * as ztunnel prefers the downstream's family), from the cache while their TTL lasts.
   */
  async resolve(hostname: string, family: 4 | 6 = 4): Promise<HostResolution> {
    const name = hostname.toLowerCase().replace(/\.$/, '');
    if (isIP(name) !== 0) return { ok: true, addresses: [name] };
    const key = `${family} ${name}`;
    const cached = this.#cache.get(key);
    if (cached && cached.expiresAt > this.#now()) return cached.result;
    const pending = this.#pending.get(key);
    if (pending) return pending;
    const lookup = this.#lookup(name, key, family === 6 ? ['AAAA', 'A'] : ['A', 'AAAA']).finally(() => this.#pending.delete(key));
    this.#pending.set(key, lookup);
    return lookup;
  }

  async #lookup(name: string, key: string, [first, second]: readonly ['A' | 'AAAA', 'A' | 'AAAA']): Promise<HostResolution> {
    const answered = await this.#ask(name, first);
    const result = answered.ok && answered.records.length === 0 ? await this.#ask(name, second) : answered;
    const entry: CacheEntry = result.ok && result.records.length > 0
      ? { result: { ok: true, addresses: result.records.map((r) => r.address) }, expiresAt: this.#now() + clampTtl(Math.min(...result.records.map((r) => r.ttl))) * 1000 }
      : { result: { ok: false, reason: result.ok ? `${name} has no A or AAAA record at ${this.#where()}` : result.reason }, expiresAt: this.#now() + NEGATIVE_TTL_S * 1000 };
    this.#cache.delete(key);
    if (this.#cache.size >= MAX_CACHED_NAMES) this.#cache.delete(this.#cache.keys().next().value!);
    this.#cache.set(key, entry);
    return entry.result;
  }

  async #ask(name: string, type: 'A' | 'AAAA'): Promise<{ ok: true; records: readonly { address: string; ttl: number }[] } | { ok: false; reason: string }> {
    try {
      const records = type === 'A' ? await this.#resolver.resolve4(name, { ttl: true }) : await this.#resolver.resolve6(name, { ttl: true });
      return { ok: true, records };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // No such name, or no record of this type: an answer, not a failure of the server.
      if (code === 'ENODATA') return { ok: true, records: [] };
      if (code === 'ENOTFOUND') return { ok: false, reason: `${name} does not exist (NXDOMAIN from ${this.#where()})` };
      return { ok: false, reason: `${name} could not be resolved: ${code ?? (err as Error).message} from ${this.#where()} (is the DNS upstream reachable? see --dns-upstream)` };
    }
  }

  #where(): string {
    return `${this.#upstream.ip}:${this.#upstream.port}`;
  }
}

function clampTtl(ttl: number): number {
  return Math.min(MAX_TTL_S, Math.max(MIN_TTL_S, ttl));
}

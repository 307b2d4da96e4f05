// The key sets RequestAuthentication verifies tokens with: inline `jwks` parsed once per text, and
// `jwksUri` fetched by the agent, cached, and refreshed in the background (Istio's istiod refreshes every
// 20 minutes). A failed refresh keeps the last good keys; without any, a token cannot be verified (401),
// and the fetch is retried no more often than every few seconds so that a client cannot make the agent
// hammer the issuer.

import { type JwksParse, parseJwks } from './jwt.js';

export interface JwksCacheOptions {
  /** How old fetched keys may get before a background refresh. Default 20 min (istiod's). */
  readonly refreshMs?: number;
  /** The least time between two failed fetches of one URI. Default 5 s. */
  readonly retryMs?: number;
  /** A larger JWKS document is refused. Default 256 KiB. */
  readonly maxBytes?: number;
  readonly now?: () => number;
}

interface RemoteEntry {
  keys?: Extract<JwksParse, { ok: true }>;
  fetchedAt: number;
  failedAt?: number;
  lastError?: string;
  inflight?: Promise<void>;
}

export class JwksCache {
  readonly #inline = new Map<string, JwksParse>();
  readonly #remote = new Map<string, RemoteEntry>();
  readonly #refreshMs: number;
  readonly #retryMs: number;
  readonly #maxBytes: number;
  readonly #now: () => number;

  constructor(options: JwksCacheOptions = {}) {
    this.#refreshMs = options.refreshMs ?? 20 * 60_000;
    this.#retryMs = options.retryMs ?? 5000;
    this.#maxBytes = options.maxBytes ?? 256 * 1024;
    this.#now = options.now ?? Date.now;
  }

  /** The keys of a rule: its inline jwks, else its jwksUri's (fetched now if never fetched). */
  async keysFor(rule: { readonly jwks?: string; readonly jwksUri?: string; readonly timeoutMs: number }): Promise<JwksParse> {
    if (rule.jwks !== undefined) return this.#inlineKeys(rule.jwks);
    if (rule.jwksUri === undefined) return { ok: false, message: 'the rule has neither jwks nor jwksUri' };
    const entry = this.#remote.get(rule.jwksUri) ?? { fetchedAt: 0 };
    this.#remote.set(rule.jwksUri, entry);
    const now = this.#now();
    const retryAllowed = entry.failedAt === undefined || now - entry.failedAt >= this.#retryMs;
    if (entry.keys) {
      if (now - entry.fetchedAt >= this.#refreshMs && retryAllowed && !entry.inflight) void this.#fetch(rule.jwksUri, entry, rule.timeoutMs);
      return entry.keys;
    }
    if (!entry.inflight && retryAllowed) this.#fetch(rule.jwksUri, entry, rule.timeoutMs);
    await entry.inflight;
    return entry.keys ?? { ok: false, message: `Jwks remote fetch is failed: ${entry.lastError ?? 'not fetched yet'}` };
  }

  #inlineKeys(text: string): JwksParse {
    let parsed = this.#inline.get(text);
    if (!parsed) {
      parsed = parseJwks(text);
      // Inline sets change only with configuration; a bound keeps a churning config from growing this.
      if (this.#inline.size >= 256) this.#inline.clear();
      this.#inline.set(text, parsed);
    }
    return parsed;
  }

  #fetch(uri: string, entry: RemoteEntry, timeoutMs: number): Promise<void> {
    entry.inflight = (async () => {
      try {
        const response = await fetch(uri, { signal: AbortSignal.timeout(timeoutMs), redirect: 'error' });
        if (response.status !== 200) throw new Error(`${uri} answered ${response.status}`);
        const text = await readBounded(response, this.#maxBytes, uri);
        const parsed = parseJwks(text);
        if (!parsed.ok) throw new Error(`${uri}: ${parsed.message}`);
        entry.keys = parsed;
        entry.fetchedAt = this.#now();
        delete entry.failedAt;
        delete entry.lastError;
      } catch (error) {
        entry.failedAt = this.#now();
        entry.lastError = error instanceof Error ? error.message : String(error);
      } finally {
        delete entry.inflight;
      }
    })();
    return entry.inflight;
  }
}

async function readBounded(response: Response, maxBytes: number, uri: string): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body ?? []) {
    size += chunk.byteLength;
    if (size > maxBytes) throw new Error(`${uri} sent a JWKS larger than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

// Every workload certificate this node holds (ztunnel's SecretManager): fetched on demand or ahead of
// need, one request at a time per identity, renewed at half life, retried with exponential backoff
// while the old certificate stays in use until it expires, and dropped when no pod needs it.

import type { SpiffeId } from '../state/model.js';
import type { Logger } from '../telemetry/log.js';
import type { CaClient } from './ca-client.js';
import { createWorkloadCsr } from './csr.js';
import { type IdentityError, type IdentityResult, fail, messageOf, ok } from './errors.js';
import { parseSpiffeId } from './spiffe.js';
import { type WorkloadCertificate, acceptCaResponse } from './workload-certificate.js';

export interface CertificateManagerOptions {
  readonly caClient: CaClient;
  /** Lifetime asked of the CA. Default: 24 h, ztunnel's SECRET_TTL. */
  readonly ttlSeconds?: number;
  /** Renew when this fraction of the lifetime has passed. Default: 0.5, as ztunnel. */
  readonly renewAtFraction?: number;
  /** Retry after a failed fetch: initialMs doubling up to maxMs, each ± jitter. Default 1 s, 60 s, 0.2. */
  readonly retry?: { readonly initialMs?: number; readonly maxMs?: number; readonly jitter?: number };
  readonly log?: Logger;
}

/** What happened to an identity's certificate; TLS contexts are rebuilt on `issued` and `expired`. */
export type CertificateEvent =
  | { readonly type: 'issued'; readonly identity: SpiffeId; readonly certificate: WorkloadCertificate; readonly previous?: WorkloadCertificate }
  | { readonly type: 'failed'; readonly identity: SpiffeId; readonly error: IdentityError; readonly retryInMs: number; readonly stillValid: boolean }
  | { readonly type: 'expired'; readonly identity: SpiffeId }
  | { readonly type: 'forgotten'; readonly identity: SpiffeId };

export type CertificateListener = (event: CertificateEvent) => void;

/** One row of `ambit zc certificates`, in ztunnel's states. */
export interface CertificateStatus {
  readonly identity: SpiffeId;
  readonly state: 'Initializing' | 'Available' | 'Unavailable';
  readonly certificate?: WorkloadCertificate;
  readonly error?: string;
}

interface Entry {
  readonly identity: SpiffeId;
  certificate?: WorkloadCertificate;
  inflight?: Promise<IdentityResult<WorkloadCertificate>>;
  lastError?: IdentityError;
  failures: number;
  /** The next renewal or retry. */
  timer?: NodeJS.Timeout;
  expiryTimer?: NodeJS.Timeout;
}

// setTimeout fires at once for delays above 2^31-1 ms (~24.8 days); longer waits are done in steps.
const MAX_TIMER_MS = 2 ** 31 - 1;

export class WorkloadCertificateManager {
  readonly #ca: CaClient;
  readonly #ttlSeconds: number;
  readonly #renewAt: number;
  readonly #retry: { readonly initialMs: number; readonly maxMs: number; readonly jitter: number };
  readonly #log: Logger | undefined;
  readonly #entries = new Map<SpiffeId, Entry>();
  readonly #listeners = new Set<CertificateListener>();
  #closed = false;

  constructor(options: CertificateManagerOptions) {
    this.#ca = options.caClient;
    this.#ttlSeconds = options.ttlSeconds ?? 24 * 3600;
    this.#renewAt = options.renewAtFraction ?? 0.5;
    this.#retry = { initialMs: options.retry?.initialMs ?? 1000, maxMs: options.retry?.maxMs ?? 60_000, jitter: options.retry?.jitter ?? 0.2 };
    this.#log = options.log;
  }

  /**
   * The identity's certificate: the cached one while valid, else the outcome of the request in flight
   * (concurrent callers share it), else a new request. While a retry is pending after a failure, the
   * last error comes back at once: a connection should fail fast, not wait out the backoff.
   */
  fetch(identity: SpiffeId): Promise<IdentityResult<WorkloadCertificate>> {
    if (this.#closed) return Promise.resolve(fail('closed', 'the certificate manager is closed'));
    const parsed = parseSpiffeId(identity);
    if (!parsed.ok) return Promise.resolve(parsed);
    let entry = this.#entries.get(identity);
    if (!entry) {
      entry = { identity, failures: 0 };
      this.#entries.set(identity, entry);
    }
    if (entry.certificate) return Promise.resolve(ok(entry.certificate));
    if (entry.inflight) return entry.inflight;
    if (entry.lastError) return Promise.resolve({ ok: false, error: entry.lastError });
    return this.#request(entry);
  }

  /** The valid certificate for `identity`, if there is one; never waits. */
  current(identity: SpiffeId): WorkloadCertificate | undefined {
    return this.#entries.get(identity)?.certificate;
  }

  /** The identities this node needs now: fetches the new ones ahead of their first connection, forgets the rest. */
  track(identities: Iterable<SpiffeId>): void {
    const wanted = new Set(identities);
    for (const identity of [...this.#entries.keys()]) if (!wanted.has(identity)) this.forget(identity);
    for (const identity of wanted) if (!this.#entries.has(identity)) void this.fetch(identity);
  }

  /** Stops renewing `identity` and drops its certificate (its last pod left the node). */
  forget(identity: SpiffeId): void {
    const entry = this.#entries.get(identity);
    if (!entry) return;
    this.#entries.delete(identity);
    clearTimeout(entry.timer);
    clearTimeout(entry.expiryTimer);
    this.#emit({ type: 'forgotten', identity });
  }

  /** Calls `listener` for every event from now on; returns the function that unsubscribes it. */
  subscribe(listener: CertificateListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  status(): CertificateStatus[] {
    return [...this.#entries.values()].map((entry) => {
      if (entry.certificate) return { identity: entry.identity, state: 'Available', certificate: entry.certificate };
      if (entry.lastError) return { identity: entry.identity, state: 'Unavailable', error: entry.lastError.message };
      return { identity: entry.identity, state: 'Initializing' };
    });
  }

  /** Stops every timer; requests in flight finish but change nothing. */
  close(): void {
    this.#closed = true;
    for (const entry of this.#entries.values()) {
      clearTimeout(entry.timer);
      clearTimeout(entry.expiryTimer);
    }
    this.#entries.clear();
    this.#listeners.clear();
  }

  #request(entry: Entry): Promise<IdentityResult<WorkloadCertificate>> {
    if (entry.inflight) return entry.inflight;
    const attempt = async (): Promise<IdentityResult<WorkloadCertificate>> => {
      let result: IdentityResult<WorkloadCertificate>;
      try {
        const csr = await createWorkloadCsr(entry.identity);
        const answer = await this.#ca.requestCertificate(csr.csrPem, entry.identity, this.#ttlSeconds);
        result = answer.ok ? acceptCaResponse(entry.identity, csr.keyPem, answer.value) : answer;
      } catch (err) {
        // A CaClient reports failures as results; a throw is a bug there, and still only a failed fetch here.
        result = fail('ca-unavailable', `requesting a certificate for ${entry.identity} failed: ${messageOf(err)}`);
      }
      entry.inflight = undefined;
      if (this.#entries.get(entry.identity) !== entry) return result; // forgotten or closed meanwhile
      if (result.ok) this.#install(entry, result.value);
      else this.#failed(entry, result.error);
      return result;
    };
    entry.inflight = attempt();
    return entry.inflight;
  }

  #install(entry: Entry, certificate: WorkloadCertificate): void {
    const previous = entry.certificate;
    entry.certificate = certificate;
    entry.failures = 0;
    entry.lastError = undefined;
    // Count the lifetime from when we got it: CAs backdate NotBefore for clock skew, which would
    // otherwise pull the renewal early (or into the past for short lifetimes).
    const start = Math.max(certificate.notBefore.getTime(), Date.now());
    const end = certificate.notAfter.getTime();
    this.#schedule(entry, 'timer', start + (end - start) * this.#renewAt, () => void this.#request(entry));
    this.#schedule(entry, 'expiryTimer', end, () => this.#expire(entry, certificate));
    this.#log?.info({ identity: entry.identity, serial: certificate.serialNumber, notAfter: certificate.notAfter.toISOString() }, `${previous ? 'renewed' : 'issued'} certificate for ${entry.identity}`);
    this.#emit({ type: 'issued', identity: entry.identity, certificate, ...(previous ? { previous } : {}) });
  }

  #failed(entry: Entry, error: IdentityError): void {
    entry.failures++;
    entry.lastError = error;
    const { initialMs, maxMs, jitter } = this.#retry;
    const base = Math.min(initialMs * 2 ** (entry.failures - 1), maxMs);
    const retryInMs = Math.round(base * (1 + jitter * (2 * Math.random() - 1)));
    this.#schedule(entry, 'timer', Date.now() + retryInMs, () => void this.#request(entry));
    const stillValid = entry.certificate !== undefined;
    this.#log?.warn(
      { identity: entry.identity, reason: error.reason, attempt: entry.failures, retryInMs },
      `cannot get a certificate for ${entry.identity}: ${error.message}; retrying in ${retryInMs} ms` +
        (stillValid ? ` (the current one stays in use until ${entry.certificate!.notAfter.toISOString()})` : ''),
    );
    this.#emit({ type: 'failed', identity: entry.identity, error, retryInMs, stillValid });
  }

  #expire(entry: Entry, certificate: WorkloadCertificate): void {
    if (entry.certificate !== certificate) return;
    entry.certificate = undefined;
    this.#log?.error({ identity: entry.identity }, `the certificate for ${entry.identity} expired before it could be renewed; connections for it fail until the CA answers`);
    this.#emit({ type: 'expired', identity: entry.identity });
  }

  #schedule(entry: Entry, slot: 'timer' | 'expiryTimer', at: number, run: () => void): void {
    clearTimeout(entry[slot]);
    const wait = at - Date.now();
    const timer = wait > MAX_TIMER_MS ? setTimeout(() => this.#schedule(entry, slot, at, run), MAX_TIMER_MS) : setTimeout(run, Math.max(0, wait));
    // Certificates alone never keep the process alive: close() or exit must not wait for a renewal.
    timer.unref();
    entry[slot] = timer;
  }

  #emit(event: CertificateEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (err) {
        this.#log?.error({ err, identity: event.identity }, `a certificate ${event.type} listener failed: ${messageOf(err)}`);
      }
    }
  }
}

// The recent denials an agent decided, kept so that `ambit explain --last-denied` can explain each one:
// a bounded ring (the oldest is dropped), holding what the destination side judged (source address and
// proven identity, the pod and port, and for an HTTP request its method, path, authority and headers,
// themselves bounded) and the reason the data path gave at the time.

import type { SpiffeId } from '../state/model.js';
import type { Address } from '../tunnel/destination.js';
import type { AdmissionQuery, ExplainHttpRequest } from './admission.js';

export interface Denial {
  /** ISO time of the decision. */
  readonly at: string;
  /** What was denied: a connection (HBONE, plaintext or same node; by its identity or none) or one HTTP request. */
  readonly path: 'connection' | 'http';
  readonly sourceIp: string;
  readonly sourceIdentity?: SpiffeId;
  readonly destination: Address;
  readonly http?: ExplainHttpRequest;
  /** The data path's own words (its access-log reason or response details). */
  readonly reason: string;
}

export type DenialInput = Omit<Denial, 'at'>;

/** Receives denials where they are decided; the data path holds this, not the ring. */
export interface DenialRecorder {
  record(denial: DenialInput): void;
}

export const DENIAL_RING_SIZE = 64;
const MAX_HEADERS = 32;
const MAX_VALUE = 256;

export class DenialRing implements DenialRecorder {
  readonly #entries: Denial[] = [];

  constructor(private readonly size = DENIAL_RING_SIZE, private readonly now: () => Date = () => new Date()) {}

  record(denial: DenialInput): void {
    const http = denial.http ? boundedHttp(denial.http) : undefined;
    this.#entries.push({ at: this.now().toISOString(), ...denial, ...(http ? { http } : {}) });
    if (this.#entries.length > this.size) this.#entries.splice(0, this.#entries.length - this.size);
  }

  /** Newest first. */
  list(): readonly Denial[] {
    return [...this.#entries].reverse();
  }
}

/** What the destination side is asked to explain a recorded denial again. */
export function admissionQueryOf(denial: Denial): AdmissionQuery {
  return {
    sourceIp: denial.sourceIp,
    ...(denial.sourceIdentity ? { sourceIdentity: denial.sourceIdentity } : {}),
    destination: denial.destination,
    ...(denial.http ? { http: denial.http } : {}),
  };
}

/** A client chooses how many headers and how long: the ring keeps a bounded copy. */
function boundedHttp(http: ExplainHttpRequest): ExplainHttpRequest {
  const cut = (v: string): string => (v.length > MAX_VALUE ? v.slice(0, MAX_VALUE) : v);
  return { method: cut(http.method), path: cut(http.path), authority: cut(http.authority), headers: http.headers.slice(0, MAX_HEADERS).map(([n, v]) => [cut(n), cut(v)] as const) };
}

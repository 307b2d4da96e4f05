// TLS state per workload identity (the engine's context), built once and reused by every connection,
// rebuilt when the certificate manager hands out a renewed certificate.

import type { CertificateListener } from '../../identity/certificate-manager.js';
import type { IdentityResult } from '../../identity/errors.js';
import type { WorkloadCertificate } from '../../identity/workload-certificate.js';
import type { SpiffeId } from '../../state/model.js';
import { type HboneResult, fail, messageOf, ok } from './errors.js';

/** What the transport needs of the certificate manager (WorkloadCertificateManager fits). */
export interface CertificateSource {
  fetch(identity: SpiffeId): Promise<IdentityResult<WorkloadCertificate>>;
  subscribe(listener: CertificateListener): () => void;
}

export interface IdentityTls<T> {
  readonly certificate: WorkloadCertificate;
  readonly value: T;
}

/** Whatever `build` makes from an identity's certificate, cached until that certificate changes. */
export class IdentityTlsCache<T> {
  readonly #source: CertificateSource;
  readonly #build: (certificate: WorkloadCertificate) => T;
  readonly #entries = new Map<SpiffeId, IdentityTls<T>>();
  readonly #unsubscribe: () => void;

  constructor(source: CertificateSource, build: (certificate: WorkloadCertificate) => T) {
    this.#source = source;
    this.#build = build;
    // Drop on every change; the next connection rebuilds from whatever the manager holds then.
    this.#unsubscribe = source.subscribe((event) => this.#entries.delete(event.identity));
  }

  async get(identity: SpiffeId): Promise<HboneResult<IdentityTls<T>>> {
    const fetched = await this.#source.fetch(identity);
    if (!fetched.ok) return fail('no-certificate', `no certificate for ${identity}: ${fetched.error.message}`);
    const cached = this.#entries.get(identity);
    // The manager returns the same object until it renews, so the object is the version.
    if (cached?.certificate === fetched.value) return ok(cached);
    try {
      const entry = { certificate: fetched.value, value: this.#build(fetched.value) };
      this.#entries.set(identity, entry);
      return ok(entry);
    } catch (err) {
      return fail('no-certificate', `the certificate for ${identity} cannot be loaded into TLS: ${messageOf(err)}`);
    }
  }

  close(): void {
    this.#unsubscribe();
    this.#entries.clear();
  }
}

// TLS state per workload identity, built once and reused by every connection (building a context costs
// about 3 ms), rebuilt when the certificate manager hands out a renewed certificate.

import { type SecureContext, type SecureContextOptions, createSecureContext } from 'node:tls';
import type { CertificateListener } from '../../identity/certificate-manager.js';
import type { IdentityResult } from '../../identity/errors.js';
import type { WorkloadCertificate } from '../../identity/workload-certificate.js';
import type { SpiffeId } from '../../state/model.js';
import { type HboneResult, fail, messageOf, ok } from './errors.js';
import { HBONE_TLS } from './settings.js';

/** What the transport needs of the certificate manager (WorkloadCertificateManager fits). */
export interface CertificateSource {
  fetch(identity: SpiffeId): Promise<IdentityResult<WorkloadCertificate>>;
  subscribe(listener: CertificateListener): () => void;
}

export interface IdentityTls<T> {
  readonly certificate: WorkloadCertificate;
  readonly value: T;
}

/** Key, chain and trust bundle with ztunnel's TLS versions and suites. */
export function secureContextOptions(certificate: WorkloadCertificate): SecureContextOptions {
  const { key, cert, ca } = certificate.tls;
  return { key, cert, ca, minVersion: HBONE_TLS.minVersion, maxVersion: HBONE_TLS.maxVersion, ciphers: HBONE_TLS.ciphers };
}

export function clientSecureContext(certificate: WorkloadCertificate): SecureContext {
  return createSecureContext(secureContextOptions(certificate));
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

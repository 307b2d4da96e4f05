// The certificate `ambit ca` serves gRPC with: issued by the CA's own signing key for the names agents
// dial (its Service's DNS names, or an address), chained to the mesh root the agents already trust,
// and renewed at half life in place, as istiod serves 15012 with a certificate from its own CA.

import * as grpc from '@grpc/grpc-js';
import { X509Certificate, webcrypto } from 'node:crypto';
import type { SecureContextOptions } from 'node:tls';
import type { EmbeddedCa } from '../identity/embedded-ca.js';
import { type IdentityResult, ok } from '../identity/errors.js';
import { generateP256KeyPair, privateKeyToPem } from '../identity/pki.js';
import type { Logger } from '../telemetry/log.js';

/** grpc-js server credentials whose key and certificate can be swapped without rebinding. */
class RotatingServerCredentials extends grpc.ServerCredentials {
  constructor(context: SecureContextOptions) {
    super({}, context);
  }

  rotate(context: SecureContextOptions): void {
    this.updateSecureContextOptions(context);
  }

  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

export interface ServingCertificateOptions {
  readonly ca: EmbeddedCa;
  /** DNS names and IP addresses agents use to reach the CA. */
  readonly names: readonly string[];
  /** Lifetime of each serving certificate. */
  readonly ttlSeconds: number;
  readonly log: Logger;
}

export class ServingCertificate {
  readonly credentials: grpc.ServerCredentials;
  readonly #credentials: RotatingServerCredentials;
  readonly #options: ServingCertificateOptions;
  #timer: NodeJS.Timeout | undefined;

  /** Issues the first certificate; the CA cannot serve without one. */
  static async issue(options: ServingCertificateOptions): Promise<IdentityResult<ServingCertificate>> {
    const first = await issueContext(options);
    return first.ok ? ok(new ServingCertificate(options, first.value)) : first;
  }

  private constructor(options: ServingCertificateOptions, first: { context: SecureContextOptions; notAfter: Date }) {
    this.#options = options;
    this.#credentials = new RotatingServerCredentials(first.context);
    this.credentials = this.#credentials;
    this.#scheduleRenewal(first.notAfter);
  }

  stop(): void {
    clearTimeout(this.#timer);
  }

  #scheduleRenewal(notAfter: Date, retry = false): void {
    // Half the remaining life; after a failure, again within a minute.
    const half = Math.max(1000, (notAfter.getTime() - Date.now()) / 2);
    const wait = retry ? Math.min(60_000, half) : half;
    this.#timer = setTimeout(() => void this.#renew(notAfter), Math.min(wait, 2 ** 31 - 1));
    this.#timer.unref();
  }

  async #renew(previousNotAfter: Date): Promise<void> {
    const next = await issueContext(this.#options);
    if (!next.ok) {
      this.#options.log.error({ err: next.error }, `renewing the CA's serving certificate failed: ${next.error.message}; the current one expires ${previousNotAfter.toISOString()}`);
      this.#scheduleRenewal(previousNotAfter, true);
      return;
    }
    this.#credentials.rotate(next.value.context);
    this.#options.log.info({ notAfter: next.value.notAfter.toISOString() }, 'renewed the serving certificate');
    this.#scheduleRenewal(next.value.notAfter);
  }
}

async function issueContext(options: ServingCertificateOptions): Promise<IdentityResult<{ context: SecureContextOptions; notAfter: Date }>> {
  const keys = await generateP256KeyPair();
  const spki = await webcrypto.subtle.exportKey('spki', keys.publicKey);
  const chain = await options.ca.issueServingCertificate(spki, options.names, options.ttlSeconds);
  if (!chain.ok) return chain;
  const [leaf, ...rest] = chain.value;
  // Clients have the roots; send the leaf and any intermediates, as a TLS server should.
  const intermediates = rest.slice(0, rest.length - options.ca.rootsPem.length);
  const notAfter = new Date(new X509Certificate(leaf!).validTo);
  return ok({ context: { key: await privateKeyToPem(keys.privateKey), cert: [leaf!, ...intermediates].join('') }, notAfter });
}

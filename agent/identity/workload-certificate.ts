// A workload's certificate as the data path uses it: the private key, the chain to present, the roots
// to trust, ready for node:tls. Built from a CA's answer only after checking that the answer is a
// chain to a root, for the requested identity, for our key.

import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { SpiffeId } from '../state/model.js';
import { verifyChain } from './chain.js';
import { type IdentityResult, fail, messageOf, ok } from './errors.js';
import { splitPemCertificates } from './pki.js';
import { spiffeIdOfCertificate } from './san.js';

/** The fields of tls.SecureContextOptions that carry a workload's identity and trust. */
export interface WorkloadTlsMaterial {
  readonly key: string;
  /** Leaf first, then intermediates: what node:tls sends as the certificate chain. */
  readonly cert: string;
  /** The trust bundle in one PEM text (node:tls takes several certificates in one string). */
  readonly ca: string;
}

export interface WorkloadCertificate {
  readonly identity: SpiffeId;
  readonly keyPem: string;
  readonly leafPem: string;
  readonly intermediatesPem: readonly string[];
  /** The trust bundle: roots that peers' chains must lead to. */
  readonly rootsPem: readonly string[];
  readonly serialNumber: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly tls: WorkloadTlsMaterial;
}

/** Checks a CA's answer (leaf first, roots last) against what was asked, and assembles the certificate. */
export function acceptCaResponse(identity: SpiffeId, keyPem: string, chainPem: readonly string[]): IdentityResult<WorkloadCertificate> {
  const bad = (why: string): IdentityResult<WorkloadCertificate> => fail('invalid-response', `the CA's answer for ${identity} ${why}`);
  let certs: X509Certificate[];
  try {
    certs = chainPem.flatMap(splitPemCertificates).map((pem) => new X509Certificate(pem));
  } catch (err) {
    return bad(`holds a certificate that cannot be parsed (${messageOf(err)})`);
  }
  const leaf = certs[0];
  if (!leaf || certs.length < 2) return bad(`holds ${certs.length} certificates; expected the leaf, any intermediates and the root`);
  const named = spiffeIdOfCertificate(leaf);
  if (!named.ok) return bad(`has an unusable leaf: ${named.error.message}`);
  if (named.value !== identity) return bad(`is a certificate for ${named.value}, not for the identity requested`);
  if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) return bad('certifies a different key than the one in our CSR');

  // Istio puts the root last; with several roots (during a root rotation) all trailing self-signed ones.
  let firstRoot = certs.length;
  while (firstRoot > 1 && isSelfSigned(certs[firstRoot - 1]!)) firstRoot--;
  const intermediates = certs.slice(1, firstRoot);
  const roots = certs.slice(firstRoot);
  const verified = verifyChain(leaf, intermediates, roots);
  if (!verified.ok) return bad(`is not a valid chain: ${verified.problem}`);

  const leafPem = leaf.toString();
  const intermediatesPem = intermediates.map((cert) => cert.toString());
  const rootsPem = roots.map((cert) => cert.toString());
  return ok({
    identity,
    keyPem,
    leafPem,
    intermediatesPem,
    rootsPem,
    serialNumber: leaf.serialNumber,
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
    tls: { key: keyPem, cert: [leafPem, ...intermediatesPem].join(''), ca: rootsPem.join('') },
  });
}

function isSelfSigned(cert: X509Certificate): boolean {
  return cert.ca && cert.checkIssued(cert) && cert.verify(cert.publicKey);
}

// Certificate path building over node:crypto: from a certificate through untrusted intermediates to
// a trusted root, checking each signature, each validity window and that every issuer is a CA.
// Used to validate plugged-in CA files and, after node:tls's own check, a peer's chain.

import { X509Certificate } from 'node:crypto';

export type ChainOutcome = { readonly ok: true; readonly path: readonly X509Certificate[] } | { readonly ok: false; readonly problem: string };

// Istio meshes use one or two intermediates; anything deeper is a mistake or an attack on our CPU.
const MAX_PATH_LENGTH = 8;

/**
 * Finds a path `cert → … → root` and returns it leaf first, root last (a cert that is itself one of
 * the roots is its own path). What this does not check, OpenSSL does during the handshake: path length
 * and name constraints, policies, revocation.
 */
export function verifyChain(
  cert: X509Certificate,
  intermediates: readonly X509Certificate[],
  roots: readonly X509Certificate[],
  now: Date = new Date(),
): ChainOutcome {
  if (roots.length === 0) return { ok: false, problem: 'the trust bundle holds no root certificate' };
  const path = [cert];
  let current = cert;
  const expired = validityProblem(current, now);
  if (expired) return { ok: false, problem: expired };
  if (roots.some((root) => sameCertificate(root, current))) return { ok: true, path };
  while (path.length <= MAX_PATH_LENGTH) {
    const anchor = roots.find((root) => issued(root, current));
    if (anchor) {
      const problem = issuerProblem(anchor, current, now);
      return problem ? { ok: false, problem } : { ok: true, path: [...path, anchor] };
    }
    if (issued(current, current)) {
      return { ok: false, problem: `the chain ends at ${describeCertificate(current)}, a root that is not among the trusted roots` };
    }
    const next = intermediates.find((candidate) => !path.some((seen) => sameCertificate(seen, candidate)) && issued(candidate, current));
    if (!next) {
      return {
        ok: false,
        problem: `nothing in the chain or the trust bundle signed ${describeCertificate(current)} (issuer ${oneLine(current.issuer)})`,
      };
    }
    const problem = issuerProblem(next, current, now);
    if (problem) return { ok: false, problem };
    path.push(next);
    current = next;
  }
  return { ok: false, problem: `no root reached within ${MAX_PATH_LENGTH} certificates` };
}

/** A name for a certificate in messages: its subject, or its SANs when the subject is empty (workloads). */
export function describeCertificate(cert: X509Certificate): string {
  const subject = cert.subject ? oneLine(cert.subject) : '';
  if (subject) return `"${subject}"`;
  return cert.subjectAltName ? `the certificate for ${cert.subjectAltName}` : `the certificate with serial ${cert.serialNumber}`;
}

export function sameCertificate(a: X509Certificate, b: X509Certificate): boolean {
  return a.raw.equals(b.raw);
}

function issued(issuer: X509Certificate, cert: X509Certificate): boolean {
  // checkIssued compares names and key identifiers; verify proves the signature.
  return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
}

function issuerProblem(issuer: X509Certificate, cert: X509Certificate, now: Date): string | undefined {
  if (!issuer.ca) return `${describeCertificate(issuer)} signed ${describeCertificate(cert)} but is not a CA certificate (basicConstraints CA:TRUE is missing)`;
  return validityProblem(issuer, now);
}

function validityProblem(cert: X509Certificate, now: Date): string | undefined {
  if (now < new Date(cert.validFrom)) return `${describeCertificate(cert)} is not valid before ${cert.validFrom} (check the clocks)`;
  if (now > new Date(cert.validTo)) return `${describeCertificate(cert)} expired on ${cert.validTo}`;
  return undefined;
}

function oneLine(name: string): string {
  return name.trim().split('\n').join(', ');
}

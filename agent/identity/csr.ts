// Certificate signing requests for workload identities: the requester's side (a fresh P-256 key and a
// CSR naming one SPIFFE id, as ztunnel sends to istiod) and the CA's side (prove the CSR is well
// signed and asks for exactly the identity requested, nothing more).

import { createPublicKey } from 'node:crypto';
import type { SpiffeId } from '../state/model.js';
import { type IdentityResult, fail, messageOf, ok } from './errors.js';
import { ECDSA_P256, generateP256KeyPair, privateKeyToPem, x509 } from './pki.js';

export interface WorkloadCsr {
  readonly csrPem: string;
  /** PKCS#8 PEM of the key the CSR was made with; it never leaves the node. */
  readonly keyPem: string;
}

/** A CSR with an empty subject and a single URI SAN, the shape Istio's CA expects. */
export async function createWorkloadCsr(identity: SpiffeId): Promise<WorkloadCsr> {
  const keys = await generateP256KeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: ECDSA_P256,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: identity }], true)],
  });
  return { csrPem: csr.toString('pem'), keyPem: await privateKeyToPem(keys.privateKey) };
}

export interface VerifiedCsr {
  /** DER SubjectPublicKeyInfo of the requester's key: the only thing the CA takes from the CSR. */
  readonly publicKeySpki: ArrayBuffer;
}

// A P-256 CSR with one SAN is under 1 KiB; refuse to spend parser time on anything far larger.
const MAX_CSR_PEM_LENGTH = 16 * 1024;
const SUBJECT_ALT_NAME_OID = '2.5.29.17';

export async function verifyWorkloadCsr(csrPem: string, identity: SpiffeId): Promise<IdentityResult<VerifiedCsr>> {
  const bad = (why: string): IdentityResult<VerifiedCsr> => fail('invalid-csr', `the CSR for ${identity} ${why}`);
  if (csrPem.length > MAX_CSR_PEM_LENGTH) return bad(`is ${csrPem.length} characters long; a workload CSR is under ${MAX_CSR_PEM_LENGTH}`);
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    return bad(`is not a PEM PKCS#10 request (${messageOf(err)})`);
  }
  if (!(await csr.verify().catch(() => false))) return bad('has a signature that does not verify with its own public key');

  const spki = csr.publicKey.rawData;
  const key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  // Workload keys are always P-256 here; any other key means a requester we did not write.
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    return bad(`carries a ${key.asymmetricKeyType ?? 'unknown'} ${key.asymmetricKeyDetails?.namedCurve ?? ''} key; workload keys must be ECDSA P-256`);
  }

  // getExtension(SubjectAlternativeNameExtension) returns null on parsed CSRs; the OID lookup works.
  const extensions = csr.extensions.filter((ext) => ext.type === SUBJECT_ALT_NAME_OID);
  if (extensions.length !== 1) return bad(`has ${extensions.length} subjectAltName extensions; it must have exactly one`);
  let names: readonly x509.GeneralName[];
  try {
    names = new x509.SubjectAlternativeNameExtension(extensions[0]!.rawData).names.items;
  } catch (err) {
    return bad(`has an unreadable subjectAltName (${messageOf(err)})`);
  }
  const listed = names.map((n) => `${n.type}:${n.value}`).join(', ');
  if (names.length !== 1 || names[0]!.type !== 'url' || names[0]!.value !== identity) {
    return bad(`must name exactly that one URI and nothing else, but names ${listed || 'nothing'}`);
  }
  return ok({ publicKeySpki: spki });
}

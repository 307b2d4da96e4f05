// The crypto plumbing every certificate operation shares: @peculiar/x509 bound to Node's WebCrypto,
// ECDSA P-256 key pairs (ztunnel's choice for workloads), and PEM conversions of keys and certificates.

// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata polyfill
// loaded before the library itself.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { type KeyObject, createPrivateKey, webcrypto } from 'node:crypto';
import { type IdentityResult, fail, messageOf, ok } from './errors.js';

x509.cryptoProvider.set(webcrypto);

export { x509 };
export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;

/** ECDSA over P-256 with SHA-256: the key and signature algorithm of every workload key and CSR. */
export const ECDSA_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** A fresh, extractable P-256 key pair (extractable because the TLS stack needs the private key as PEM). */
export async function generateP256KeyPair(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(ECDSA_P256, true, ['sign', 'verify']);
}

export async function privateKeyToPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return toPem('PRIVATE KEY', der);
}

/** A CA signing key, with the algorithm its signatures use and the node:crypto view used for checks. */
export interface SigningKey {
  readonly cryptoKey: CryptoKey;
  readonly signingAlgorithm: { readonly name: string; readonly hash: string };
  readonly keyObject: KeyObject;
}

/**
 * Reads a CA private key in any PEM form OpenSSL writes (PKCS#8, SEC1 "EC PRIVATE KEY", PKCS#1 "RSA
 * PRIVATE KEY"). RSA is accepted because operators often plug in CAs made with Istio's RSA tooling;
 * workload keys stay P-256 either way.
 */
export async function importSigningKey(pem: string): Promise<IdentityResult<SigningKey>> {
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey(pem);
  } catch (err) {
    return fail('ca-files', `not a readable unencrypted PEM private key (${messageOf(err)})`);
  }
  const der = keyObject.export({ type: 'pkcs8', format: 'der' });
  const type = keyObject.asymmetricKeyType;
  const curve = keyObject.asymmetricKeyDetails?.namedCurve;
  let importAlgorithm: webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams;
  let signingAlgorithm: SigningKey['signingAlgorithm'];
  if (type === 'ec' && (curve === 'prime256v1' || curve === 'secp384r1')) {
    const p384 = curve === 'secp384r1';
    importAlgorithm = { name: 'ECDSA', namedCurve: p384 ? 'P-384' : 'P-256' };
    signingAlgorithm = { name: 'ECDSA', hash: p384 ? 'SHA-384' : 'SHA-256' };
  } else if (type === 'rsa') {
    signingAlgorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    importAlgorithm = signingAlgorithm;
  } else {
    return fail('ca-files', `unsupported key type ${type ?? 'unknown'}${curve ? ` (${curve})` : ''}; use an ECDSA P-256 or P-384 key, or RSA`);
  }
  const cryptoKey = await webcrypto.subtle.importKey('pkcs8', der, importAlgorithm, false, ['sign']);
  return ok({ cryptoKey, signingAlgorithm, keyObject });
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----/g;

/** Every certificate in a PEM text, in order, each normalised to end with a newline. */
export function splitPemCertificates(text: string): string[] {
  return (text.match(PEM_CERTIFICATE) ?? []).map((block) => `${block}\n`);
}

function toPem(label: string, der: ArrayBuffer | Uint8Array): string {
  const base64 = Buffer.from(der instanceof ArrayBuffer ? new Uint8Array(der) : der).toString('base64');
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

// Test issuers: RSA and EC key pairs, their JWKS, and tokens signed with node:crypto, written the way
// an identity provider writes them (compact JWS, base64url without padding).

import { type KeyObject, createHmac, generateKeyPairSync, sign } from 'node:crypto';

export interface TestIssuer {
  readonly alg: 'RS256' | 'ES256';
  readonly kid: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** The JWKS document (JSON text) holding the public key. */
  readonly jwks: string;
}

export function testIssuer(alg: 'RS256' | 'ES256', kid: string): TestIssuer {
  const { privateKey, publicKey } = alg === 'RS256' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
  return { alg, kid, privateKey, publicKey, jwks: JSON.stringify({ keys: [jwk] }) };
}

const b64 = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** A token signed by the issuer's key; `header` overrides (alg, kid) go into the signed header. */
export function signToken(issuer: TestIssuer, claims: Record<string, unknown>, header: Record<string, unknown> = {}): string {
  const head = b64({ alg: issuer.alg, typ: 'JWT', kid: issuer.kid, ...header });
  const input = `${head}.${b64(claims)}`;
  const signature = issuer.alg === 'RS256' ? sign('sha256', Buffer.from(input), issuer.privateKey) : sign('sha256', Buffer.from(input), { key: issuer.privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${signature.toString('base64url')}`;
}

/** The alg-confusion attack: HS256 with the issuer's RSA public key (PEM) as the HMAC secret. */
export function hmacWithPublicKey(issuer: TestIssuer, claims: Record<string, unknown>): string {
  const input = `${b64({ alg: 'HS256', typ: 'JWT', kid: issuer.kid })}.${b64(claims)}`;
  const secret = issuer.publicKey.export({ format: 'pem', type: 'spki' });
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

/** An unsigned token (alg none), as the classic attack sends it. */
export function unsignedToken(claims: Record<string, unknown>, alg = 'none'): string {
  return `${b64({ alg, typ: 'JWT' })}.${b64(claims)}.`;
}

export const nowSeconds = (): number => Math.floor(Date.now() / 1000);

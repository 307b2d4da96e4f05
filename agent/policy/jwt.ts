// JSON Web Tokens as RequestAuthentication validates them: a compact JWS from an untrusted client is
// decoded within fixed bounds, its signature checked with node:crypto against a key whose type and
// curve fit the token's alg (so an RSA public key can never be used as an HMAC secret), then its
// issuer, audiences and time claims. Every failure is a value with Envoy's jwt_authn wording.

import { type JsonWebKey, type KeyObject, constants, createPublicKey, verify } from 'node:crypto';

/** Longer tokens are refused before any decoding (Envoy's header limits are in the same range). */
export const MAX_TOKEN_BYTES = 16 * 1024;
/** Envoy's default clock_skew_seconds, which Istio keeps. */
export const CLOCK_SKEW_SECONDS = 60;

/** The algorithms Ambit verifies. HMAC (HS*) and `none` are refused: a JWKS of public keys cannot check them. */
export const SUPPORTED_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'] as const;
export type JwtAlg = (typeof SUPPORTED_ALGS)[number];

/** One public key of a JWKS, with what it may verify. */
export interface JwtKey {
  readonly kid?: string;
  /** The JWK's own `alg`, when it names one: then only that alg may use the key. */
  readonly alg?: string;
  readonly kty: 'RSA' | 'EC';
  /** EC only: P-256, P-384 or P-521. */
  readonly crv?: string;
  readonly key: KeyObject;
}

export type JwksParse = { readonly ok: true; readonly keys: readonly JwtKey[] } | { readonly ok: false; readonly message: string };

export type JwtClaims = Readonly<Record<string, unknown>>;

export type JwtFailure =
  | 'malformed'
  | 'too-large'
  | 'unsupported-alg'
  | 'key-not-found'
  | 'bad-signature'
  | 'expired'
  | 'not-yet-valid'
  | 'wrong-issuer'
  | 'wrong-audience';

export type JwtVerification =
  | { readonly ok: true; readonly claims: JwtClaims; readonly issuer: string; readonly subject: string; readonly payloadSegment: string }
  | { readonly ok: false; readonly failure: JwtFailure; readonly message: string };

/** A token split and decoded, before any check that needs a key. */
export type DecodedJwt =
  | { readonly ok: true; readonly header: JwtClaims; readonly claims: JwtClaims; readonly signingInput: string; readonly signature: Buffer; readonly payloadSegment: string }
  | { readonly ok: false; readonly failure: 'malformed' | 'too-large'; readonly message: string };

const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** Splits a compact JWS into its parts; nothing is trusted yet. */
export function decodeJwt(token: string): DecodedJwt {
  if (token.length > MAX_TOKEN_BYTES) return { ok: false, failure: 'too-large', message: `Jwt is larger than ${MAX_TOKEN_BYTES} bytes` };
  const parts = token.split('.');
  if (parts.length !== 3 || !parts.every((p) => BASE64URL.test(p)) || parts[0] === '' || parts[1] === '') {
    return { ok: false, failure: 'malformed', message: 'Jwt is not in the form of Header.Payload.Signature with three dots and 3 sections' };
  }
  const header = jsonObject(parts[0]!);
  if (!header) return { ok: false, failure: 'malformed', message: 'Jwt header is an invalid JSON' };
  const claims = jsonObject(parts[1]!);
  if (!claims) return { ok: false, failure: 'malformed', message: 'Jwt payload is an invalid JSON' };
  return { ok: true, header, claims, signingInput: `${parts[0]}.${parts[1]}`, signature: Buffer.from(parts[2]!, 'base64url'), payloadSegment: parts[1]! };
}

function jsonObject(segment: string): JwtClaims | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as JwtClaims) : undefined;
  } catch {
    return undefined;
  }
}

/** What a token must satisfy besides its signature. */
export interface JwtExpectations {
  readonly issuer: string;
  /** Empty: the audience is not checked (Istio's default). */
  readonly audiences: readonly string[];
  /** Seconds since the epoch. */
  readonly now: number;
}

/** Verifies a token against a key set and the rule's issuer and audiences. */
export function verifyJwt(token: string, keys: readonly JwtKey[], expect: JwtExpectations): JwtVerification {
  const decoded = decodeJwt(token);
  if (!decoded.ok) return decoded;
  const { header, claims } = decoded;
  const alg = header['alg'];
  if (typeof alg !== 'string' || !(SUPPORTED_ALGS as readonly string[]).includes(alg)) {
    return { ok: false, failure: 'unsupported-alg', message: `Jwt alg ${JSON.stringify(alg)} is not supported (expected one of ${SUPPORTED_ALGS.join(', ')})` };
  }
  // The issuer is checked before the signature so that a token meant for another rule says so.
  if (claims['iss'] !== expect.issuer) return { ok: false, failure: 'wrong-issuer', message: 'Jwt issuer is not configured' };
  const kid = header['kid'];
  const candidates = keys.filter((k) => keyFits(k, alg as JwtAlg) && (typeof kid !== 'string' || k.kid === undefined || k.kid === kid));
  if (candidates.length === 0) return { ok: false, failure: 'key-not-found', message: "Jwks doesn't have key to match kid or alg from Jwt" };
  if (!candidates.some((k) => signatureValid(alg as JwtAlg, k.key, decoded.signingInput, decoded.signature))) {
    return { ok: false, failure: 'bad-signature', message: 'Jwt verification fails' };
  }
  const timing = checkTimes(claims, expect.now);
  if (timing) return timing;
  if (expect.audiences.length > 0 && !audiencesOf(claims).some((a) => expect.audiences.includes(a))) {
    return { ok: false, failure: 'wrong-audience', message: 'Audiences in Jwt are not allowed' };
  }
  const subject = typeof claims['sub'] === 'string' ? claims['sub'] : '';
  return { ok: true, claims, issuer: expect.issuer, subject, payloadSegment: decoded.payloadSegment };
}

function checkTimes(claims: JwtClaims, now: number): JwtVerification | undefined {
  const exp = claims['exp'];
  const nbf = claims['nbf'];
  if (exp !== undefined && (typeof exp !== 'number' || !Number.isFinite(exp))) return { ok: false, failure: 'malformed', message: 'Jwt payload exp is not a number' };
  if (nbf !== undefined && (typeof nbf !== 'number' || !Number.isFinite(nbf))) return { ok: false, failure: 'malformed', message: 'Jwt payload nbf is not a number' };
  if (exp !== undefined && now > exp + CLOCK_SKEW_SECONDS) return { ok: false, failure: 'expired', message: 'Jwt is expired' };
  if (nbf !== undefined && now < nbf - CLOCK_SKEW_SECONDS) return { ok: false, failure: 'not-yet-valid', message: 'Jwt not yet valid' };
  return undefined;
}

/** `aud` as a list: a string is one audience, an array its string members. */
export function audiencesOf(claims: JwtClaims): string[] {
  const aud = claims['aud'];
  if (typeof aud === 'string') return [aud];
  return Array.isArray(aud) ? aud.filter((a): a is string => typeof a === 'string') : [];
}

const EC_CURVES: Readonly<Record<string, string>> = { ES256: 'P-256', ES384: 'P-384', ES512: 'P-521' };

/** The key's type (and curve) must be the one the alg names; a key that names its own alg must name this one. */
function keyFits(k: JwtKey, alg: JwtAlg): boolean {
  if (k.alg !== undefined && k.alg !== alg) return false;
  if (alg.startsWith('ES')) return k.kty === 'EC' && k.crv === EC_CURVES[alg];
  return k.kty === 'RSA';
}

function signatureValid(alg: JwtAlg, key: KeyObject, signingInput: string, signature: Buffer): boolean {
  const digest = `sha${alg.slice(2)}`;
  const data = Buffer.from(signingInput);
  try {
    if (alg.startsWith('ES')) return verify(digest, data, { key, dsaEncoding: 'ieee-p1363' }, signature);
    if (alg.startsWith('PS')) return verify(digest, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }, signature);
    return verify(digest, data, { key, padding: constants.RSA_PKCS1_PADDING }, signature);
  } catch {
    // A signature of the wrong length for the key, for one: not valid, never an exception to the caller.
    return false;
  }
}

/** Reads a JWKS document (`{"keys": [...]}`); RSA and EC signing keys are kept, others skipped. */
export function parseJwks(text: string): JwksParse {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    return { ok: false, message: `the JWKS is not JSON: ${(error as Error).message}` };
  }
  const list = typeof doc === 'object' && doc !== null ? (doc as Record<string, unknown>)['keys'] : undefined;
  if (!Array.isArray(list)) return { ok: false, message: 'the JWKS has no "keys" list' };
  const keys: JwtKey[] = [];
  for (const jwk of list) {
    if (typeof jwk !== 'object' || jwk === null) continue;
    const j = jwk as Record<string, unknown>;
    if ((j['kty'] !== 'RSA' && j['kty'] !== 'EC') || (j['use'] !== undefined && j['use'] !== 'sig')) continue;
    try {
      const key = createPublicKey({ key: { kty: j['kty'], n: j['n'], e: j['e'], crv: j['crv'], x: j['x'], y: j['y'] } as JsonWebKey, format: 'jwk' });
      keys.push({
        key,
        kty: j['kty'],
        ...(typeof j['kid'] === 'string' ? { kid: j['kid'] } : {}),
        ...(typeof j['alg'] === 'string' ? { alg: j['alg'] } : {}),
        ...(typeof j['crv'] === 'string' ? { crv: j['crv'] } : {}),
      });
    } catch {
      // A key node:crypto cannot import (bad modulus, unknown curve) verifies nothing; the others still do.
    }
  }
  if (keys.length === 0) return { ok: false, message: 'the JWKS has no RSA or EC signing key Ambit can use' };
  return { ok: true, keys };
}

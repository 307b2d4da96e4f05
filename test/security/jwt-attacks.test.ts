// JWT validation (agent/policy/jwt.ts) faces tokens any client writes. The classic attacks, each refused
// with its reason: alg none, HS256 signed with the issuer's RSA public key (alg confusion), a token whose
// alg does not fit the key's type or curve, a DER-encoded ECDSA signature, expired and not-yet-valid
// tokens (with Envoy's 60 s skew), the wrong issuer or audience, an oversized token, an unknown kid.
// Then fast-check properties (fuzz target `jwt`): no input makes verification throw or succeed without
// the key; tampering with any segment of a signed token is refused; and the time, issuer and audience
// checks agree with a reference written from Envoy's rules.

import assert from 'node:assert/strict';
import { sign } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { CLOCK_SKEW_SECONDS, MAX_TOKEN_BYTES, type JwtKey, parseJwks, verifyJwt } from '../../agent/policy/jwt.js';
import { hmacWithPublicKey, signToken, testIssuer, unsignedToken } from '../unit/helpers/jwt-tokens.js';
import { fuzzTarget } from '../fuzz/property.js';

const fuzz = fuzzTarget('jwt');
const ISS = 'https://issuer.example';
const rsa = testIssuer('RS256', 'k1');
const ec = testIssuer('ES256', 'k2');
const keysOf = (jwks: string): readonly JwtKey[] => {
  const parsed = parseJwks(jwks);
  assert.ok(parsed.ok);
  return parsed.keys;
};
const RSA_KEYS = keysOf(rsa.jwks);
const EC_KEYS = keysOf(ec.jwks);
const BOTH = [...RSA_KEYS, ...EC_KEYS];
const NOW = 1_800_000_000;
const expect = { issuer: ISS, audiences: ['api'], now: NOW };
const claims = (extra: Record<string, unknown> = {}) => ({ iss: ISS, sub: 'alice', aud: 'api', exp: NOW + 300, ...extra });
const failure = (token: string, keys: readonly JwtKey[] = BOTH): string => {
  const result = verifyJwt(token, keys, expect);
  return result.ok ? 'accepted' : result.failure;
};

test('the baseline: RS256 and ES256 tokens signed by the keys are accepted', () => {
  assert.equal(failure(signToken(rsa, claims())), 'accepted');
  assert.equal(failure(signToken(ec, claims())), 'accepted');
});

test('alg none (any spelling) and HMAC are refused before any key is used', () => {
  for (const alg of ['none', 'None', 'NONE', 'nOnE', '']) assert.equal(failure(unsignedToken(claims(), alg)), 'unsupported-alg', alg);
  assert.equal(failure(`${unsignedToken(claims())}${'A'.repeat(43)}`), 'unsupported-alg');
});

test('alg confusion: HS256 with the RSA public key as the secret is refused', () => {
  assert.equal(failure(hmacWithPublicKey(rsa, claims()), RSA_KEYS), 'unsupported-alg');
});

test("a token's alg must fit the key: RS256 against an EC key, ES256 against an RSA key, ES384 against P-256, a JWK that names another alg", () => {
  assert.equal(failure(signToken(rsa, claims()), EC_KEYS), 'key-not-found');
  assert.equal(failure(signToken(ec, claims()), RSA_KEYS), 'key-not-found');
  assert.equal(failure(signToken(ec, claims(), { alg: 'ES384' }), EC_KEYS), 'key-not-found');
  const rs384Only = keysOf(rsa.jwks.replace('"alg":"RS256"', '"alg":"RS384"'));
  assert.equal(failure(signToken(rsa, claims()), rs384Only), 'key-not-found');
  assert.equal(failure(signToken(rsa, claims(), { kid: 'unknown' })), 'key-not-found', 'a kid no key has');
});

test('an ECDSA signature in DER form (not JOSE r||s) is refused', () => {
  const input = signToken(ec, claims()).split('.').slice(0, 2).join('.');
  const der = sign('sha256', Buffer.from(input), ec.privateKey).toString('base64url');
  assert.equal(failure(`${input}.${der}`), 'bad-signature');
});

test('time, issuer and audience: expired, not yet valid (60 s skew), wrong issuer, wrong audience', () => {
  assert.equal(failure(signToken(rsa, claims({ exp: NOW - CLOCK_SKEW_SECONDS - 1 }))), 'expired');
  assert.equal(failure(signToken(rsa, claims({ exp: NOW - CLOCK_SKEW_SECONDS }))), 'accepted', 'within the skew');
  assert.equal(failure(signToken(rsa, claims({ nbf: NOW + CLOCK_SKEW_SECONDS + 1 }))), 'not-yet-valid');
  assert.equal(failure(signToken(rsa, claims({ exp: String(NOW + 100) }))), 'malformed', 'exp must be a number');
  assert.equal(failure(signToken(rsa, claims({ iss: 'https://evil.example' }))), 'wrong-issuer');
  assert.equal(failure(signToken(rsa, claims({ aud: ['web', 'other'] }))), 'wrong-audience');
  assert.equal(failure(signToken(rsa, claims({ aud: ['web', 'api'] }))), 'accepted');
  assert.equal(failure(signToken(rsa, claims({ aud: undefined }))), 'wrong-audience', 'no aud when audiences are required');
});

test('an oversized token is refused before decoding, in bounded time', () => {
  const big = signToken(rsa, claims({ pad: 'x'.repeat(MAX_TOKEN_BYTES) }));
  const started = performance.now();
  assert.equal(failure(big), 'too-large');
  assert.equal(failure('a'.repeat(50 * 1024 * 1024)), 'too-large');
  assert.ok(performance.now() - started < 1000);
  assert.equal(failure(`${'['.repeat(MAX_TOKEN_BYTES / 2 - 10)}`), 'malformed');
});

test('property: no string, and no three-part token of arbitrary JSON, throws or verifies without the key', async () => {
  const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v) ?? 'null').toString('base64url');
  const json = fc.jsonValue({ maxDepth: 3 });
  const header = fc.oneof(json, fc.record({ alg: fc.constantFrom('RS256', 'ES256', 'PS256', 'HS256', 'none', 'ES512'), kid: fc.constantFrom('k1', 'k2', 'x') }));
  const token = fc.oneof(
    fc.string({ maxLength: 300 }),
    fc.tuple(header, fc.oneof(json, fc.constant(claims())), fc.uint8Array({ maxLength: 300 })).map(([h, p, s]) => `${b64(h)}.${b64(p)}.${Buffer.from(s).toString('base64url')}`),
  );
  await fuzz.assert(
    'never-accepts-unsigned',
    fc.property(token, (t) => {
      const result = verifyJwt(t, BOTH, { ...expect, audiences: [] });
      assert.equal(result.ok, false);
    }),
    { numRuns: 400 },
  );
});

test('property: changing any character of a signed token gets it refused', async () => {
  const token = signToken(rsa, claims());
  await fuzz.assert(
    'tampering-refused',
    fc.property(fc.nat({ max: token.length - 1 }), fc.constantFrom(...'ABCabc019-_.='), (at, ch) => {
      const tampered = token.slice(0, at) + ch + token.slice(at + 1);
      // A base64url character whose changed bits are padding decodes to the same signature: not a change.
      const same = (t: string) => t.split('.').map((p) => Buffer.from(p, 'base64url').toString('hex')).join('.') + t.split('.').slice(0, 2).join('.');
      fc.pre(tampered !== token && same(tampered) !== same(token));
      assert.equal(verifyJwt(tampered, BOTH, expect).ok, false);
    }),
    { numRuns: 300 },
  );
});

test('property: exp, nbf, iss and aud decide as the reference does', async () => {
  const time = fc.option(fc.integer({ min: NOW - 200, max: NOW + 200 }), { nil: undefined });
  const aud = fc.option(fc.oneof(fc.constantFrom('api', 'web'), fc.array(fc.constantFrom('api', 'web', 'x'), { maxLength: 3 })), { nil: undefined });
  await fuzz.assert(
    'claims-reference',
    fc.property(time, time, fc.constantFrom(ISS, 'https://other', ''), aud, fc.boolean(), (exp, nbf, iss, a, useEc) => {
      const token = signToken(useEc ? ec : rsa, { iss, sub: 's', ...(exp !== undefined ? { exp } : {}), ...(nbf !== undefined ? { nbf } : {}), ...(a !== undefined ? { aud: a } : {}) });
      const audiences = a === undefined ? [] : typeof a === 'string' ? [a] : a;
      const reference =
        iss === ISS && (exp === undefined || NOW <= exp + CLOCK_SKEW_SECONDS) && (nbf === undefined || NOW >= nbf - CLOCK_SKEW_SECONDS) && audiences.includes('api');
      assert.equal(verifyJwt(token, BOTH, expect).ok, reference);
    }),
    { numRuns: 200 },
  );
});

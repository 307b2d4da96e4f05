// Property tests (fast-check) of the CA's side of a CSR (agent/identity/csr.ts, verifyWorkloadCsr),
// which parses what any node sends: arbitrary DER and text are refused as invalid CSRs without
// throwing; a valid CSR with bytes changed is refused or, if still valid, names the same key; a CSR
// signed by one key but carrying another's is refused; a key other than P-256 (P-384, RSA, Ed25519)
// is refused however well signed; and a CSR is accepted exactly when its one subjectAltName extension
// holds exactly one name, the URI requested (not another case, a NUL-extended or slash-ended variant,
// a DNS name, an e-mail or otherName, nor a second copy).

import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { before, test } from 'node:test';
import fc from 'fast-check';
import { verifyWorkloadCsr } from '../../agent/identity/csr.js';
import { type CryptoKeyPair, ECDSA_P256, x509 } from '../../agent/identity/pki.js';
import { type SpiffeId, spiffeId } from '../../agent/state/model.js';
import { fuzzTarget } from '../fuzz/property.js';

const fuzz = fuzzTarget('csr');

type SigningAlgorithm = Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[0]['signingAlgorithm'];

interface KeyKind {
  readonly name: string;
  readonly keys: CryptoKeyPair;
  readonly signingAlgorithm: SigningAlgorithm;
}

/** A fresh signing key pair of any algorithm WebCrypto knows. */
async function keyPair(algorithm: webcrypto.EcKeyGenParams | webcrypto.RsaHashedKeyGenParams | webcrypto.Algorithm): Promise<CryptoKeyPair> {
  const generated = await webcrypto.subtle.generateKey(algorithm, false, ['sign', 'verify']);
  assert.ok('publicKey' in generated, `${algorithm.name} makes key pairs`);
  return generated;
}

let p256: CryptoKeyPair[] = [];
let others: KeyKind[] = [];

before(async () => {
  const ec = (namedCurve: string) => keyPair({ name: 'ECDSA', namedCurve });
  p256 = await Promise.all([ec('P-256'), ec('P-256'), ec('P-256')]);
  const rsa = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) };
  others = [
    { name: 'P-384', keys: await ec('P-384'), signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' } },
    { name: 'RSA 2048', keys: await keyPair(rsa), signingAlgorithm: rsa },
    { name: 'Ed25519', keys: await keyPair({ name: 'Ed25519' }), signingAlgorithm: { name: 'Ed25519' } },
  ];
});

type Name = { readonly type: 'url' | 'dns' | 'email' | 'ip' | 'upn'; readonly value: string };

async function csrPem(keys: CryptoKeyPair, signingAlgorithm: SigningAlgorithm, sanExtensions: readonly (readonly Name[])[]): Promise<string> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm,
    extensions: sanExtensions.map((names) => new x509.SubjectAlternativeNameExtension(names.map((n) => ({ ...n })), true)),
  });
  return csr.toString('pem');
}

const pem = (der: Uint8Array): string => `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`;
const derOf = (csr: string): Buffer => Buffer.from(csr.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?$/);
const identity = fc.tuple(label, label).map(([ns, sa]) => spiffeId('cluster.local', ns, sa));

/** Refused as an invalid CSR, never thrown. */
async function refused(csr: string, id: SpiffeId, why?: RegExp): Promise<void> {
  const result = await verifyWorkloadCsr(csr, id);
  assert.equal(result.ok, false, 'accepted');
  if (result.ok) return;
  assert.equal(result.error.reason, 'invalid-csr');
  if (why) assert.match(result.error.message, why);
}

test('arbitrary DER in a CSR PEM, and arbitrary text, are refused as invalid CSRs and never throw', async () => {
  await fuzz.assert('arbitrary-der',
    fc.asyncProperty(fc.oneof(fc.uint8Array({ maxLength: 1500 }).map(pem), fc.string({ maxLength: 400 })), identity, async (csr, id) => refused(csr, id)),
    { numRuns: 2000 },
  );
});

test('a valid CSR with bytes changed, cut or extended is refused, or still names the same key and identity', async () => {
  const id = spiffeId('cluster.local', 'shop', 'web');
  const original = derOf(await csrPem(p256[0]!, ECDSA_P256, [[{ type: 'url', value: id }]]));
  const valid = await verifyWorkloadCsr(pem(original), id);
  assert.ok(valid.ok, 'the unchanged CSR is accepted');
  const spki = Buffer.from(valid.value.publicKeySpki);
  const mutation = fc.oneof(
    fc.array(fc.tuple(fc.nat(original.length - 1), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 3 }).map((flips) => {
      const copy = Buffer.from(original);
      for (const [at, xor] of flips) copy[at]! ^= xor;
      return copy;
    }),
    fc.nat(original.length - 1).map((n) => original.subarray(0, n)),
    fc.uint8Array({ minLength: 1, maxLength: 8 }).map((tail) => Buffer.concat([original, tail])),
  );
  await fuzz.assert('mutated-csr',
    fc.asyncProperty(mutation, async (der) => {
      const result = await verifyWorkloadCsr(pem(der), id);
      if (result.ok) assert.deepEqual(Buffer.from(result.value.publicKeySpki), spki, 'a changed CSR accepted for another key');
      else assert.equal(result.error.reason, 'invalid-csr');
    }),
    { numRuns: 1500 },
  );
});

test("a CSR carrying another key than the one that signed it is refused: no one gets a certificate for a key they do not hold", async () => {
  await fuzz.assert('foreign-key',
    fc.asyncProperty(identity, fc.integer({ min: 0, max: 2 }), fc.integer({ min: 1, max: 2 }), async (id, signer, offset) => {
      const der = derOf(await csrPem(p256[signer]!, ECDSA_P256, [[{ type: 'url', value: id }]]));
      const own = Buffer.from(await webcrypto.subtle.exportKey('spki', p256[signer]!.publicKey));
      const other = Buffer.from(await webcrypto.subtle.exportKey('spki', p256[(signer + offset) % 3]!.publicKey));
      const at = der.indexOf(own);
      assert.ok(at > 0 && own.length === other.length);
      await refused(pem(Buffer.concat([der.subarray(0, at), other, der.subarray(at + own.length)])), id, /signature that does not verify/);
    }),
    { numRuns: 60 },
  );
});

test('keys other than ECDSA P-256 are refused however well signed and named', async () => {
  await fuzz.assert('other-key-types',
    fc.asyncProperty(identity, fc.integer({ min: 0, max: 2 }), async (id, k) => {
      const kind = others[k]!;
      await refused(await csrPem(kind.keys, kind.signingAlgorithm, [[{ type: 'url', value: id }]]), id, /workload keys must be ECDSA P-256/);
    }),
    { numRuns: 60 },
  );
});

test('accepted exactly when one subjectAltName extension holds exactly the URI requested', async () => {
  // Names that come close to the identity, and names of other kinds.
  const nameFor = (id: SpiffeId): fc.Arbitrary<Name> =>
    fc.oneof(
      fc.constant<Name>({ type: 'url', value: id }),
      fc.constantFrom<Name>(
        { type: 'url', value: id.toUpperCase() },
        { type: 'url', value: id.replace('spiffe://', 'SPIFFE://') },
        { type: 'url', value: `${id}/` },
        { type: 'url', value: `${id}\u0000.evil` },
        { type: 'url', value: id.replace('/sa/', '/sa/x') },
        { type: 'url', value: 'spiffe://cluster.local/ns/istio-system/sa/istiod' },
        { type: 'dns', value: id.slice('spiffe://'.length).replaceAll('/', '.') },
        { type: 'email', value: 'web@shop.example' },
        { type: 'ip', value: '10.1.2.3' },
        { type: 'upn', value: id },
      ),
    );
  await fuzz.assert('san-exact',
    fc.asyncProperty(
      identity.chain((id) => fc.tuple(fc.constant(id), fc.array(fc.array(nameFor(id), { maxLength: 3 }), { maxLength: 2 }))),
      async ([id, extensions]) => {
        const csr = await csrPem(p256[1]!, ECDSA_P256, extensions);
        const expected = extensions.length === 1 && extensions[0]!.length === 1 && extensions[0]![0]!.type === 'url' && extensions[0]![0]!.value === id;
        const result = await verifyWorkloadCsr(csr, id);
        assert.equal(result.ok, expected, `${JSON.stringify(extensions)} for ${id}: ${result.ok ? 'accepted' : result.error.message}`);
        if (!result.ok) assert.equal(result.error.reason, 'invalid-csr');
      },
    ),
    { numRuns: 300 },
  );
});

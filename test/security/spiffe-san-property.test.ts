// Property tests (fast-check) of how a peer's identity is read (agent/identity/spiffe.ts, san.ts):
// parseSpiffeId on arbitrary text, and, differentially, real certificates made with the library the
// agent uses, carrying generated SANs (several URIs, NUL bytes, quotes, ", URI:" forgeries, percent
// escapes, upper case): what san.ts reads from node:crypto's rendering must be exactly what the
// certificate holds, and an identity is granted only for exactly one URI SAN that is a SPIFFE id.

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { before, describe, it } from 'node:test';
import fc from 'fast-check';
import { ECDSA_P256, generateP256KeyPair, x509 } from '../../agent/identity/pki.js';
import { parseSubjectAltName, spiffeIdOfCertificate } from '../../agent/identity/san.js';
import { formatSpiffeId, parseSpiffeId } from '../../agent/identity/spiffe.js';
import { parseIp } from '../../agent/system/ip-block.js';
import { fuzzTarget } from '../fuzz/property.js';

const fuzz = fuzzTarget('spiffe-san');

// ---- SPIFFE ids ---------------------------------------------------------------------------------------

const segment = fc.stringMatching(/^[A-Za-z0-9._-]{1,12}$/);
const trustDomain = fc.stringMatching(/^[a-z0-9._-]{1,12}$/);
const validId = fc.record({ trustDomain, namespace: segment, serviceAccount: segment }).filter((p) => ![p.namespace, p.serviceAccount].some((s) => s === '.' || s === '..'));
const idText = validId.map((p) => `spiffe://${p.trustDomain}/ns/${p.namespace}/sa/${p.serviceAccount}`);

/** A valid id with one change an attacker would try: each must be refused, never read as another id. */
const tampered = fc.tuple(idText, fc.integer({ min: 0, max: 80 }), fc.constantFrom('\u0000', '%2F', '%00', '/', '//', ' ', '\n', '@', '?', '#', ':', 'É', '\\')).map(
  ([id, at, piece]) => {
    const cut = 'spiffe://'.length + (at % (id.length - 'spiffe://'.length + 1));
    return `${id.slice(0, cut)}${piece}${id.slice(cut)}`;
  },
);

describe('parseSpiffeId', () => {
  it('never throws, and accepts only text that is exactly spiffe://<td>/ns/<ns>/sa/<sa> in the SPIFFE character sets', async () => {
    await fuzz.assert('spiffe-grammar',
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 60 }), idText, tampered), (text) => {
        const parsed = parseSpiffeId(text);
        if (!parsed.ok) {
          assert.equal(parsed.error.reason, 'invalid-identity');
          return;
        }
        const { trustDomain: td, namespace, serviceAccount, id } = parsed.value;
        assert.equal(id, text);
        assert.equal(`spiffe://${td}/ns/${namespace}/sa/${serviceAccount}`, text);
        assert.match(td, /^[a-z0-9._-]+$/);
        for (const part of [namespace, serviceAccount]) assert.ok(/^[A-Za-z0-9._-]+$/.test(part) && part !== '.' && part !== '..', part);
        const formatted = formatSpiffeId(parsed.value);
        assert.ok(formatted.ok && formatted.value === text);
      }),
      { numRuns: 3000 },
    );
  });

  it('round-trips every valid id, and refuses every tampered one (NUL, escapes, extra slashes, case)', async () => {
    await fuzz.assert('spiffe-roundtrip',
      fc.property(validId, (parts) => {
        const id = formatSpiffeId(parts);
        assert.ok(id.ok);
        const parsed = parseSpiffeId(id.value);
        assert.ok(parsed.ok && parsed.value.trustDomain === parts.trustDomain && parsed.value.namespace === parts.namespace && parsed.value.serviceAccount === parts.serviceAccount);
      }),
      { numRuns: 1000 },
    );
    await fuzz.assert('spiffe-tampered',
      fc.property(tampered, (text) => {
        // A piece the grammar allows (":" or "." inside a segment, say) can leave a valid id; anything
        // else must be refused. The reference: the grammar, written here as one regular expression.
        const grammar = /^spiffe:\/\/[a-z0-9._-]+\/ns\/(?!\.\.?\/)[A-Za-z0-9._-]+\/sa\/(?!\.\.?$)[A-Za-z0-9._-]+$/;
        assert.equal(parseSpiffeId(text).ok, grammar.test(text), JSON.stringify(text));
      }),
      { numRuns: 2000 },
    );
    for (const text of ['SPIFFE://td/ns/a/sa/b', 'spiffe://TD/ns/a/sa/b', 'spiffe://td/NS/a/sa/b', 'spiffe://td/ns/a/sa/b/', 'spiffe://td/ns/%61/sa/b', 'spiffe://td/ns/a/sa/b\u0000']) {
      assert.equal(parseSpiffeId(text).ok, false, text);
    }
  });
});

// ---- Certificates -------------------------------------------------------------------------------------

type GeneratedName = { readonly type: 'url' | 'dns' | 'email'; readonly value: string } | { readonly type: 'ip'; readonly value: string };

const NODE_TYPE = { url: 'URI', dns: 'DNS', email: 'email', ip: 'IP Address' } as const;
/** Text with what breaks naive SAN parsing: separators, quotes, escapes, NUL and control bytes. */
const nasty = fc.oneof(
  fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 24 }),
  fc.constantFrom(', URI:spiffe://evil/ns/x/sa/y', '", URI:"spiffe://evil/ns/x/sa/y', '\\', '"', '\u0000', 'a, b', 'URI:', '%2C'),
);
const uriValue = fc.oneof(
  idText,
  tampered,
  fc.tuple(idText, nasty).map(([id, tail]) => `${id}${tail}`),
  nasty,
  idText.map((id) => id.toUpperCase()),
);
const generalName: fc.Arbitrary<GeneratedName> = fc.oneof(
  { weight: 4, arbitrary: uriValue.map((value) => ({ type: 'url' as const, value })) },
  { weight: 1, arbitrary: nasty.map((value) => ({ type: 'dns' as const, value })) },
  { weight: 1, arbitrary: nasty.map((value) => ({ type: 'email' as const, value })) },
  // @peculiar/x509 encodes an IPv6 address with a dotted IPv4 tail wrongly (::1.2.3.4 as ::1): not ours to test.
  { weight: 1, arbitrary: fc.oneof(fc.ipV4(), fc.ipV6().filter((v) => !v.includes('.'))).map((value) => ({ type: 'ip' as const, value })) },
);

describe('SAN parsing against real certificates', () => {
  let keys: Awaited<ReturnType<typeof generateP256KeyPair>>;
  before(async () => {
    keys = await generateP256KeyPair();
  });

  async function certificateWith(names: readonly GeneratedName[]): Promise<X509Certificate> {
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: '01',
      name: 'CN=property',
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 3_600_000),
      keys,
      signingAlgorithm: ECDSA_P256,
      extensions: [new x509.SubjectAlternativeNameExtension(names.map((n) => ({ type: n.type, value: n.value })))],
    });
    return new X509Certificate(Buffer.from(cert.rawData));
  }

  it('reads back exactly the SANs a certificate holds, and grants an identity only for one URI SAN that is a SPIFFE id', async () => {
    await fuzz.assert('san-certificates',
      fc.asyncProperty(fc.array(generalName, { minLength: 1, maxLength: 4 }), async (names) => {
        const cert = await certificateWith(names);
        const read = parseSubjectAltName(cert.subjectAltName ?? '');
        assert.ok(read, `node's rendering must parse: ${JSON.stringify(cert.subjectAltName)}`);
        assert.equal(read.length, names.length, JSON.stringify({ names, text: cert.subjectAltName }));
        read.forEach((entry, i) => {
          const name = names[i]!;
          assert.equal(entry.type, NODE_TYPE[name.type]);
          // node prints IPv6 expanded; compare addresses by value.
          if (name.type === 'ip') assert.equal(parseIp(entry.value)?.value, parseIp(name.value)?.value);
          else assert.equal(entry.value, name.value, JSON.stringify({ names, text: cert.subjectAltName }));
        });

        const uris = names.filter((n) => n.type === 'url');
        const granted = spiffeIdOfCertificate(cert);
        const expected = uris.length === 1 && parseSpiffeId(uris[0]!.value).ok ? uris[0]!.value : undefined;
        assert.deepEqual(granted.ok ? granted.value : undefined, expected, JSON.stringify({ names, text: cert.subjectAltName }));
      }),
      { numRuns: 300 },
    );
  });
});

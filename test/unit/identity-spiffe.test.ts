// SPIFFE id parsing and formatting, and reading SANs out of node:crypto's text form.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseSubjectAltName } from '../../agent/identity/san.js';
import { formatSpiffeId, parseSpiffeId, trustDomainOf } from '../../agent/identity/spiffe.js';

describe('parseSpiffeId', () => {
  it('accepts the Istio form and splits it', () => {
    const parsed = parseSpiffeId('spiffe://cluster.local/ns/default/sa/bookinfo-productpage');
    assert.ok(parsed.ok);
    assert.equal(parsed.value.trustDomain, 'cluster.local');
    assert.equal(parsed.value.namespace, 'default');
    assert.equal(parsed.value.serviceAccount, 'bookinfo-productpage');
    assert.equal(trustDomainOf(parsed.value.id), 'cluster.local');
  });

  const rejected: [string, string][] = [
    ['http://cluster.local/ns/a/sa/b', 'it does not start with spiffe://'],
    ['spiffe://cluster.local/ns/a/sa/b/extra', 'expected 5 path pieces after spiffe://, found 6'],
    ['spiffe://cluster.local/ns/a/sa', 'expected 5 path pieces after spiffe://, found 4'],
    ['spiffe://cluster.local/sa/a/ns/b', 'the path must be /ns/<namespace>/sa/<service-account>'],
    ['spiffe://Cluster.Local/ns/a/sa/b', 'the trust domain must be lowercase letters, digits, ".", "-" or "_"'],
    ['spiffe://cluster.local/ns//sa/b', 'the namespace must be letters, digits, ".", "-" or "_" (and not "." or "..")'],
    ['spiffe://cluster.local/ns/a/sa/..', 'the service account must be letters, digits, ".", "-" or "_" (and not "." or "..")'],
    ['spiffe://a,b/ns/a/sa/b', 'the trust domain must be lowercase letters, digits, ".", "-" or "_"'],
  ];
  for (const [text, why] of rejected) {
    it(`rejects ${text}`, () => {
      const parsed = parseSpiffeId(text);
      assert.ok(!parsed.ok);
      assert.equal(parsed.error.reason, 'invalid-identity');
      assert.equal(
        parsed.error.message,
        `${JSON.stringify(text)} is not a SPIFFE id of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>: ${why}`,
      );
    });
  }
});

describe('formatSpiffeId', () => {
  it('round-trips through parseSpiffeId', () => {
    const id = formatSpiffeId({ trustDomain: 'td.example', namespace: 'ns-1', serviceAccount: 'sa_1' });
    assert.ok(id.ok);
    assert.equal(id.value, 'spiffe://td.example/ns/ns-1/sa/sa_1');
    assert.ok(parseSpiffeId(id.value).ok);
  });

  it('refuses a service account with a slash', () => {
    const id = formatSpiffeId({ trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'a/sa/b' });
    assert.ok(!id.ok);
    assert.match(id.error.message, /the service account must be/);
  });
});

describe('parseSubjectAltName', () => {
  it('splits plain entries', () => {
    assert.deepEqual(parseSubjectAltName('URI:spiffe://td/ns/a/sa/b, DNS:a b, IP Address:10.0.0.1'), [
      { type: 'URI', value: 'spiffe://td/ns/a/sa/b' },
      { type: 'DNS', value: 'a b' },
      { type: 'IP Address', value: '10.0.0.1' },
    ]);
  });

  it('keeps a quoted value whole, so a crafted URI cannot smuggle in a second entry', () => {
    // What node 20 prints for a URI SAN "spiffe://a,b/ns/x, URI:spiffe://evil/ns/a/sa/b".
    const text = 'URI:"spiffe://a\\u002cb/ns/x\\u002c URI:spiffe://evil/ns/a/sa/b", URI:spiffe://td/ns/a/sa/b';
    assert.deepEqual(parseSubjectAltName(text), [
      { type: 'URI', value: 'spiffe://a,b/ns/x, URI:spiffe://evil/ns/a/sa/b' },
      { type: 'URI', value: 'spiffe://td/ns/a/sa/b' },
    ]);
  });

  it('returns undefined for text that is not in node\'s grammar', () => {
    assert.equal(parseSubjectAltName('URI:"unterminated'), undefined);
    assert.equal(parseSubjectAltName('no colon here'), undefined);
  });
});

// Property tests of path normalization (agent/l7/request-target.ts) with fast-check: invariants over
// paths an attacker would build (dots, escapes of either case, backslashes, runs of slashes) and a
// differential against the WHATWG URL parser (what Node's `new URL` and browsers do) where the two
// must agree: dot segments, including escaped dots, and percent-encoding case.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { PATH_NORMALIZATIONS, type PathNormalization, normalizeOriginForm, normalizePath, requestTarget } from '../../agent/l7/request-target.js';
import { fuzzTarget } from '../fuzz/property.js';

const fuzz = fuzzTarget('request-target');

const RUNS = { numRuns: 3000 };

/** Pieces that make normalization interesting, glued into segments. */
const PIECES = [
  ...['a', 'b', 'Z', '0', '.', '..', '%2e', '%2E', '%2f', '%2F', '%5c', '%5C', '%41', '%7e', '%25', '%7C', '\\', '/', '//'],
  ...['~', '-', '_', '!', '$', "'", '(', '*', ':', '@', '"', '<', '>', '`', '{', '}', '|', '^', '[', ']', '\u00e9'],
];
const piece = fc.constantFrom(...PIECES);
/** An origin-form path: "/" then any run of pieces. */
const path = fc.array(piece, { maxLength: 16 }).map((ps) => `/${ps.join('')}`);
/** Printable ASCII without "?", "#", "%" and "\u00e9": what WHATWG and HTTP parsers both read as a path. */
const asciiPath = fc
  .array(fc.oneof(piece.filter((p) => /^[\x21-\x7e]+$/.test(p)), fc.constantFrom('%2e', '%6F', '%6f', '%3A')), { maxLength: 16 })
  .map((ps) => `/${ps.join('')}`);
const mode = fc.constantFrom<PathNormalization>('BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES');

const normalized = (p: string, m: PathNormalization): string => {
  const n = normalizePath(p, m);
  assert.ok(n.ok, `${JSON.stringify(p)} is built from valid escapes only`);
  return n.ok ? n.path : '';
};
/** The path the WHATWG parser resolves for an http: URL (no base: "//x" must stay a path). */
const whatwg = (p: string): string => new URL(`http://h${p}`).pathname;

test('normalizing is idempotent in every mode: the path forwarded normalizes to itself at the destination', async () => {
  await fuzz.assert('idempotent',
    fc.property(path, fc.constantFrom(...PATH_NORMALIZATIONS), (p, m) => {
      const once = normalized(p, m);
      assert.equal(normalized(once, m), once);
    }),
    RUNS,
  );
});

test('the result starts with "/", has no "." or ".." segment, no "//" once slashes merge, and holds only pchars and upper-case escapes', async () => {
  await fuzz.assert('canonical-shape',
    fc.property(path, mode, (p, m) => {
      const out = normalized(p, m);
      assert.ok(out.startsWith('/'), out);
      const segments = out.split('/');
      assert.ok(!segments.includes('.') && !segments.includes('..'), `${p} → ${out} keeps a dot segment`);
      if (m !== 'BASE') assert.ok(!out.includes('//'), `${p} → ${out} keeps "//"`);
      assert.match(out, /^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-F]{2})*$/);
      // An escape left in the path never stands for an unreserved character (those are decoded).
      for (const [, hex] of out.matchAll(/%([0-9A-F]{2})/g)) assert.doesNotMatch(String.fromCharCode(parseInt(hex!, 16)), /[A-Za-z0-9\-._~]/);
      if (m === 'DECODE_AND_MERGE_SLASHES') assert.doesNotMatch(out, /%2F|%5C/);
    }),
    RUNS,
  );
});

test('any string, stray "%" included, is either refused or normalized to a canonical fixed point', async () => {
  const anyPath = fc.array(fc.constantFrom('%', '2', 'e', 'E', '5', 'c', 'f', 'F', '3', '0', '.', '/', 'a', '\\', '#', ' '), { maxLength: 24 }).map((cs) => `/${cs.join('')}`);
  await fuzz.assert('any-string',
    fc.property(anyPath, mode, (p, m) => {
      const n = normalizePath(p, m);
      if (!n.ok) return;
      assert.match(n.path, /^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-F]{2})*$/, `${p} → ${n.path}`);
      assert.deepEqual(normalizePath(n.path, m), n);
    }),
    RUNS,
  );
});

test('differential: dot segments resolve as WHATWG URL resolves them, escaped dots of either case included', async () => {
  const dotty = fc
    .array(fc.constantFrom('a', 'b', '.', '..', '%2e', '%2E', '.%2e', '%2E.', '%2e%2E', ''), { minLength: 1, maxLength: 12 })
    .map((segments) => `/${segments.join('/')}`);
  await fuzz.assert('whatwg-dot-segments',
    fc.property(dotty, (p) => {
      // BASE resolves dots and keeps runs of "/", as WHATWG does.
      assert.equal(normalized(p, 'BASE'), whatwg(p));
    }),
    RUNS,
  );
});

test('differential: a path means the same before and after WHATWG URL parsing (escape case, dots, backslashes)', async () => {
  // Not with DECODE_AND_MERGE_SLASHES: it makes %2F and %5C separators on purpose, where WHATWG keeps them
  // inside their segment ("/x%5C/.." is "/" to WHATWG, "/x/" to it).
  await fuzz.assert('whatwg-meaning',
    fc.property(asciiPath, fc.constantFrom<PathNormalization>('BASE', 'MERGE_SLASHES'), (p, m) => {
      assert.equal(normalized(whatwg(p), m), normalized(p, m), `WHATWG read ${p} as ${whatwg(p)}`);
    }),
    RUNS,
  );
});

test('escapes that differ only in case normalize to one path', async () => {
  await fuzz.assert('escape-case',
    fc.property(path, mode, fc.array(fc.boolean(), { maxLength: 64 }), (p, m, flips) => {
      let i = 0;
      const recased = p.replace(/%[0-9A-Fa-f]{2}/g, (e) => (flips[i++ % Math.max(flips.length, 1)] ? e.toLowerCase() : e.toUpperCase()));
      assert.equal(normalized(recased, m), normalized(p, m));
    }),
    RUNS,
  );
});

test('what the proxy judges is what it forwards: the target normalizes to a path that normalizes to itself, query kept', async () => {
  const query = fc.constantFrom('', '?x=1', '?a=/../admin', '?q=%2F');
  const fragment = fc.constantFrom('', '#', '#/../admin', '#x?y');
  await fuzz.assert('judged-is-forwarded',
    fc.property(path, query, fragment, fc.boolean(), (p, q, f, absolute) => {
      const target = absolute ? `http://reviews:9080${p}${q}${f}` : `${p}${q}${f}`;
      const t = requestTarget({ version: 'HTTP/1.1', method: 'GET', target, authority: 'reviews:9080', hostHeaders: ['reviews:9080'] });
      assert.ok(t.ok, target);
      if (!t.ok) return;
      assert.equal(t.authority, 'reviews:9080');
      assert.ok(!t.path.includes('#'), 'no fragment is forwarded');
      assert.ok(t.path.endsWith(q), 'the query is kept as sent');
      assert.deepEqual(normalizeOriginForm(t.path), { ok: true, path: t.path });
    }),
    RUNS,
  );
});

// The request target every L7 decision reads and the pod receives (agent/l7/request-target.ts): Istio's
// pathNormalization options on the cases its documentation lists, absolute-form and fragments, and
// what is refused with which status (Envoy's).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type ReceivedTarget, normalizeOriginForm, normalizePath, requestTarget } from '../../agent/l7/request-target.js';

const h1 = (target: string | undefined, host: string | string[] = 'reviews:9080', method = 'GET'): ReceivedTarget => {
  const hosts = typeof host === 'string' ? [host] : host;
  return { version: 'HTTP/1.1', method, target, authority: hosts[0] ?? '', hostHeaders: hosts };
};
const h2 = (path: string | undefined, authority = 'reviews:9080', host: string[] = [], method = 'GET'): ReceivedTarget => ({ version: 'HTTP/2', method, target: path, authority, hostHeaders: host });
const pathOf = (p: string, mode?: Parameters<typeof normalizePath>[1]): string => {
  const n = normalizePath(p, mode);
  assert.ok(n.ok, `${p} should normalize`);
  return n.ok ? n.path : '';
};

test('each option does what Istio documents, in its order (decode %2F/%5C, then RFC 3986 and backslashes, then merge)', () => {
  const cases: [string, string, string, string][] = [
    // input, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES
    ['/a/../b', '/b', '/b', '/b'],
    ['/some%2fdata/%61%62%63', '/some%2Fdata/abc', '/some%2Fdata/abc', '/some/data/abc'],
    ['/some\\data', '/some/data', '/some/data', '/some/data'],
    ['/some//data///abc', '/some//data///abc', '/some/data/abc', '/some/data/abc'],
    ['/public/./data/abc/../xyz', '/public/data/xyz', '/public/data/xyz', '/public/data/xyz'],
    ['/app/%2E./admin', '/admin', '/admin', '/admin'],
    ['/xyz%30..//abc', '/xyz0..//abc', '/xyz0../abc', '/xyz0../abc'],
    ['/app//../admin', '/app/admin', '/app/admin', '/app/admin'],
    ['/%5Capp%2f%2e%2e%2fadmin', '/%5Capp%2F..%2Fadmin', '/%5Capp%2F..%2Fadmin', '/admin'],
    ['/a/b/..', '/a/', '/a/', '/a/'],
    ['/..', '/', '/', '/'],
  ];
  for (const [input, base, merge, decode] of cases) {
    assert.equal(pathOf(input, 'BASE'), base, `BASE ${input}`);
    assert.equal(pathOf(input, 'MERGE_SLASHES'), merge, `MERGE_SLASHES ${input}`);
    assert.equal(pathOf(input, 'DECODE_AND_MERGE_SLASHES'), decode, `DECODE_AND_MERGE_SLASHES ${input}`);
  }
  assert.equal(pathOf('/a/../b//c', 'NONE'), '/a/../b//c');
  assert.equal(pathOf('//admin'), '/admin', 'the default merges slashes');
});

test('escapes: only unreserved characters are decoded, once; the rest get upper-case hex; raw characters a path may not hold are escaped', () => {
  assert.equal(pathOf('/%7e%20x'), '/~%20x');
  assert.equal(pathOf('/%2541'), '/%2541', 'no double decoding: %25 stays, so "%2541" never becomes "A"');
  assert.equal(pathOf('/a%2fb'), '/a%2Fb');
  assert.equal(pathOf('/a"b<c>|`{}^[]'), '/a%22b%3Cc%3E%7C%60%7B%7D%5E%5B%5D');
  assert.equal(pathOf('/caf\u00e9'), '/caf%E9', 'a latin1 byte as the server read it');
  assert.equal(pathOf("/a!$&'()*+,;=:@b"), "/a!$&'()*+,;=:@b", 'sub-delims, ":" and "@" stay raw');
  for (const bad of ['/%zz', '/%4', '/a%', '/%%32%65%%32%65/admin']) assert.equal(normalizePath(bad).ok, false, `${bad} must be refused`);
});

test('origin-form: the query is kept as sent, the fragment dropped, %00 refused', () => {
  assert.deepEqual(normalizeOriginForm('/a/../b?q=/../x#frag'), { ok: true, path: '/b?q=/../x' });
  assert.deepEqual(normalizeOriginForm('/public#/../admin'), { ok: true, path: '/public' });
  assert.equal(normalizeOriginForm('/a%00b').ok, false);
});

test('absolute-form becomes origin-form with its authority; a Host that disagrees is refused', () => {
  assert.deepEqual(requestTarget(h1('http://reviews/admin/secret', 'reviews')), { ok: true, path: '/admin/secret', authority: 'reviews' });
  assert.deepEqual(requestTarget(h1('HTTP://Reviews:9080', 'reviews:9080')), { ok: true, path: '/', authority: 'Reviews:9080' });
  assert.deepEqual(requestTarget(h1('http://reviews?x=1#f', 'reviews')), { ok: true, path: '/?x=1', authority: 'reviews' });
  const mismatch = requestTarget(h1('http://reviews/admin', 'ratings'));
  assert.equal(mismatch.ok, false);
  if (!mismatch.ok) assert.deepEqual([mismatch.status, mismatch.details], [400, 'host_mismatch']);
  for (const target of ['ftp://reviews/x', 'http://user@reviews/x', 'http:///x', 'http://re views/x']) {
    const r = requestTarget(h1(target, 'reviews'));
    assert.equal(r.ok, false, target);
    if (!r.ok) assert.equal(r.status, 400, target);
  }
});

test('refusals carry Envoy status and details', () => {
  const refusal = (t: ReceivedTarget): [number, string] | undefined => {
    const r = requestTarget(t);
    return r.ok ? undefined : [r.status, r.details];
  };
  assert.deepEqual(refusal(h1('/', 'reviews', 'get')), [400, 'invalid_method']);
  assert.deepEqual(refusal(h2(undefined, 'reviews:9080', [], 'CONNECT')), [404, 'route_not_found']);
  assert.deepEqual(refusal(h2('/x', 'reviews:9080', [], 'CONNECT')), [404, 'route_not_found']);
  assert.deepEqual(refusal(h1('*', 'reviews', 'OPTIONS')), [404, 'absolute_path_rejected']);
  assert.deepEqual(refusal(h1('/', ['a', 'b'])), [400, 'duplicate_host']);
  assert.deepEqual(refusal(h2('/', 'reviews', ['ratings'])), [400, 'host_mismatch']);
  assert.deepEqual(refusal(h2('http://reviews/admin')), [404, 'absolute_path_rejected'], 'HTTP/2 has no absolute-form :path');
  assert.deepEqual(refusal(h1('/', '')), [400, 'invalid_authority']);
  assert.deepEqual(refusal(h1('/a%00')), [400, 'path_normalization_failed']);
  assert.deepEqual(refusal(h1('/%zz')), [400, 'path_normalization_failed']);
  assert.equal(refusal(h2('/x', 'reviews:9080', ['REVIEWS:9080'])), undefined, 'a Host that agrees (case aside) is fine');
});

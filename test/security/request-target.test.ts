// L7 authorization bypass by request target: an absolute-form target (`GET http://reviews/admin/secret`)
// and a fragment (`/public#/../admin`) against a DENY on /admin/*, on both proxies and over HTTP/1.1
// and HTTP/2. Absolute-form becomes origin-form (its authority the Host; a Host that disagrees is a
// 400), a fragment is stripped, and the path policy judged is the one the pod receives.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { h2Request } from './helpers/h2-frames.js';
import { type L7Proxies, h2Get, rawHttp1, startL7Proxies } from './helpers/l7-proxies.js';

let proxies: L7Proxies;
before(async () => {
  proxies = await startL7Proxies();
});
after(() => proxies.close());

const request = (target: string, host = 'reviews:9080'): string => `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;
const sides = [
  ['destination', () => proxies.inboundPort],
  ['source', () => proxies.outboundPort],
  ['source (no proxy at the destination)', () => proxies.outboundDirectPort],
] as const;

for (const [side, port] of sides) {
  test(`${side} proxy: an absolute-form target is judged as its origin-form path, and the pod receives only that`, async () => {
    const before = proxies.podRequests.length;
    const denied = await rawHttp1(port(), request('http://reviews:9080/admin/secret'));
    assert.equal(denied.status, 403, denied.text);
    assert.match(denied.text, /RBAC: access denied|route: no admin/);
    assert.equal(proxies.podRequests.length, before, 'the pod never sees /admin/secret');

    const allowed = await rawHttp1(port(), request('http://reviews:9080/public/../reviews?x=1'));
    assert.equal(allowed.status, 200, allowed.text);
    const seen = proxies.podRequests.at(-1)!;
    assert.equal(seen.url, '/reviews?x=1', 'origin-form, normalized');
    assert.equal(seen.headers.host, 'reviews:9080', 'the authority became the Host');
  });

  test(`${side} proxy: a Host that disagrees with the absolute-form authority is a 400`, async () => {
    const before = proxies.podRequests.length;
    const reply = await rawHttp1(port(), request('http://reviews:9080/admin/secret', 'ratings:9080'));
    assert.equal(reply.status, 400, reply.text);
    assert.match(reply.text, /disagrees/);
    assert.equal(proxies.podRequests.length, before);
  });

  test(`${side} proxy: a fragment is stripped before anything reads the path`, async () => {
    const before = proxies.podRequests.length;
    const hidden = await rawHttp1(port(), request('/public#/../admin/secret'));
    assert.equal(hidden.status, 200, hidden.text);
    assert.equal(proxies.podRequests.at(-1)!.url, '/public', 'the pod never sees the fragment');

    const denied = await rawHttp1(port(), request('/admin/secret#/../../public'));
    assert.equal(denied.status, 403, 'a fragment does not hide the path in front of it');
    assert.equal(proxies.podRequests.length, before + 1);
  });

  test(`${side} proxy over HTTP/2: a :path fragment is stripped, an absolute :path is reset by nghttp2 or refused`, async () => {
    const before = proxies.podRequests.length;
    assert.equal(await h2Get(port(), { ':path': '/public#/../admin/secret' }), 200);
    assert.equal(proxies.podRequests.at(-1)!.url, '/public');
    const absolute = await h2Request(port(), [[':method', 'GET'], [':scheme', 'http'], [':authority', 'reviews:9080'], [':path', 'http://reviews:9080/admin/secret']]);
    assert.ok(absolute.reset === 1 || absolute.status === 404, `reset ${absolute.reset}, status ${absolute.status}`);
    const hostMismatch = await h2Request(port(), [[':method', 'GET'], [':scheme', 'http'], [':authority', 'reviews:9080'], [':path', '/admin/secret'], ['host', 'ratings:9080']]);
    assert.equal(hostMismatch.status, 400, 'RFC 9113: a Host naming another entity than :authority is malformed');
    assert.equal(proxies.podRequests.length, before + 1);
  });
}

// CONNECT to an L7 port: an HTTP port proxies requests, never tunnels. HTTP/1.1 CONNECT gets Envoy's
// 404 (no CONNECT route) and its connection closed; HTTP/2 CONNECT the same 404 on its stream; a
// CONNECT carrying :path or :scheme is malformed (RFC 9113 §8.5) and :protocol needs the server's
// SETTINGS_ENABLE_CONNECT_PROTOCOL, which Ambit never sends, so nghttp2 resets those streams
// (PROTOCOL_ERROR). None of them opens anything toward the pod.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { h2Request } from './helpers/h2-frames.js';
import { type L7Proxies, rawHttp1, startL7Proxies } from './helpers/l7-proxies.js';

const PROTOCOL_ERROR = 1;
let proxies: L7Proxies;
before(async () => {
  proxies = await startL7Proxies();
});
after(() => proxies.close());

for (const [side, port] of [
  ['destination', () => proxies.inboundPort],
  ['source', () => proxies.outboundPort],
] as const) {
  test(`${side}: HTTP/1.1 CONNECT is answered 404 and its connection closed`, async () => {
    const before = proxies.podRequests.length;
    const reply = await rawHttp1(port(), 'CONNECT reviews:9080 HTTP/1.1\r\nHost: reviews:9080\r\n\r\nGET /admin/secret HTTP/1.1\r\nHost: reviews:9080\r\n\r\n');
    assert.equal(reply.status, 404, reply.text);
    assert.ok(reply.closedByPeer);
    assert.equal(proxies.podRequests.length, before);
  });

  test(`${side}: HTTP/2 CONNECT is answered 404 on its stream, by the proxy`, async () => {
    const before = proxies.podRequests.length;
    const answer = await h2Request(port(), [[':method', 'CONNECT'], [':authority', 'reviews:9080']]);
    assert.equal(answer.status, 404, JSON.stringify(answer));
    assert.match(answer.body, /CONNECT is not proxied on an HTTP port/);
    assert.equal(proxies.podRequests.length, before);
  });

  test(`${side}: HTTP/2 CONNECT with :path, with :scheme, or with :protocol is reset as malformed`, async () => {
    const before = proxies.podRequests.length;
    const cases: (readonly (readonly [string, string])[])[] = [
      [[':method', 'CONNECT'], [':authority', 'reviews:9080'], [':path', '/admin/secret']],
      [[':method', 'CONNECT'], [':authority', 'reviews:9080'], [':scheme', 'http']],
      [[':method', 'CONNECT'], [':protocol', 'websocket'], [':scheme', 'http'], [':authority', 'reviews:9080'], [':path', '/admin/secret']],
    ];
    for (const fields of cases) {
      const answer = await h2Request(port(), fields);
      assert.equal(answer.reset, PROTOCOL_ERROR, `${JSON.stringify(fields)}: ${JSON.stringify(answer)}`);
    }
    assert.equal(proxies.podRequests.length, before);
  });
}

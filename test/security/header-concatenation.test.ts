// Header concatenation: a header policy reads, sent twice (`x-user: alice` and `x-user: admin`), over
// HTTP/1.1 and HTTP/2. Envoy joins the values with "," and matches "alice,admin", which a DENY on
// `admin` misses while the pod (Node joins them too, as "alice, admin") may still act on `admin`.
// Ambit matches each value on its own with the strict reading for the action: a DENY holds when any
// value matches, an ALLOW only when every value does. Two Host headers are refused outright.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type L7Proxies, NO_ADMIN, h2Get, rawHttp1, startL7Proxies } from './helpers/l7-proxies.js';

/** Members only, by header: /members/* needs `x-user: alice`; everything else is open. */
const MEMBERS = `${NO_ADMIN}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: members, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
  rules:
  - to: [{operation: {notPaths: ["/members/*"]}}]
  - to: [{operation: {paths: ["/members/*"]}}]
    when: [{key: "request.headers[x-user]", values: ["alice"]}]
`;

let proxies: L7Proxies;
before(async () => {
  proxies = await startL7Proxies({ policies: MEMBERS });
});
after(() => proxies.close());

const twice = (path: string, first: string, second: string): string =>
  `GET ${path} HTTP/1.1\r\nHost: reviews:9080\r\nX-User: ${first}\r\nX-User: ${second}\r\nConnection: close\r\n\r\n`;

for (const [side, port] of [
  ['destination', () => proxies.inboundPort],
  ['source', () => proxies.outboundPort],
] as const) {
  test(`${side}: DENY x-user=admin holds when admin is one of two x-user headers, in either order and protocol`, async () => {
    const before = proxies.podRequests.length;
    assert.equal((await rawHttp1(port(), twice('/public', 'alice', 'admin'))).status, 403);
    assert.equal((await rawHttp1(port(), twice('/public', 'admin', 'alice'))).status, 403);
    // An array value goes out as one header field per value.
    assert.equal(await h2Get(port(), { ':path': '/public', 'x-user': ['alice', 'admin'] }), 403);
    assert.equal(proxies.podRequests.length, before, 'the pod never sees admin among its x-user values');
  });

  test(`${side}: ALLOW x-user=alice holds only when every x-user header says alice`, async () => {
    assert.equal((await rawHttp1(port(), twice('/members/1', 'alice', 'mallory'))).status, 403);
    assert.equal(await h2Get(port(), { ':path': '/members/1', 'x-user': ['mallory', 'alice'] }), 403);
    const both = await rawHttp1(port(), twice('/members/1', 'alice', 'alice'));
    assert.equal(both.status, 200);
    assert.deepEqual(
      proxies.podRequests.at(-1)!.rawHeaders.filter((_, i, raw) => i % 2 === 1 && raw[i - 1]!.toLowerCase() === 'x-user'),
      ['alice', 'alice'],
      'the values reach the pod as sent, one field each',
    );
  });

  test(`${side}: two Host headers are a 400`, async () => {
    const before = proxies.podRequests.length;
    const reply = await rawHttp1(port(), 'GET /public HTTP/1.1\r\nHost: reviews:9080\r\nHost: ratings:9080\r\nConnection: close\r\n\r\n');
    assert.equal(reply.status, 400, reply.text);
    assert.equal(proxies.podRequests.length, before);
  });
}

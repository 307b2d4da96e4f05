// VirtualService routing decisions on a bookinfo mesh, mostly with the examples of Istio's own
// documentation: header canary, weighted split, rewrite, redirect, direct response, header operations,
// fault, mirror, timeouts and retries, match semantics, which VirtualService applies, and TCP routes.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyHeaderMutations } from '../../agent/l7/header-mutation.js';
import { requestHost } from '../../agent/l7/hosts.js';
import { routeHttpRequest } from '../../agent/l7/http-router.js';
import { seededRandom } from '../../agent/l7/random.js';
import { requestHeaders } from '../../agent/l7/request.js';
import { ISTIO_DEFAULT_RETRY_POLICY } from '../../agent/l7/retry-policy.js';
import type { HttpRouteDecision } from '../../agent/l7/route-decision.js';
import { routeTcpConnection } from '../../agent/l7/tcp-router.js';
import { selectVirtualService } from '../../agent/l7/virtual-service.js';
import { mesh, request } from './helpers/l7-mesh.js';

const vs = (name: string, spec: string, ns = 'bookinfo') => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ${name}, namespace: ${ns}}
spec:
${spec}`;

function forward(d: HttpRouteDecision): Extract<HttpRouteDecision, { kind: 'forward' }> {
  assert.equal(d.kind, 'forward', JSON.stringify(d));
  return d as Extract<HttpRouteDecision, { kind: 'forward' }>;
}

// Istio's request-routing task: "route to v2 for user jason, v1 for everyone else".
const JASON = vs('reviews', `  hosts: [reviews]
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}`);

test('header canary: end-user jason goes to v2, anyone else to v1', () => {
  const s = mesh(JASON);
  const jason = forward(routeHttpRequest(s, request('reviews', { headers: ['End-User', 'jason'] })));
  assert.equal(jason.destination.subset, 'v2');
  assert.equal(jason.destination.host, 'reviews.bookinfo.svc.cluster.local');
  assert.equal(jason.destination.port, 9080);
  assert.equal(jason.destination.service?.name, 'reviews');
  assert.deepEqual(jason.route, { virtualService: 'bookinfo/reviews', routeIndex: 0, matchIndex: 0 });
  assert.equal(forward(routeHttpRequest(s, request('reviews', { headers: ['end-user', 'mike'] }))).destination.subset, 'v1');
  assert.equal(forward(routeHttpRequest(s, request('reviews'))).destination.subset, 'v1');
  // Exact is case-sensitive on the value (header names are not).
  assert.equal(forward(routeHttpRequest(s, request('reviews', { headers: ['end-user', 'Jason'] }))).destination.subset, 'v1');
});

test('a header sent twice is matched as its values joined by ",", as Envoy does', () => {
  const s = mesh(JASON);
  assert.equal(forward(routeHttpRequest(s, request('reviews', { headers: ['end-user', 'jason', 'end-user', 'jason'] }))).destination.subset, 'v1');
  const joined = mesh(vs('reviews', `  hosts: [reviews]
  http:
  - match: [{headers: {x-tag: {exact: "a,b"}}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - route: [{destination: {host: reviews, subset: v1}}]`));
  assert.equal(forward(routeHttpRequest(joined, request('reviews', { headers: ['x-tag', 'a', 'X-Tag', 'b'] }))).destination.subset, 'v3');
});

test('weighted split 80/20 lands within ±2% over 10000 requests (fixed seed)', () => {
  const s = mesh(vs('reviews', `  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 80
    - destination: {host: reviews, subset: v2}
      weight: 20`));
  const random = seededRandom(42);
  const counts = new Map<string, number>();
  for (let i = 0; i < 10_000; i++) {
    const subset = forward(routeHttpRequest(s, request('reviews'), random)).destination.subset!;
    counts.set(subset, (counts.get(subset) ?? 0) + 1);
  }
  assert.ok(Math.abs(counts.get('v1')! / 10_000 - 0.8) < 0.02, `v1 got ${counts.get('v1')}`);
  assert.ok(Math.abs(counts.get('v2')! / 10_000 - 0.2) < 0.02, `v2 got ${counts.get('v2')}`);
});

test('a zero weight receives nothing; a single destination takes all whatever its weight', () => {
  const s = mesh(vs('reviews', `  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /one}}]
    route: [{destination: {host: reviews, subset: v3}, weight: 5}]
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 100
    - destination: {host: reviews, subset: v2}
      weight: 0`));
  const random = seededRandom(7);
  for (let i = 0; i < 500; i++) assert.equal(forward(routeHttpRequest(s, request('reviews'), random)).destination.subset, 'v1');
  assert.equal(forward(routeHttpRequest(s, request('reviews', { path: '/one' }), random)).destination.subset, 'v3');
});

test("rewrite: Istio's /ratings → /v1/bookRatings replaces the matched prefix and keeps the query", () => {
  const s = mesh(vs('ratings', `  hosts: [ratings]
  http:
  - match:
    - uri: {prefix: /ratings}
    rewrite: {uri: /v1/bookRatings, authority: ratings-v1}
    route:
    - destination: {host: ratings, subset: v1}
  - match:
    - uri: {exact: /old}
    rewrite: {uri: /new}
    route: [{destination: {host: ratings}}]
  - match:
    - headers: {x-rewrite: {exact: root}}
    rewrite: {uri: /api/}
    route: [{destination: {host: ratings}}]
  - match:
    - uri: {prefix: /re/}
    rewrite:
      uriRegexRewrite: {match: "^/re/([a-z]+)/(\\\\d+)$", rewrite: "/\\\\2/\\\\1"}
    route: [{destination: {host: ratings}}]`));
  const d = forward(routeHttpRequest(s, request('ratings', { path: '/ratings/0?user=1' })));
  assert.equal(d.path, '/v1/bookRatings/0?user=1');
  assert.equal(d.authority, 'ratings-v1');
  assert.equal(forward(routeHttpRequest(s, request('ratings', { path: '/old?x' }))).path, '/new?x');
  // No uri match: istiod emits prefix "/", so only the leading slash is replaced (Envoy's behaviour).
  assert.equal(forward(routeHttpRequest(s, request('ratings', { path: '/books', headers: ['x-rewrite', 'root'] }))).path, '/api/books');
  assert.equal(forward(routeHttpRequest(s, request('ratings', { path: '/re/book/42' }))).path, '/42/book');
});

test("redirect and directResponse: Istio's examples answer without a backend", () => {
  const s = mesh(vs('ratings', `  hosts: [ratings]
  http:
  - match:
    - uri: {exact: /v1/getProductRatings}
    redirect:
      uri: /v1/bookRatings
      authority: newratings.default.svc.cluster.local
  - match:
    - uri: {prefix: /secure}
    redirect: {scheme: https, derivePort: FROM_PROTOCOL_DEFAULT, redirectCode: 308}
  - match:
    - uri: {exact: /unknown}
    directResponse:
      status: 503
      body: {string: "unknown path"}
    headers:
      response: {set: {content-type: text/plain}}`));
  assert.deepEqual(routeHttpRequest(s, request('ratings', { path: '/v1/getProductRatings?id=3' })), {
    kind: 'redirect',
    route: { virtualService: 'bookinfo/ratings', routeIndex: 0, matchIndex: 0 },
    status: 301,
    location: 'http://newratings.default.svc.cluster.local/v1/bookRatings?id=3',
    responseHeaders: [],
  });
  const secure = routeHttpRequest(s, request('ratings', { path: '/secure/x' }));
  assert.equal(secure.kind === 'redirect' && `${secure.status} ${secure.location}`, '308 https://ratings/secure/x');
  const direct = routeHttpRequest(s, request('ratings', { path: '/unknown' }));
  assert.equal(direct.kind, 'directResponse');
  assert.equal(direct.kind === 'directResponse' && `${direct.status} ${direct.body}`, '503 unknown path');
  assert.deepEqual(direct.kind === 'directResponse' && direct.responseHeaders, [{ remove: [], set: [['content-type', 'text/plain']], add: [] }]);
  // The VirtualService applies but no route matches: 404 NR, as Envoy answers.
  assert.deepEqual(routeHttpRequest(s, request('ratings', { path: '/other' })), { kind: 'noRoute', route: { virtualService: 'bookinfo/ratings' }, status: 404, responseFlag: 'NR' });
});

test("header operations: Istio's example; destination level first, then the route's", () => {
  const s = mesh(vs('reviews', `  hosts: [reviews]
  http:
  - headers:
      request:
        set: {test: "true"}
    route:
    - destination: {host: reviews, subset: v2}
      weight: 25
    - destination: {host: reviews, subset: v1}
      headers:
        request: {set: {test: "false"}, add: {x-canary: "no"}}
        response:
          remove: [foo]
      weight: 75`));
  const random = seededRandom(3);
  let sawV1 = false;
  for (let i = 0; i < 50 && !sawV1; i++) {
    const d = forward(routeHttpRequest(s, request('reviews', { headers: ['x-canary', 'yes'] }), random));
    if (d.destination.subset !== 'v1') continue;
    sawV1 = true;
    const upstream = applyHeaderMutations(requestHeaders(['test', 'orig', 'x-canary', 'yes']), d.requestHeaders);
    assert.deepEqual(upstream.get('test'), ['true'], 'the route-level set wins over the destination-level one');
    assert.deepEqual(upstream.get('x-canary'), ['yes', 'no']);
    const response = applyHeaderMutations(requestHeaders(['foo', '1', 'bar', '2']), d.responseHeaders);
    assert.deepEqual([...response.keys()], ['bar']);
  }
  assert.ok(sawV1);
});

test('retries: the default policy when unset, the configured one, none with attempts 0; timeout as written', () => {
  const s = mesh(vs('ratings', `  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /custom}}]
    route: [{destination: {host: ratings, subset: v1}}]
    timeout: 10s
    retries:
      attempts: 3
      perTryTimeout: 2s
      retryOn: gateway-error,connect-failure,refused-stream
  - match: [{uri: {prefix: /none}}]
    route: [{destination: {host: ratings}}]
    retries: {attempts: 0}
  - route: [{destination: {host: ratings}}]`));
  const dflt = forward(routeHttpRequest(s, request('ratings')));
  assert.equal(dflt.retry, ISTIO_DEFAULT_RETRY_POLICY);
  assert.equal(dflt.timeoutMs, undefined);
  const custom = forward(routeHttpRequest(s, request('ratings', { path: '/custom' })));
  assert.equal(custom.timeoutMs, 10_000);
  assert.equal(custom.retry.attempts, 3);
  assert.equal(custom.retry.perTryTimeoutMs, 2000);
  assert.deepEqual([...custom.retry.retryOn].sort(), ['connect-failure', 'gateway-error', 'refused-stream']);
  assert.equal(forward(routeHttpRequest(s, request('ratings', { path: '/none' }))).retry.attempts, 0);
  // No VirtualService at all: the default route, with Istio's default retries, to the service itself.
  const details = forward(routeHttpRequest(s, request('details')));
  assert.deepEqual(details.route, {});
  assert.equal(details.destination.host, 'details.bookinfo.svc.cluster.local');
  assert.equal(details.retry, ISTIO_DEFAULT_RETRY_POLICY);
});

test("fault injection: Istio's jason delay (100%) and abort at 50% over 4000 requests; unset percentage injects nothing", () => {
  const s = mesh(vs('ratings', `  hosts: [ratings]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    fault:
      delay:
        percentage: {value: 100.0}
        fixedDelay: 7s
    route: [{destination: {host: ratings, subset: v1}}]
  - match: [{headers: {end-user: {exact: mike}}}]
    fault:
      abort:
        percentage: {value: 50}
        httpStatus: 500
    route: [{destination: {host: ratings, subset: v1}}]
  - fault:
      delay: {fixedDelay: 1s}
    route: [{destination: {host: ratings, subset: v1}}]`));
  assert.deepEqual(forward(routeHttpRequest(s, request('ratings', { headers: ['end-user', 'jason'] }))).fault, { delayMs: 7000 });
  const random = seededRandom(11);
  let aborted = 0;
  for (let i = 0; i < 4000; i++) {
    const fault = forward(routeHttpRequest(s, request('ratings', { headers: ['end-user', 'mike'] }), random)).fault;
    if (fault?.abort?.kind === 'httpStatus' && fault.abort.status === 500) aborted++;
  }
  assert.ok(Math.abs(aborted / 4000 - 0.5) < 0.03, `aborted ${aborted}`);
  assert.equal(forward(routeHttpRequest(s, request('ratings'))).fault, undefined);
});

test("mirror: Istio's mirroring task copies every request; mirrorPercentage samples", () => {
  const s = mesh(vs('reviews', `  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /all}}]
    route:
    - destination: {host: reviews, subset: v1}
      weight: 100
    mirror: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}
    mirror: {host: reviews, subset: v3}
    mirrorPercentage: {value: 25.0}`));
  const all = forward(routeHttpRequest(s, request('reviews', { path: '/all' })));
  assert.deepEqual(all.mirrors.map((m) => `${m.host}/${m.subset}:${m.port}`), ['reviews.bookinfo.svc.cluster.local/v2:9080']);
  const random = seededRandom(5);
  let mirrored = 0;
  for (let i = 0; i < 4000; i++) mirrored += forward(routeHttpRequest(s, request('reviews'), random)).mirrors.length;
  assert.ok(Math.abs(mirrored / 4000 - 0.25) < 0.03, `mirrored ${mirrored}`);
});

test('match fields: uri kinds with full-match regex and ignoreUriCase, method, query, withoutHeaders, port, sourceLabels', () => {
  const s = mesh(vs('reviews', `  hosts: [reviews]
  http:
  - name: regex
    match: [{uri: {regex: "/api/v[0-9]+"}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - name: case
    match: [{uri: {prefix: /Books}, ignoreUriCase: true, method: {exact: POST}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - name: query
    match: [{queryParams: {debug: {exact: "1"}}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - name: without
    match: [{uri: {prefix: /w}, withoutHeaders: {x-internal: {prefix: ""}}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - name: from-sleep
    match: [{sourceLabels: {app: sleep}, sourceNamespace: other}, {port: 9999}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]`));
  const name = (opts: Parameters<typeof request>[1]) => forward(routeHttpRequest(s, request('reviews', opts))).route.routeName ?? 'default';
  assert.equal(name({ path: '/api/v2' }), 'regex');
  assert.equal(name({ path: '/api/v2?x=1' }), 'regex', 'the query string is not part of what uri matches');
  assert.equal(name({ path: '/api/v2/more' }), 'default', 'a regex must match the whole path (RE2 full match)');
  assert.equal(name({ path: '/books/1', method: 'POST' }), 'case');
  assert.equal(name({ path: '/books/1', method: 'GET' }), 'default', 'fields of one match block are ANDed');
  assert.equal(name({ path: '/x?debug=1&debug=2' }), 'query');
  assert.equal(name({ path: '/x?debug=2' }), 'default');
  assert.equal(name({ path: '/w' }), 'without');
  assert.equal(name({ path: '/w', headers: ['x-internal', 'yes'] }), 'default');
  assert.equal(name({ source: { namespace: 'other', labels: { app: 'sleep' } } }), 'from-sleep');
  assert.equal(name({ source: { namespace: 'bookinfo', labels: { app: 'sleep' } } }), 'default');
  assert.equal(name({ port: 9999 }), 'from-sleep', 'match blocks are ORed');
});

test('which VirtualService: short names per namespace, exact over wildcard, exportTo, gateways, shadowing', () => {
  const s = mesh(
    vs('wild', `  hosts: ["*.bookinfo.svc.cluster.local"]
  http: [{route: [{destination: {host: details}}]}]`),
    vs('reviews-a', `  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]`),
    vs('reviews-b', `  hosts: [reviews.bookinfo.svc.cluster.local]
  http: [{route: [{destination: {host: reviews, subset: v2}}]}]`),
    vs('private', `  hosts: [ratings.bookinfo.svc.cluster.local]
  exportTo: ["."]
  http: [{route: [{destination: {host: ratings, subset: v1}}]}]`),
    vs('gateway-only', `  hosts: [productpage.bookinfo.svc.cluster.local]
  gateways: [bookinfo-gateway]
  http: [{route: [{destination: {host: reviews}}]}]`),
    // "reviews" here means reviews.other.svc.cluster.local, not bookinfo's.
    vs('elsewhere', `  hosts: [reviews]
  http: [{route: [{destination: {host: ratings.bookinfo.svc.cluster.local}}]}]`, 'other'),
  );
  const reviews = selectVirtualService(s, 'reviews.bookinfo.svc.cluster.local', 'bookinfo');
  assert.equal(reviews?.virtualService.metadata.name, 'reviews-a', 'the oldest of equally specific VirtualServices wins');
  assert.deepEqual(reviews?.shadowed.map((v) => v.metadata.name), ['reviews-b']);
  assert.equal(selectVirtualService(s, 'details.bookinfo.svc.cluster.local', 'bookinfo')?.virtualService.metadata.name, 'wild');
  assert.equal(selectVirtualService(s, 'ratings.bookinfo.svc.cluster.local', 'bookinfo')?.virtualService.metadata.name, 'private');
  assert.equal(selectVirtualService(s, 'ratings.bookinfo.svc.cluster.local', 'other')?.virtualService.metadata.name, 'wild', 'exportTo "." hides it from other namespaces');
  assert.equal(selectVirtualService(s, 'productpage.bookinfo.svc.cluster.local', 'bookinfo')?.virtualService.metadata.name, 'wild', 'gateway-bound VirtualServices do not apply to the mesh');
  assert.equal(selectVirtualService(s, 'reviews.other.svc.cluster.local', 'other')?.virtualService.metadata.name, 'elsewhere');
  // Destination short names resolve in the VirtualService's namespace.
  assert.equal(forward(routeHttpRequest(s, request('details'))).destination.host, 'details.bookinfo.svc.cluster.local');
});

test('requestHost: the mesh host behind an authority (VIP, short, partial, full, foreign)', () => {
  const s = mesh();
  assert.equal(requestHost(s, '10.96.0.21:9080', 'other'), 'reviews.bookinfo.svc.cluster.local');
  assert.equal(requestHost(s, 'reviews:9080', 'bookinfo'), 'reviews.bookinfo.svc.cluster.local');
  assert.equal(requestHost(s, 'reviews.bookinfo', 'other'), 'reviews.bookinfo.svc.cluster.local');
  assert.equal(requestHost(s, 'Reviews.Bookinfo.svc', 'other'), 'reviews.bookinfo.svc.cluster.local');
  assert.equal(requestHost(s, 'example.com:443', 'bookinfo'), 'example.com');
});

test('destination port: written, else the service’s only port, else the request’s', () => {
  const s = mesh(vs('reviews', `  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /details}}]
    route: [{destination: {host: details}}]
  - match: [{uri: {prefix: /admin}}]
    route: [{destination: {host: details, port: {number: 9999}}}]
  - route: [{destination: {host: ratings}}]`));
  assert.equal(forward(routeHttpRequest(s, request('reviews', { path: '/details', port: 9080 }))).destination.port, 9080);
  assert.equal(forward(routeHttpRequest(s, request('reviews', { path: '/admin' }))).destination.port, 9999);
  assert.equal(forward(routeHttpRequest(s, request('reviews', { port: 9080 }))).destination.port, 9080);
  // A host that is not a Service still routes; the cluster lookup answers NC later.
  const ghost = mesh(vs('reviews', `  hosts: [reviews]
  http: [{route: [{destination: {host: ghost}}]}]`));
  assert.equal(forward(routeHttpRequest(ghost, request('reviews'))).destination.service, undefined);
});

test('tcp routes: first matching route, weights, and the service itself when nothing matches', () => {
  const s = mesh(vs('details-tcp', `  hosts: [details]
  tcp:
  - match: [{port: 9999}]
    route:
    - destination: {host: details, subset: v1, port: {number: 9999}}
      weight: 80
    - destination: {host: ratings, port: {number: 9080}}
      weight: 20`));
  const conn = (port: number) => ({ host: 'details.bookinfo.svc.cluster.local', port, destinationIp: '10.96.0.41', source: { namespace: 'bookinfo', labels: {} } });
  const random = seededRandom(99);
  let toRatings = 0;
  for (let i = 0; i < 5000; i++) if (routeTcpConnection(s, conn(9999), random).destination.host.startsWith('ratings')) toRatings++;
  assert.ok(Math.abs(toRatings / 5000 - 0.2) < 0.02, `ratings got ${toRatings}`);
  const other = routeTcpConnection(s, conn(9080), random);
  assert.deepEqual([other.route, other.destination.host, other.destination.port], [{}, 'details.bookinfo.svc.cluster.local', 9080]);
});

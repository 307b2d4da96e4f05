// Gateway API routes bound to Services (GAMMA), as Ambit's router decides them: conformance-style tables
// written from the API's own text (apis/v1/httproute_types.go and grpcroute_types.go of
// kubernetes-sigs/gateway-api v1.6.1, GEP-1294 for the mesh), on the bookinfo mesh of the L7 tests with
// one Service per reviews version, as Istio's Gateway API traffic-shifting task has them.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatDiagnostic } from '../../agent/config/diagnostics.js';
import { parseConfigFile } from '../../agent/config/load.js';
import { applyHeaderMutations } from '../../agent/l7/header-mutation.js';
import { routeHttpRequest } from '../../agent/l7/http-router.js';
import { seededRandom } from '../../agent/l7/random.js';
import type { HttpRouteDecision } from '../../agent/l7/route-decision.js';
import { routeTcpConnection } from '../../agent/l7/tcp-router.js';
import { buildSnapshot } from '../../agent/state/build.js';
import type { MeshSnapshot } from '../../agent/state/model.js';
import { BOOKINFO, request } from './helpers/l7-mesh.js';

const VERSION_SERVICES = ['v1', 'v2', 'v3'].map(
  (v, i) => `apiVersion: v1
kind: Service
metadata: {name: reviews-${v}, namespace: bookinfo}
spec: {clusterIP: 10.96.0.2${i + 5}, selector: {app: reviews, version: ${v}}, ports: [{name: http, port: 9080}]}`,
);

function gammaMesh(...yaml: string[]): MeshSnapshot {
  const parsed = parseConfigFile([BOOKINFO, ...VERSION_SERVICES, ...yaml].join('\n---\n'), 'mesh.yaml');
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic), []);
  return buildSnapshot(parsed.objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
}

const route = (name: string, rules: string, opts: { ns?: string; parent?: string; created?: string; kind?: string; apiVersion?: string } = {}) => `apiVersion: ${opts.apiVersion ?? 'gateway.networking.k8s.io/v1'}
kind: ${opts.kind ?? 'HTTPRoute'}
metadata: {name: ${name}, namespace: ${opts.ns ?? 'bookinfo'}${opts.created ? `, creationTimestamp: "${opts.created}"` : ''}}
spec:
  parentRefs: [${opts.parent ?? '{group: "", kind: Service, name: reviews, port: 9080}'}]
  rules:
${rules}`;

const to = (svc: string) => `backendRefs: [{name: ${svc}, port: 9080}]`;

function forward(d: HttpRouteDecision): Extract<HttpRouteDecision, { kind: 'forward' }> {
  assert.equal(d.kind, 'forward', JSON.stringify(d));
  return d as Extract<HttpRouteDecision, { kind: 'forward' }>;
}

const hostOf = (s: MeshSnapshot, path: string, extra: Parameters<typeof request>[1] = {}): string => {
  const d = routeHttpRequest(s, request('reviews', { path, ...extra }));
  return d.kind === 'forward' ? d.destination.host.split('.')[0]! : `${d.kind}:${'status' in d ? d.status : ''}`;
};

test('path matches: PathPrefix is element by element with the trailing slash ignored; Exact is exact and case-sensitive', () => {
  const s = gammaMesh(
    route('paths', `  - matches: [{path: {type: Exact, value: /exact}}]
    ${to('reviews-v1')}
  - matches: [{path: {type: PathPrefix, value: /abc/}}]
    ${to('reviews-v2')}
  - matches: [{path: {type: RegularExpression, value: "/re/[0-9]+"}}]
    ${to('reviews-v3')}`),
  );
  const table: [string, string][] = [
    ['/exact', 'reviews-v1'],
    ['/exact/', 'directResponse:404'.replace('directResponse', 'noRoute')],
    ['/Exact', 'noRoute:404'],
    ['/exactly', 'noRoute:404'],
    ['/abc', 'reviews-v2'],
    ['/abc/', 'reviews-v2'],
    ['/abc/def', 'reviews-v2'],
    ['/abc?x=1', 'reviews-v2'],
    ['/abcd', 'noRoute:404'],
    ['/re/42', 'reviews-v3'],
    ['/re/4a', 'noRoute:404'],
  ];
  for (const [path, want] of table) assert.equal(hostOf(s, path), want, path);
});

test('headers (names case-insensitive, first entry of a name counts), query parameters (case-sensitive names) and method', () => {
  const parsed = parseConfigFile(
    [
      BOOKINFO,
      ...VERSION_SERVICES,
      route('m', `  - matches:
    - headers: [{name: End-User, value: jason}, {name: end-user, value: ignored}]
    ${to('reviews-v2')}
  - matches: [{queryParams: [{name: Tag, type: RegularExpression, value: "v[0-9]"}]}]
    ${to('reviews-v3')}
  - matches: [{method: POST}]
    ${to('reviews-v1')}`),
    ].join('\n---\n'),
    'mesh.yaml',
  );
  assert.ok(parsed.diagnostics.some((d) => d.severity === 'warning' && /only the first entry of a name counts/.test(d.message)));
  const s = buildSnapshot(parsed.objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
  assert.equal(hostOf(s, '/', { headers: ['end-user', 'jason'] }), 'reviews-v2');
  assert.equal(hostOf(s, '/', { headers: ['END-USER', 'jason'] }), 'reviews-v2');
  assert.equal(hostOf(s, '/', { headers: ['end-user', 'ignored'] }), 'noRoute:404');
  assert.equal(hostOf(s, '/?Tag=v7'), 'reviews-v3');
  assert.equal(hostOf(s, '/?tag=v7'), 'noRoute:404');
  assert.equal(hostOf(s, '/', { method: 'POST' }), 'reviews-v1');
  assert.equal(hostOf(s, '/', { method: 'GET' }), 'noRoute:404');
});

test('a rule without matches matches every request (PathPrefix "/"), and a Service with routes answers 404 to what none matches', () => {
  const s = gammaMesh(route('all', `  - ${to('reviews-v3')}`));
  for (const path of ['/', '/x', '/reviews/0']) assert.equal(hostOf(s, path), 'reviews-v3');
  const narrow = gammaMesh(route('narrow', `  - matches: [{path: {value: /only}}]\n    ${to('reviews-v3')}`));
  const miss = routeHttpRequest(narrow, request('reviews', { path: '/other' }));
  assert.equal(miss.kind, 'noRoute');
  // A Service no route binds keeps its default route.
  assert.equal(forward(routeHttpRequest(narrow, request('ratings'))).destination.host, 'ratings.bookinfo.svc.cluster.local');
});

test('precedence across rules and routes, in the order the API text lists its criteria', () => {
  const table: { name: string; routes: string[]; req: Parameters<typeof request>[1]; want: string }[] = [
    {
      name: 'Exact path over any PathPrefix',
      routes: [route('a', `  - matches: [{path: {type: PathPrefix, value: /foo/bar}}]\n    ${to('reviews-v1')}\n  - matches: [{path: {type: Exact, value: /foo/bar}}]\n    ${to('reviews-v2')}`)],
      req: { path: '/foo/bar' },
      want: 'reviews-v2',
    },
    {
      name: 'the longest PathPrefix',
      routes: [route('a', `  - matches: [{path: {value: /foo}}]\n    ${to('reviews-v1')}`), route('b', `  - matches: [{path: {value: /foo/bar}}]\n    ${to('reviews-v2')}`)],
      req: { path: '/foo/bar/baz' },
      want: 'reviews-v2',
    },
    {
      name: 'a method match over none',
      routes: [route('a', `  - matches: [{path: {value: /foo}}]\n    ${to('reviews-v1')}\n  - matches: [{path: {value: /foo}, method: GET}]\n    ${to('reviews-v2')}`)],
      req: { path: '/foo' },
      want: 'reviews-v2',
    },
    {
      name: 'the most header matches',
      routes: [
        route('a', `  - matches: [{headers: [{name: a, value: '1'}]}]\n    ${to('reviews-v1')}`),
        route('b', `  - matches: [{headers: [{name: a, value: '1'}, {name: b, value: '2'}]}]\n    ${to('reviews-v2')}`),
      ],
      req: { headers: ['a', '1', 'b', '2'] },
      want: 'reviews-v2',
    },
    {
      name: 'then the most query parameter matches',
      routes: [route('a', `  - matches: [{queryParams: [{name: q, value: '1'}]}]\n    ${to('reviews-v1')}\n  - matches: [{queryParams: [{name: q, value: '1'}, {name: r, value: '2'}]}]\n    ${to('reviews-v2')}`)],
      req: { path: '/?q=1&r=2' },
      want: 'reviews-v2',
    },
    {
      name: 'on a tie across routes, the oldest by creationTimestamp',
      routes: [
        route('a-new', `  - ${to('reviews-v1')}`, { created: '2026-01-02T00:00:00Z' }),
        route('z-old', `  - ${to('reviews-v2')}`, { created: '2026-01-01T00:00:00Z' }),
      ],
      req: {},
      want: 'reviews-v2',
    },
    {
      name: 'then the first by "{namespace}/{name}"',
      routes: [route('zeta', `  - ${to('reviews-v1')}`), route('alpha', `  - ${to('reviews-v2')}`)],
      req: {},
      want: 'reviews-v2',
    },
    {
      name: 'then the first rule of the route',
      routes: [route('one', `  - ${to('reviews-v3')}\n  - ${to('reviews-v1')}`)],
      req: {},
      want: 'reviews-v3',
    },
  ];
  for (const row of table) assert.equal(hostOf(gammaMesh(...row.routes), row.req?.path ?? '/', row.req), row.want, row.name);
});

test('header modifiers on the rule and on one backend, in the API\'s set/add/remove shape', () => {
  const s = gammaMesh(
    route('h', `  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: X-Set, value: s}], add: [{name: x-add, value: a}], remove: [x-drop]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: x-resp, value: r}]}
    backendRefs: [{name: reviews-v1, port: 9080, filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-backend, value: v1}]}}]}]`),
  );
  const d = forward(routeHttpRequest(s, request('reviews', { headers: ['x-set', 'old', 'x-add', 'first', 'x-drop', 'gone'] })));
  const out = applyHeaderMutations(
    new Map([
      ['x-set', ['old']],
      ['x-add', ['first']],
      ['x-drop', ['gone']],
    ]),
    d.requestHeaders,
  );
  assert.deepEqual(Object.fromEntries(out), { 'x-set': ['s'], 'x-add': ['first', 'a'], 'x-backend': ['v1'] });
  assert.deepEqual(Object.fromEntries(applyHeaderMutations(new Map(), d.responseHeaders)), { 'x-resp': ['r'] });
});

test('RequestRedirect: 302 by default, the scheme\'s well-known port, the request\'s port without a scheme, prefix replaced', () => {
  const s = gammaMesh(
    route('r', `  - matches: [{path: {value: /old}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}}]
  - matches: [{path: {value: /secure}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, hostname: example.com, statusCode: 301}}]`),
  );
  const a = routeHttpRequest(s, request('reviews', { path: '/old/page?x=1' }));
  assert.equal(a.kind, 'redirect');
  assert.equal(a.kind === 'redirect' && a.status, 302);
  assert.equal(a.kind === 'redirect' && a.location, 'http://reviews:9080/new/page?x=1');
  const b = routeHttpRequest(s, request('reviews', { path: '/secure/x' }));
  assert.equal(b.kind === 'redirect' && b.status, 301);
  assert.equal(b.kind === 'redirect' && b.location, 'https://example.com/secure/x');
});

test('URLRewrite ReplacePrefixMatch: the API\'s own table of request path, prefix, replacement and result', () => {
  // From HTTPPathModifier's documentation in httproute_types.go.
  const table: [string, string, string, string][] = [
    ['/foo/bar', '/foo', '/xyz', '/xyz/bar'],
    ['/foo/bar', '/foo', '/xyz/', '/xyz/bar'],
    ['/foo/bar', '/foo/', '/xyz', '/xyz/bar'],
    ['/foo/bar', '/foo/', '/xyz/', '/xyz/bar'],
    ['/foo', '/foo', '/xyz', '/xyz'],
    ['/foo/', '/foo', '/xyz', '/xyz/'],
    ['/foo/bar', '/foo', '', '/bar'],
    ['/foo/', '/foo', '', '/'],
    ['/foo', '/foo', '', '/'],
    ['/foo/', '/foo', '/', '/'],
    ['/foo', '/foo', '/', '/'],
    // And a PathPrefix of "/" (every path), which keeps the whole path after the replacement.
    ['/foo/bar', '/', '/xyz', '/xyz/foo/bar'],
  ];
  for (const [path, prefix, replacement, want] of table) {
    const s = gammaMesh(
      route('rw', `  - matches: [{path: {type: PathPrefix, value: "${prefix}"}}]
    filters: [{type: URLRewrite, urlRewrite: {hostname: rewritten.example, path: {type: ReplacePrefixMatch, replacePrefixMatch: "${replacement}"}}}]
    ${to('reviews-v1')}`),
    );
    const d = forward(routeHttpRequest(s, request('reviews', { path })));
    assert.equal(d.path, want, `${path} with ${prefix} -> ${replacement}`);
    assert.equal(d.authority, 'rewritten.example');
  }
  const full = gammaMesh(route('rw', `  - matches: [{path: {value: /any}}]\n    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /fixed}}}]\n    ${to('reviews-v1')}`));
  assert.equal(forward(routeHttpRequest(full, request('reviews', { path: '/any/deep/path?q=1' }))).path, '/fixed?q=1');
});

test('weighted backendRefs (Istio\'s traffic-shifting task as an HTTPRoute): 80/20 within ±2% over 10000 requests; weight 0 gets nothing', () => {
  const s = gammaMesh(route('shift', `  - backendRefs: [{name: reviews-v1, port: 9080, weight: 80}, {name: reviews-v3, port: 9080, weight: 20}, {name: reviews-v2, port: 9080, weight: 0}]`));
  const random = seededRandom(7);
  const counts = new Map<string, number>();
  for (let i = 0; i < 10_000; i++) {
    const host = forward(routeHttpRequest(s, request('reviews'), random)).destination.host.split('.')[0]!;
    counts.set(host, (counts.get(host) ?? 0) + 1);
  }
  assert.ok(Math.abs((counts.get('reviews-v1') ?? 0) / 10_000 - 0.8) < 0.02, JSON.stringify([...counts]));
  assert.equal(counts.get('reviews-v2'), undefined);
});

test('unusable backends: a missing Service takes its share as 500s, all weights 0 or no backendRefs answer 500, and ResolvedRefs says why', () => {
  const s = gammaMesh(route('bad', `  - matches: [{path: {value: /half}}]
    backendRefs: [{name: reviews-v1, port: 9080}, {name: nowhere, port: 9080}]
  - matches: [{path: {value: /zero}}]
    backendRefs: [{name: reviews-v1, port: 9080, weight: 0}]
  - matches: [{path: {value: /none}}]`));
  const random = seededRandom(3);
  const outcomes = new Map<string, number>();
  for (let i = 0; i < 2000; i++) {
    const d = routeHttpRequest(s, request('reviews', { path: '/half' }), random);
    const key = d.kind === 'forward' ? d.destination.host.split('.')[0]! : `${d.kind}:${'status' in d ? d.status : ''}`;
    outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
  }
  assert.ok(Math.abs((outcomes.get('directResponse:500') ?? 0) / 2000 - 0.5) < 0.05, JSON.stringify([...outcomes]));
  for (const path of ['/zero', '/none']) assert.equal(hostOf(s, path), 'directResponse:500', path);
  const status = s.gatewayApi.statuses.find((st) => st.route.metadata.name === 'bad')!;
  assert.deepEqual(
    status.parents[0]!.conditions.map((c) => [c.type, c.status, c.reason]),
    [
      ['Accepted', 'True', 'Accepted'],
      ['ResolvedRefs', 'False', 'BackendNotFound'],
    ],
  );
});

test('timeouts.request is the route timeout, backendRequest the per-try timeout; retry (experimental) sets attempts and codes', () => {
  const s = gammaMesh(
    route('t', `  - matches: [{path: {value: /t}}]
    timeouts: {request: 10s, backendRequest: 2s}
    ${to('reviews-v1')}
  - matches: [{path: {value: /r}}]
    retry: {codes: [500, 502], attempts: 4, backoff: 100ms}
    ${to('reviews-v1')}
  - matches: [{path: {value: /off}}]
    timeouts: {request: 0s}
    ${to('reviews-v1')}`),
  );
  const t = forward(routeHttpRequest(s, request('reviews', { path: '/t' })));
  assert.equal(t.timeoutMs, 10_000);
  assert.equal(t.retry.perTryTimeoutMs, 2000);
  const r = forward(routeHttpRequest(s, request('reviews', { path: '/r' })));
  assert.equal(r.retry.attempts, 4);
  assert.deepEqual([...r.retry.retriableStatusCodes].sort(), [500, 502]);
  assert.ok(r.retry.retryOn.has('connect-failure') && r.retry.retryOn.has('reset'));
  assert.equal(forward(routeHttpRequest(s, request('reviews', { path: '/off' }))).timeoutMs, undefined);
});

test('RequestMirror sends a copy to its backend, at its percent', () => {
  const s = gammaMesh(route('m', `  - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: reviews-v3, port: 9080}}}]\n    ${to('reviews-v1')}`));
  assert.deepEqual(
    forward(routeHttpRequest(s, request('reviews'))).mirrors.map((m) => m.host),
    ['reviews-v3.bookinfo.svc.cluster.local'],
  );
  const none = gammaMesh(route('m', `  - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: reviews-v3, port: 9080}, percent: 0}}]\n    ${to('reviews-v1')}`));
  assert.deepEqual(forward(routeHttpRequest(none, request('reviews'))).mirrors, []);
});

test('producer and consumer routes (GEP-1294): a consumer route applies to its own namespace only, and there it wins', () => {
  const s = gammaMesh(
    route('producer', `  - ${to('reviews-v1')}`),
    // A backendRef without a namespace is in the route's namespace, so a consumer route names bookinfo's.
    route('consumer', `  - backendRefs: [{name: reviews-v3, namespace: bookinfo, port: 9080}]`, { ns: 'other', parent: '{group: "", kind: Service, name: reviews, namespace: bookinfo}' }),
  );
  assert.equal(hostOf(s, '/'), 'reviews-v1');
  assert.equal(hostOf(s, '/', { source: { namespace: 'other', labels: { app: 'sleep' }, ip: '10.244.2.50' } }), 'reviews-v3');
});

test('parentRef port and sectionName bind one port; a parent that does not exist is NoMatchingParent', () => {
  const s = gammaMesh(
    route('p', `  - ${to('reviews-v2')}`, { parent: '{kind: Service, group: "", name: details, sectionName: http}' }),
    route('missing', `  - ${to('reviews-v2')}`, { parent: '{kind: Service, group: "", name: ghost}' }),
    route('badport', `  - ${to('reviews-v2')}`, { parent: '{kind: Service, group: "", name: ratings, port: 1234}' }),
  );
  const details = (port: number) => forward(routeHttpRequest(s, request('details', { port }))).destination;
  assert.equal(details(9080).host, 'reviews-v2.bookinfo.svc.cluster.local');
  // The other port of details keeps going to details itself, as if no route were bound.
  assert.deepEqual([details(9999).host, details(9999).port], ['details.bookinfo.svc.cluster.local', 9999]);
  for (const [name, reason] of [
    ['missing', 'NoMatchingParent'],
    ['badport', 'NoMatchingParent'],
  ]) {
    const st = s.gatewayApi.statuses.find((x) => x.route.metadata.name === name)!;
    assert.deepEqual([st.parents[0]!.conditions[0].status, st.parents[0]!.conditions[0].reason], ['False', reason], name);
  }
  assert.ok(s.diagnostics.some((d) => d.object?.name === 'missing' && /ghost does not exist/.test(d.message)));
});

test('GRPCRoute: service and method matches become the request path, and on one port a GRPCRoute wins over an HTTPRoute (Conflicted)', () => {
  const grpc = (rules: string) => route('g', rules, { kind: 'GRPCRoute' });
  const s = gammaMesh(
    grpc(`  - matches: [{method: {service: helloworld.Greeter, method: SayHello}}]
    ${to('reviews-v1')}
  - matches: [{method: {service: helloworld.Greeter}}]
    ${to('reviews-v2')}
  - matches: [{method: {method: Check}, headers: [{name: x-env, value: canary}]}]
    ${to('reviews-v3')}`),
    route('h', `  - ${to('reviews-v3')}`),
  );
  const post = (path: string, headers: string[] = []) => hostOf(s, path, { method: 'POST', headers: ['content-type', 'application/grpc', ...headers] });
  assert.equal(post('/helloworld.Greeter/SayHello'), 'reviews-v1');
  assert.equal(post('/helloworld.Greeter/SayGoodbye'), 'reviews-v2');
  assert.equal(post('/grpc.health.v1.Health/Check', ['x-env', 'canary']), 'reviews-v3');
  assert.equal(post('/grpc.health.v1.Health/Check'), 'noRoute:404');
  const h = s.gatewayApi.statuses.find((x) => x.route.kind === 'HTTPRoute')!;
  assert.deepEqual([h.parents[0]!.conditions[0].status, h.parents[0]!.conditions[0].reason], ['False', 'Conflicted']);
});

test('TCPRoute on a TCP port: weighted backends for connections to that port only', () => {
  const s = gammaMesh(
    route('t', `  - backendRefs: [{name: reviews-v2, port: 9080}]`, { kind: 'TCPRoute', apiVersion: 'gateway.networking.k8s.io/v1alpha2', parent: '{group: "", kind: Service, name: details, port: 9999}' }),
  );
  const conn = (port: number) => routeTcpConnection(s, { host: 'details.bookinfo.svc.cluster.local', port, destinationIp: '10.96.0.41', source: { namespace: 'bookinfo', labels: {}, ip: '10.244.1.10' } });
  assert.equal(conn(9999).destination.host, 'reviews-v2.bookinfo.svc.cluster.local');
  assert.equal(conn(9080).destination.host, 'details.bookinfo.svc.cluster.local');
});

test('refused at parse time, as the API server would refuse them: redirect with rewrite, ReplacePrefixMatch without a PathPrefix, unknown filters, bad durations', () => {
  const cases: [string, RegExp][] = [
    [`  - filters: [{type: RequestRedirect, requestRedirect: {hostname: a}}, {type: URLRewrite, urlRewrite: {hostname: b}}]`, /RequestRedirect and URLRewrite cannot be used together/],
    [`  - matches: [{path: {type: Exact, value: /a}}]\n    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]\n    ${to('reviews-v1')}`, /ReplacePrefixMatch needs exactly one match/],
    [`  - filters: [{type: ExtensionRef, extensionRef: {group: x, kind: y, name: z}}]\n    ${to('reviews-v1')}`, /filter type ExtensionRef is not supported/],
    [`  - timeouts: {request: 1.5s}\n    ${to('reviews-v1')}`, /Gateway API duration/],
    [`  - backendRefs: [{name: reviews-v1}]`, /names its port/],
  ];
  for (const [rules, message] of cases) {
    const parsed = parseConfigFile(route('x', rules), 'bad.yaml');
    assert.equal(parsed.objects.length, 0, rules);
    assert.ok(parsed.diagnostics.some((d) => d.severity === 'error' && message.test(formatDiagnostic(d))), parsed.diagnostics.map(formatDiagnostic).join('\n'));
  }
});

test('a route bound only to an ingress Gateway is another controller\'s: read without validation, applied to nothing, no status', () => {
  const ingress = route('ingress', `  - filters: [{type: CORS, cors: {allowOrigins: ["*"]}}]\n    ${to('reviews-v1')}`, { parent: '{name: public-gateway}' });
  const parsed = parseConfigFile(ingress, 'ingress.yaml');
  assert.deepEqual(parsed.diagnostics.map(formatDiagnostic), []);
  const s = gammaMesh(ingress);
  assert.equal(hostOf(s, '/'), 'reviews');
  assert.deepEqual(s.gatewayApi.statuses.map((st) => st.parents.length), [0]);
});

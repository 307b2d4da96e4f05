// L7 AuthorizationPolicy: Istio's documented examples decided per request with the peer identity, path
// normalization, hosts with and without ports, repeated headers, and what stays L4 on non-HTTP ports.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfigFile } from '../../agent/config/load.js';
import { requestHeaders } from '../../agent/l7/request.js';
import { authorizeConnection } from '../../agent/policy/authorization.js';
import {
  type HttpAuthorizationAttributes,
  RBAC_DENIED_BODY,
  authorizeRequest,
  deniedResponse,
  denialDetails,
  inboundPortProtocol,
  pathMatches,
} from '../../agent/policy/http-authorization.js';
import { normalizeOriginForm } from '../../agent/l7/request-target.js';
import { buildSnapshot } from '../../agent/state/build.js';
import type { MeshSnapshot, SpiffeId } from '../../agent/state/model.js';

const WORKLOADS = `
apiVersion: v1
kind: Pod
metadata: { name: httpbin, namespace: foo, labels: { app: httpbin } }
spec: { containers: [{ name: c, command: [x], ports: [{ name: http-web, containerPort: 8000 }, { name: metrics, containerPort: 9090 }] }] }
status: { podIP: 10.1.0.1 }
---
apiVersion: v1
kind: Service
metadata: { name: httpbin, namespace: foo }
spec:
  clusterIP: 10.96.0.10
  selector: { app: httpbin }
  ports: [{ name: http, port: 8000, targetPort: 8000 }, { name: db, port: 5432, targetPort: 5432 }]
`;

function mesh(policies: string): MeshSnapshot {
  const parsed = parseConfigFile(`${WORKLOADS}---\n${policies}`, 'policies.yaml');
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error'), []);
  return buildSnapshot(parsed.objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
}

interface RequestSpec {
  readonly identity?: string;
  readonly ip?: string;
  readonly method?: string;
  readonly path?: string;
  readonly authority?: string;
  readonly port?: number;
  /** rawHeaders form: a header sent twice appears twice. */
  readonly headers?: string[];
}

function request(s: MeshSnapshot, r: RequestSpec = {}): HttpAuthorizationAttributes {
  const destination = s.workloads.get('foo/httpbin')!;
  return {
    ...(r.identity ? { sourceIdentity: `spiffe://${r.identity}` as SpiffeId } : {}),
    sourceIp: r.ip ?? '10.2.0.9',
    destination,
    destinationIp: destination.ips[0]!,
    destinationPort: r.port ?? 8000,
    method: r.method ?? 'GET',
    authority: r.authority ?? 'httpbin.foo.svc.cluster.local:8000',
    path: r.path ?? '/',
    headers: requestHeaders(r.headers ?? []),
  };
}

const SLEEP = 'cluster.local/ns/default/sa/sleep';
const TESTER = 'cluster.local/ns/test/sa/tester';
const allowed = (s: MeshSnapshot, r: RequestSpec): boolean => authorizeRequest(s, request(s, r)).allowed;

test("Istio's ALLOW example: sleep or namespace test may GET /info* and POST /data, nothing else", () => {
  const s = mesh(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: httpbin, namespace: foo }
spec:
  action: ALLOW
  rules:
  - from:
    - source: { principals: ["${SLEEP}"] }
    - source: { namespaces: ["test"] }
    to:
    - operation: { methods: ["GET"], paths: ["/info*"] }
    - operation: { methods: ["POST"], paths: ["/data"] }
`);
  assert.deepEqual(authorizeRequest(s, request(s, { identity: SLEEP, path: '/info/about' })), { allowed: true, policy: 'foo/httpbin' });
  assert.equal(allowed(s, { identity: TESTER, method: 'POST', path: '/data' }), true);
  assert.equal(allowed(s, { identity: TESTER, method: 'POST', path: '/data?x=1' }), true, 'the query string is not part of the path matched');
  assert.equal(allowed(s, { identity: TESTER, method: 'GET', path: '/data' }), false);
  assert.equal(allowed(s, { identity: SLEEP, method: 'POST', path: '/data/more' }), false);
  assert.equal(allowed(s, { identity: 'cluster.local/ns/other/sa/x', path: '/info' }), false);
  assert.equal(allowed(s, { path: '/info' }), false, 'plaintext has no principal or namespace');
  const denied = authorizeRequest(s, request(s, { identity: SLEEP, method: 'DELETE', path: '/info' }));
  assert.deepEqual(denied, { allowed: false, reason: 'not-allowed' });
  if (!denied.allowed) assert.equal(denialDetails(denied), 'rbac_access_denied_matched_policy[none]');
});

test("Istio's DENY examples: notNamespaces, and a DENY on a method beats an ALLOW-all", () => {
  const s = mesh(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-outsiders, namespace: foo }
spec:
  action: DENY
  rules: [{ from: [{ source: { notNamespaces: ["foo", "default"] } }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-delete, namespace: foo }
spec:
  selector: { matchLabels: { app: httpbin } }
  action: DENY
  rules: [{ to: [{ operation: { methods: ["DELETE"], notPaths: ["/tmp/*"] } }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-all, namespace: foo }
spec: { rules: [{}] }
`);
  assert.equal(allowed(s, { identity: SLEEP, method: 'GET', path: '/anything' }), true);
  assert.deepEqual(authorizeRequest(s, request(s, { identity: TESTER })), { allowed: false, reason: 'denied', policy: 'foo/deny-outsiders' });
  const del = authorizeRequest(s, request(s, { identity: SLEEP, method: 'DELETE', path: '/items/1' }));
  assert.deepEqual(del, { allowed: false, reason: 'denied', policy: 'foo/deny-delete' });
  if (!del.allowed) assert.equal(denialDetails(del), 'rbac_access_denied_matched_policy[foo/deny-delete]');
  assert.equal(allowed(s, { identity: SLEEP, method: 'DELETE', path: '/tmp/scratch' }), true);
});

test('when request.headers: values, notValues, header names in any case, and a header sent twice is matched value by value', () => {
  const s = mesh(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: version-gate, namespace: foo }
spec:
  action: ALLOW
  rules:
  - to: [{ operation: { paths: ["/api/*"] } }]
    when: [{ key: "request.headers[X-Version]", values: ["v1", "v2*"] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: block-bots, namespace: foo }
spec:
  action: DENY
  rules:
  - when: [{ key: "request.headers[user-agent]", values: ["*bot"] }]
`);
  assert.equal(allowed(s, { path: '/api/x', headers: ['x-version', 'v1'] }), true);
  assert.equal(allowed(s, { path: '/api/x', headers: ['X-VERSION', 'v2-beta'] }), true);
  assert.equal(allowed(s, { path: '/api/x', headers: ['x-version', 'v3'] }), false);
  assert.equal(allowed(s, { path: '/api/x' }), false, 'an absent header does not satisfy values');
  // Joined, "v1,v3" would simply fail to match; matched apart, ALLOW requires every value to qualify.
  assert.equal(allowed(s, { path: '/api/x', headers: ['x-version', 'v1', 'x-version', 'v3'] }), false);
  assert.equal(allowed(s, { path: '/api/x', headers: ['x-version', 'v1', 'x-version', 'v2'] }), true);
  // DENY holds when any value matches: a second, innocent user-agent does not hide the bot.
  assert.deepEqual(authorizeRequest(s, request(s, { path: '/api/x', headers: ['x-version', 'v1', 'user-agent', 'curl/8', 'user-agent', 'evilbot'] })), {
    allowed: false,
    reason: 'denied',
    policy: 'foo/block-bots',
  });
  assert.equal(allowed(s, { path: '/api/x', headers: ['x-version', 'v1', 'user-agent', 'curl/8'] }), true);
});

test('when request.headers notValues: absent satisfies it, and DENY takes any value outside the list', () => {
  const s = mesh(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: only-admins-delete, namespace: foo }
spec:
  action: DENY
  rules:
  - to: [{ operation: { methods: ["DELETE"] } }]
    when: [{ key: "request.headers[x-role]", notValues: ["admin"] }]
`);
  assert.equal(allowed(s, { method: 'DELETE', headers: ['x-role', 'admin'] }), true);
  assert.equal(allowed(s, { method: 'DELETE', headers: ['x-role', 'guest'] }), false);
  assert.equal(allowed(s, { method: 'DELETE' }), false, 'no x-role header is not admin');
  assert.equal(allowed(s, { method: 'DELETE', headers: ['x-role', 'admin', 'x-role', 'guest'] }), false);
  assert.equal(allowed(s, { method: 'GET', headers: ['x-role', 'guest'] }), true);
});

test('hosts and notHosts: case-insensitive, the port is part of the host unless the pattern says host:*', () => {
  const s = mesh(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: by-host, namespace: foo }
spec:
  rules:
  - to: [{ operation: { hosts: ["httpbin.foo.svc.cluster.local", "httpbin.foo:*", "*.example.com"] } }]
  - to: [{ operation: { notHosts: ["*.internal"], paths: ["/public"] } }]
`);
  assert.equal(allowed(s, { authority: 'HTTPBIN.foo.svc.cluster.local' }), true);
  assert.equal(allowed(s, { authority: 'httpbin.foo.svc.cluster.local:8000' }), false, 'an exact host does not cover host:port');
  assert.equal(allowed(s, { authority: 'httpbin.foo:8000' }), true);
  assert.equal(allowed(s, { authority: 'api.Example.com' }), true);
  assert.equal(allowed(s, { authority: 'other', path: '/public' }), true);
  assert.equal(allowed(s, { authority: 'db.internal', path: '/public' }), false);
});

test('request.auth.* and requestPrincipals: an ALLOW rule needing them never matches, a DENY rule is enforced on the rest', () => {
  const s = mesh(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: jwt-allow, namespace: foo }
spec:
  rules:
  - from: [{ source: { requestPrincipals: ["*"] } }]
  - to: [{ operation: { paths: ["/healthz"] } }]
  - when: [{ key: "request.auth.claims[iss]", values: ["https://accounts.google.com"] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: jwt-deny, namespace: foo }
spec:
  action: DENY
  rules:
  - to: [{ operation: { paths: ["/admin*"] } }]
    when: [{ key: "request.auth.claims[groups]", notValues: ["admins"] }]
`);
  assert.equal(allowed(s, { identity: SLEEP, path: '/data' }), false);
  assert.equal(allowed(s, { identity: SLEEP, path: '/healthz' }), true);
  assert.equal(allowed(s, { identity: SLEEP, path: '/admin/users' }), false, 'the DENY holds on its path alone');
});

test('remoteIpBlocks and remote.ip are the connection source; source.ip and destination.port still work per request', () => {
  const s = mesh(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: net, namespace: foo }
spec:
  rules:
  - from: [{ source: { remoteIpBlocks: ["10.2.0.0/16"] } }]
    when: [{ key: destination.port, values: ["8000"] }, { key: remote.ip, notValues: ["10.2.0.66"] }]
`);
  assert.equal(allowed(s, { ip: '10.2.3.4' }), true);
  assert.equal(allowed(s, { ip: '10.2.0.66' }), false);
  assert.equal(allowed(s, { ip: '10.3.0.1' }), false);
  assert.equal(allowed(s, { ip: '10.2.3.4', port: 9090 }), false);
});

test('paths are matched as the proxy normalized them: dots, encoded unreserved characters, backslashes, "//"', () => {
  const s = mesh(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: no-admin, namespace: foo }
spec:
  action: DENY
  rules: [{ to: [{ operation: { paths: ["/admin", "/admin/*"] } }] }]
`);
  for (const raw of ['/admin', '/public/../admin', '/%61dmin', '/public/%2e%2e/admin', '\\admin', '/./admin/', '/admin?x=1', '//admin', '/admin#frag']) {
    const n = normalizeOriginForm(raw);
    assert.ok(n.ok);
    if (n.ok) assert.equal(allowed(s, { path: n.path }), false, `${raw} → ${n.path} must be denied`);
  }
  // BASE keeps "//admin", which is not "/admin": Istio's default, and why Ambit's is MERGE_SLASHES (CVE-2021-31920).
  assert.deepEqual(normalizeOriginForm('//admin', 'BASE'), { ok: true, path: '//admin' });
});

test('path patterns: exact, prefix*, *suffix, * and the {*} / {**} templates', () => {
  assert.equal(pathMatches('/info*', '/info/x'), true);
  assert.equal(pathMatches('*.png', '/img/a.png'), true);
  assert.equal(pathMatches('*', '/'), true);
  assert.equal(pathMatches('/data', '/data/'), false);
  assert.equal(pathMatches('/users/{*}/orders', '/users/42/orders'), true);
  assert.equal(pathMatches('/users/{*}/orders', '/users/4/2/orders'), false);
  assert.equal(pathMatches('/files/{**}', '/files/a/b.txt'), true);
  assert.equal(pathMatches('/files/{**}', '/files/'), false);
  assert.equal(pathMatches('/a.b/{*}', '/aXb/c'), false, 'the literal parts are not regular expressions');
});

test('a denial is 403 "RBAC: access denied", as Envoy answers it', () => {
  const r = deniedResponse();
  assert.equal(r.status, 403);
  assert.equal(r.body, RBAC_DENIED_BODY);
  assert.equal(r.body, 'RBAC: access denied');
  assert.equal(r.headers['content-length'], '19');
});

test('the L4 evaluator keeps ztunnel semantics for HTTP-only rules; HTTP ports are told apart for per-request checks', () => {
  const s = mesh(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-delete, namespace: foo }
spec:
  action: DENY
  rules: [{ to: [{ operation: { methods: ["DELETE"], ports: ["5432"] } }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-get, namespace: foo }
spec:
  rules: [{ to: [{ operation: { methods: ["GET"] } }] }, { to: [{ operation: { ports: ["8000"] } }] }]
`);
  const workload = s.workloads.get('foo/httpbin')!;
  assert.equal(inboundPortProtocol(s, workload, 8000), 'HTTP');
  assert.equal(inboundPortProtocol(s, workload, 5432), 'TCP');
  assert.equal(inboundPortProtocol(s, workload, 9090), 'TCP', 'a container port named "metrics" is TCP');
  const conn = (port: number) => ({ sourceIp: '10.2.0.9', destination: workload, destinationIp: '10.1.0.1', destinationPort: port });
  // On a TCP port a DENY with methods applies on its L4 part (the port), an ALLOW with methods never matches.
  assert.deepEqual(authorizeConnection(s, conn(5432)), { allowed: false, reason: 'denied', policy: 'foo/deny-delete' });
  assert.deepEqual(authorizeConnection(s, conn(8000)), { allowed: true, policy: 'foo/allow-get' });
  assert.deepEqual(authorizeConnection(s, conn(7000)), { allowed: false, reason: 'not-allowed' });
  // Per request the same policies see the method.
  assert.equal(allowed(s, { port: 7000, method: 'GET' }), true);
  assert.equal(allowed(s, { port: 7000, method: 'POST' }), false);
  assert.equal(allowed(s, { port: 5432, method: 'GET' }), true);
  assert.equal(allowed(s, { port: 5432, method: 'DELETE' }), false);
});

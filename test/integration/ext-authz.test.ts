// Istio's ext-authz and JWT tasks, written for the lab. Real curl from an enrolled pod on node alpha to
// httpbin on beta; beta's agent authenticates and authorizes each request. The external authorizer is a
// pod outside the mesh running helpers/ext-authz-server.ts: HTTP (envoyExtAuthzHttp) for Service httpbin,
// gRPC Authorization/Check (envoyExtAuthzGrpc) for Service httpbin-grpc, each attached by targetRefs and
// named in MeshConfig (ConfigMap istio-system/istio). The JWT task's RequestAuthentication fetches its
// JWKS from that pod (jwksUri): a valid token is 200, an invalid one 401, none 403 by a requestPrincipals
// policy. A third Service, httpbin-body, is checked over gRPC with includeRequestBodyInCheck: a POST's
// body reaches the authorizer and, whole, the pod; a body over maxRequestBytes is 413.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { ambit } from './helpers/lab-cli.js';
import { LabSession, twoNodesYaml } from './helpers/lab-session.js';
import { nowSeconds, signToken, testIssuer } from '../unit/helpers/jwt-tokens.js';

const LAB = `tea${process.pid % 1000}`;
const session = LabSession.inTempDir(LAB, 'ambit-ext-authz-test-');
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const AUTHZ = fileURLToPath(new URL('./helpers/ext-authz-server.ts', import.meta.url));
const AUTHZ_POD = '10.228.2.30';
const ISSUER = 'testing@secure.istio.io';
const issuer = testIssuer('RS256', 'lab');
const stranger = testIssuer('RS256', 'lab');
const MAX_BODY = 64;

// httpbin's /headers, as far as this test needs it: the request headers the pod received, as JSON.
const HTTPBIN = `require('http').createServer((q, s) => { let body = ''; q.on('data', (c) => { body += c; }); q.on('end', () => s.end(JSON.stringify({ url: q.url, headers: q.headers, body }))); }).listen(8000);`;

// lab up waits for readiness: without a probe a container is ready once started, and the first check could
// reach the authorizer before it listens (ECONNREFUSED, answered 403 as Envoy's status_on_error).
const READY_ON_8000 = '{ tcpSocket: { port: 8000 }, periodSeconds: 1 }';

function meshYaml(): string {
  const pod = (name: string, ns: string, ip: string, node: string, command: string[], extra = ''): string => `---
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: ${ns}, labels: { app: ${name} } }
spec:
  nodeName: ${node}
  containers: [{ name: main, command: ${JSON.stringify(command)}${extra} }]
status: { podIP: ${ip} }
`;
  return `${twoNodesYaml(97, 228)}
---
apiVersion: v1
kind: Namespace
metadata: { name: foo, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Namespace
metadata: { name: authz }
${pod('sleep', 'foo', '10.228.1.20', 'alpha', ['sleep', 'infinity'])}${pod('httpbin', 'foo', '10.228.2.11', 'beta', ['node', '-e', HTTPBIN], `, readinessProbe: ${READY_ON_8000}`)}${pod('ext-authz', 'authz', AUTHZ_POD, 'beta', [process.execPath, '--import', 'tsx', AUTHZ, '8000', '9000', '8080', join(session.dir!, 'jwks.json')], `, workingDir: ${REPO}, readinessProbe: ${READY_ON_8000}`)}---
apiVersion: v1
kind: Service
metadata: { name: httpbin, namespace: foo }
spec: { clusterIP: 10.110.0.11, selector: { app: httpbin }, ports: [{ name: http, port: 8000, targetPort: 8000 }] }
---
apiVersion: v1
kind: Service
metadata: { name: httpbin-grpc, namespace: foo }
spec: { clusterIP: 10.110.0.12, selector: { app: httpbin }, ports: [{ name: http, port: 8000, targetPort: 8000 }] }
---
apiVersion: v1
kind: Service
metadata: { name: httpbin-body, namespace: foo }
spec: { clusterIP: 10.110.0.13, selector: { app: httpbin }, ports: [{ name: http, port: 8000, targetPort: 8000 }] }
---
apiVersion: v1
kind: Service
metadata: { name: ext-authz, namespace: authz }
spec: { clusterIP: 10.110.0.20, selector: { app: ext-authz }, ports: [{ name: http, port: 8000, targetPort: 8000 }, { name: grpc, port: 9000, targetPort: 9000 }] }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: istio, namespace: istio-system }
data:
  mesh: |-
    extensionProviders:
    - name: sample-ext-authz-http
      envoyExtAuthzHttp:
        service: ext-authz.authz.svc.cluster.local
        port: 8000
        includeRequestHeadersInCheck: ["x-ext-authz"]
        headersToUpstreamOnAllow: ["x-ext-authz-check-result"]
        headersToDownstreamOnDeny: ["x-ext-authz-check-result"]
    - name: sample-ext-authz-grpc
      envoyExtAuthzGrpc:
        service: ext-authz.authz.svc.cluster.local
        port: 9000
    - name: sample-ext-authz-grpc-body
      envoyExtAuthzGrpc:
        service: ext-authz.authz.svc.cluster.local
        port: 9000
        includeRequestBodyInCheck: { maxRequestBytes: ${MAX_BODY} }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ext-authz-body, namespace: foo }
spec:
  targetRefs: [{ kind: Service, group: "", name: httpbin-body }]
  action: CUSTOM
  provider: { name: sample-ext-authz-grpc-body }
  rules: [{ to: [{ operation: { paths: ["/anything"] } }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ext-authz, namespace: foo }
spec:
  targetRefs: [{ kind: Service, group: "", name: httpbin }]
  action: CUSTOM
  provider: { name: sample-ext-authz-http }
  rules: [{ to: [{ operation: { paths: ["/headers"] } }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ext-authz-grpc, namespace: foo }
spec:
  targetRefs: [{ kind: Service, group: "", name: httpbin-grpc }]
  action: CUSTOM
  provider: { name: sample-ext-authz-grpc }
  rules: [{ to: [{ operation: { paths: ["/headers"] } }] }]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: { name: jwt-example, namespace: foo }
spec:
  selector: { matchLabels: { app: httpbin } }
  jwtRules:
  - issuer: ${ISSUER}
    jwksUri: http://${AUTHZ_POD}:8080/jwks.json
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: require-jwt, namespace: foo }
spec:
  selector: { matchLabels: { app: httpbin } }
  action: ALLOW
  rules:
  - from: [{ source: { requestPrincipals: ["${ISSUER}/${ISSUER}"] } }]
    to: [{ operation: { paths: ["/ip"] } }]
  - to: [{ operation: { paths: ["/headers", "/anything"] } }]
`;
}

interface CurlResult {
  readonly status: number;
  readonly body: string;
}

async function curl(url: string, headers: readonly string[] = [], options: readonly string[] = []): Promise<CurlResult> {
  const r = await session.exec('foo/sleep', ['curl', '-s', '--max-time', '10', '-w', '\n%{http_code}', ...headers.flatMap((h) => ['-H', h]), ...options, url]);
  assert.equal(r.code, 0, `curl ${url} failed (exit ${r.code}): ${r.stderr}`);
  const cut = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(cut + 1)), body: r.stdout.slice(0, cut) };
}

const DENIED = 'denied by ext_authz for not found header `x-ext-authz: allow` in the request';

before(async () => {
  writeFileSync(join(session.dir!, 'jwks.json'), issuer.jwks);
  try {
    await session.up(meshYaml(), 90);
  } catch (error) {
    await session.down();
    throw error;
  }
});

after(async () => {
  await session.down();
});

test("ext-authz task, HTTP provider: x-ext-authz: allow is 200 with the authorizer's header at the pod, anything else 403 with its body", async () => {
  const allowed = await curl('http://httpbin.foo:8000/headers', ['x-ext-authz: allow']);
  assert.equal(allowed.status, 200, allowed.body);
  assert.equal((JSON.parse(allowed.body) as { headers: Record<string, string> }).headers['x-ext-authz-check-result'], 'allowed');
  const denied = await curl('http://httpbin.foo:8000/headers', ['x-ext-authz: deny']);
  assert.equal(denied.status, 403);
  assert.equal(denied.body, DENIED);
});

test('ext-authz task, gRPC provider (Authorization/Check) attached to Service httpbin-grpc by targetRefs', async () => {
  const allowed = await curl('http://httpbin-grpc.foo:8000/headers', ['x-ext-authz: allow']);
  assert.equal(allowed.status, 200, allowed.body);
  assert.equal((JSON.parse(allowed.body) as { headers: Record<string, string> }).headers['x-ext-authz-check-result'], 'allowed');
  const denied = await curl('http://httpbin-grpc.foo:8000/headers', ['x-ext-authz: deny']);
  assert.equal(denied.status, 403);
  assert.equal(denied.body, DENIED);
  // The authorizer's own record: both checks came over gRPC, with the client pod's proven identity.
  const logs = await ambit(['lab', 'logs', '--lab', LAB, 'authz/ext-authz']);
  const checks = logs.stdout.split('\n').flatMap((l) => (l.includes('{"via":"grpc"') ? [JSON.parse(l.slice(l.indexOf('{"via"'))) as unknown] : []));
  assert.deepEqual(checks.slice(-2), [
    { via: 'grpc', path: '/headers', source: 'spiffe://cluster.local/ns/foo/sa/default', allowed: true },
    { via: 'grpc', path: '/headers', source: 'spiffe://cluster.local/ns/foo/sa/default', allowed: false },
  ], `the authorizer's log:\n${logs.stdout}\n${logs.stderr}`);
});

test('includeRequestBodyInCheck: a POST body reaches the gRPC authorizer and the pod; one over maxRequestBytes is 413 and asks no one', async () => {
  const order = '{"order":42,"items":["tea"]}';
  const allowed = await curl('http://httpbin-body.foo:8000/anything', ['x-ext-authz: allow', 'content-type: application/json'], ['--data', order]);
  assert.equal(allowed.status, 200, allowed.body);
  assert.equal((JSON.parse(allowed.body) as { body: string }).body, order);
  const tooLarge = await curl('http://httpbin-body.foo:8000/anything', ['x-ext-authz: allow'], ['--data', 'x'.repeat(MAX_BODY * 4)]);
  assert.equal(tooLarge.status, 413);
  assert.equal(tooLarge.body, 'Payload Too Large');
  const logs = await ambit(['lab', 'logs', '--lab', LAB, 'authz/ext-authz']);
  const withBody = logs.stdout.split('\n').flatMap((l) => (l.includes('"body":') && l.includes('{"via":"grpc"') ? [JSON.parse(l.slice(l.indexOf('{"via"'))) as unknown] : []));
  assert.deepEqual(withBody, [{ via: 'grpc', path: '/anything', source: 'spiffe://cluster.local/ns/foo/sa/default', allowed: true, body: order, partial: 'false' }], `the authorizer's log:\n${logs.stdout}`);
});

test('JWT task: a valid token is 200, an invalid one 401, a missing one 403 by the requestPrincipals policy', async () => {
  const token = signToken(issuer, { iss: ISSUER, sub: ISSUER, exp: nowSeconds() + 3600 });
  assert.equal((await curl('http://httpbin.foo:8000/ip', [`Authorization: Bearer ${token}`])).status, 200);
  const invalid = await curl('http://httpbin.foo:8000/ip', ['Authorization: Bearer deadbeef']);
  assert.equal(invalid.status, 401);
  const forged = await curl('http://httpbin.foo:8000/ip', [`Authorization: Bearer ${signToken(stranger, { iss: ISSUER, sub: ISSUER, exp: nowSeconds() + 3600 })}`]);
  assert.equal(forged.status, 401);
  assert.equal(forged.body, 'Jwt verification fails');
  const missing = await curl('http://httpbin.foo:8000/ip');
  assert.equal(missing.status, 403);
  assert.equal(missing.body, 'RBAC: access denied');
});

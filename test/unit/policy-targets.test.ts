// targetRefs and AUDIT as the destination's agent applies them, decided through the request guard:
// a policy targeting a Service applies to requests for that Service only (not to another Service of
// the same pod, nor to its pods' other traffic); a policy targeting a waypoint Gateway applies to the
// Services that use it (istio.io/use-waypoint on the Service or its namespace); AUDIT allows and logs.
// Also: how MeshConfig and RequestAuthentication problems are reported (file, line, field).

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { formatDiagnostic } from '../../agent/config/diagnostics.js';
import { parseConfigFile } from '../../agent/config/load.js';
import { requestHeaders } from '../../agent/l7/request.js';
import { authorizeConnection } from '../../agent/policy/authorization.js';
import { RequestGuard, type RequestGuardOutcome } from '../../agent/policy/request-guard.js';
import { buildSnapshot } from '../../agent/state/build.js';
import type { MeshSnapshot, SpiffeId } from '../../agent/state/model.js';
import { BOOKINFO, mesh } from './helpers/l7-mesh.js';

const SLEEP = 'spiffe://cluster.local/ns/other/sa/default' as SpiffeId;

/** reviews-v1 is also behind a second Service, reviews-canary, so the Service a request names matters. */
const CANARY = `
apiVersion: v1
kind: Service
metadata: {name: reviews-canary, namespace: bookinfo}
spec: {clusterIP: 10.96.0.22, selector: {app: reviews}, ports: [{name: http, port: 9080, targetPort: 9080}]}`;

async function decide(s: MeshSnapshot, authority: string, path = '/', log = pino({ level: 'silent' })): Promise<RequestGuardOutcome> {
  const workload = s.workloads.get('bookinfo/reviews-v1')!;
  const service = [...s.services.values()].find((v) => authority.startsWith(`${v.name}:`));
  return new RequestGuard({ log }).check(s, {
    sourceIdentity: SLEEP,
    sourceIp: '10.244.2.50',
    destination: workload,
    destinationIp: '10.244.1.21',
    destinationPort: 9080,
    method: 'GET',
    authority,
    path,
    headers: requestHeaders({}),
    protocol: 'HTTP/1.1',
    ...(service ? { service } : {}),
  });
}

test('targetRefs Service: the policy applies to requests for that Service, not to another Service of the same pod', async () => {
  const s = mesh(
    CANARY,
    `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-deny-sleep, namespace: bookinfo}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  action: DENY
  rules: [{from: [{source: {namespaces: [other]}}]}]`,
  );
  assert.equal((await decide(s, 'reviews:9080')).kind, 'deny');
  assert.equal((await decide(s, 'reviews-canary:9080')).kind, 'allow');
  const l4 = authorizeConnection(s, { sourceIdentity: SLEEP, sourceIp: '10.244.2.50', destination: s.workloads.get('bookinfo/reviews-v1')!, destinationIp: '10.244.1.21', destinationPort: 9080 });
  assert.equal(l4.allowed, true, 'an L7 attachment: the connection itself is not judged by it');
});

test('targetRefs Gateway (istio-waypoint): applies to the Services that use the waypoint, by their label or their namespace label', async () => {
  const policy = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: waypoint-allow-bookinfo, namespace: bookinfo}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
  rules: [{from: [{source: {namespaces: [bookinfo]}}]}]`;
  const byService = mesh(CANARY.replace('name: reviews-canary, namespace: bookinfo', 'name: reviews-canary, namespace: bookinfo, labels: {istio.io/use-waypoint: waypoint}'), policy);
  assert.equal((await decide(byService, 'reviews-canary:9080')).kind, 'deny', 'the waypoint ALLOW does not admit namespace other');
  assert.equal((await decide(byService, 'reviews:9080')).kind, 'allow', 'reviews does not use the waypoint');
  const labelled = parseConfigFile(
    [BOOKINFO.replace('name: bookinfo, labels: {istio.io/dataplane-mode: ambient}', 'name: bookinfo, labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}'), policy].join('\n---\n'),
    'mesh.yaml',
  );
  const byNamespace = buildSnapshot(labelled.objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
  assert.equal((await decide(byNamespace, 'reviews:9080')).kind, 'deny', 'the namespace uses the waypoint');
});

test('AUDIT: the request is allowed and logged with the policy that audited it', async () => {
  const s = mesh(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-admin, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  action: AUDIT
  rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]`);
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, done) => (lines.push(JSON.parse(c.toString()) as Record<string, unknown>), done()) }));
  const audited = await decide(s, 'reviews:9080', '/admin/users', log);
  assert.equal(audited.kind, 'allow');
  assert.deepEqual(audited.kind === 'allow' && audited.audited, ['bookinfo/audit-admin']);
  assert.deepEqual(lines.map((l) => [l['msg'], l['audit'], l['path']]), [['request audited by AuthorizationPolicy', ['bookinfo/audit-admin'], '/admin/users']]);
  const plain = await decide(s, 'reviews:9080', '/reviews/1', log);
  assert.deepEqual(plain.kind === 'allow' && plain.audited, []);
  assert.equal(lines.length, 1);
});

test('problems are reported where they are: a MeshConfig field at its line in the file, targetRefs kinds, RequestAuthentication fields', () => {
  const parsed = parseConfigFile(
    `apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    extensionProviders:
    - name: authz
      envoyExtAuthzHttp:
        service: authz.foo.svc.cluster.local
        port: 99999
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: foo}
spec:
  targetRefs: [{kind: Deployment, group: apps, name: web}]
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: r, namespace: foo}
spec:
  jwtRules:
  - issuer: a
    jwksUri: ftp://keys.example
  - jwks: '{}'
  - issuer: b
    jwks: '{}'
    jwksUri: https://keys.example/jwks.json
`,
    'mesh.yaml',
  );
  assert.deepEqual(parsed.diagnostics.map(formatDiagnostic), [
    'mesh.yaml:10: ConfigMap istio-system/istio: data.mesh.extensionProviders[0].envoyExtAuthzHttp.port: expected an integer from 1 to 65535, got 99999',
    'mesh.yaml:16: AuthorizationPolicy foo/p: spec.targetRefs[0].kind: expected a target of kind Service (group "" or "core"), ServiceEntry (group "networking.istio.io"), Gateway (group "gateway.networking.k8s.io"), got Deployment in group "apps"',
    'mesh.yaml:25: RequestAuthentication foo/r: spec.jwtRules[0].jwksUri: expected an http or https URL, got "ftp://keys.example"',
    'mesh.yaml:26: RequestAuthentication foo/r: spec.jwtRules[1].issuer: required field is missing',
    'mesh.yaml:28: RequestAuthentication foo/r: spec.jwtRules[2].jwks: only one of jwks and jwksUri can be set, got both',
  ]);
});

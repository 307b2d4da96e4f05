// L4 AuthorizationPolicy and PeerAuthentication, evaluated as Istio documents them, from policies
// written in Istio's own YAML and parsed by agent/config.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfigFile } from '../../agent/config/load.js';
import { type ConnectionAttributes, authorizeConnection, wildcardMatch } from '../../agent/policy/authorization.js';
import { effectiveMtlsMode } from '../../agent/policy/peer-authentication.js';
import { buildSnapshot } from '../../agent/state/build.js';
import type { MeshSnapshot, SpiffeId } from '../../agent/state/model.js';

const WORKLOADS = `
apiVersion: v1
kind: Pod
metadata: { name: web, namespace: shop, labels: { app: web } }
spec: { containers: [{ name: c, command: [x] }] }
status: { podIP: 10.1.0.1 }
---
apiVersion: v1
kind: Pod
metadata: { name: db, namespace: shop, labels: { app: db } }
spec: { containers: [{ name: c, command: [x] }] }
status: { podIP: 10.1.0.2 }
`;

function mesh(policies: string): MeshSnapshot {
  const parsed = parseConfigFile(`${WORKLOADS}---\n${policies}`, 'policies.yaml');
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error'), []);
  return buildSnapshot(parsed.objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
}

function connection(snapshot: MeshSnapshot, to: string, port: number, from: { identity?: string; ip?: string } = {}): ConnectionAttributes {
  const destination = snapshot.workloads.get(to)!;
  return {
    ...(from.identity ? { sourceIdentity: `spiffe://${from.identity}` as SpiffeId } : {}),
    sourceIp: from.ip ?? '10.2.0.9',
    destination,
    destinationIp: destination.ips[0]!,
    destinationPort: port,
  };
}

const FRONTEND = { identity: 'cluster.local/ns/shop/sa/frontend', ip: '10.2.0.5' };
const STRANGER = { identity: 'cluster.local/ns/other/sa/intruder', ip: '10.3.0.5' };

test('no policy allows everything', () => {
  const s = mesh('');
  assert.deepEqual(authorizeConnection(s, connection(s, 'shop/web', 80)), { allowed: true });
});

test('ALLOW by principal, namespace and port: one matching rule admits, anything else is refused', () => {
  const s = mesh(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: web-from-frontend, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  action: ALLOW
  rules:
    - from: [{ source: { principals: [cluster.local/ns/shop/sa/frontend] } }]
      to: [{ operation: { ports: ["8080"] } }]
    - from: [{ source: { namespaces: [monitoring] } }]
`);
  assert.deepEqual(authorizeConnection(s, connection(s, 'shop/web', 8080, FRONTEND)), { allowed: true, policy: 'shop/web-from-frontend' });
  assert.deepEqual(authorizeConnection(s, connection(s, 'shop/web', 9090, FRONTEND)), { allowed: false, reason: 'not-allowed' });
  assert.deepEqual(authorizeConnection(s, connection(s, 'shop/web', 8080, STRANGER)), { allowed: false, reason: 'not-allowed' });
  assert.equal(authorizeConnection(s, connection(s, 'shop/web', 8080, { identity: 'cluster.local/ns/monitoring/sa/prom' })).allowed, true);
  // Plaintext has no principal, so principal rules cannot admit it.
  assert.equal(authorizeConnection(s, connection(s, 'shop/web', 8080, { ip: '10.2.0.5' })).allowed, false);
  // The policy selects web only; db has no ALLOW policy and stays open.
  assert.equal(authorizeConnection(s, connection(s, 'shop/db', 5432, STRANGER)).allowed, true);
});

test('DENY wins over ALLOW, and root-namespace policies apply mesh-wide', () => {
  const s = mesh(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-all, namespace: shop }
spec: { rules: [{}] }
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: { name: deny-other, namespace: istio-system }
spec:
  action: DENY
  rules: [{ from: [{ source: { notNamespaces: [shop, istio-system] } }] }]
`);
  assert.deepEqual(authorizeConnection(s, connection(s, 'shop/db', 5432, STRANGER)), { allowed: false, reason: 'denied', policy: 'istio-system/deny-other' });
  assert.deepEqual(authorizeConnection(s, connection(s, 'shop/db', 5432, FRONTEND)), { allowed: true, policy: 'shop/allow-all' });
});

test('ipBlocks, notIpBlocks and when conditions on source.ip and destination.port', () => {
  const s = mesh(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: lan-only, namespace: shop }
spec:
  rules:
    - from: [{ source: { ipBlocks: [10.2.0.0/16], notIpBlocks: [10.2.0.9] } }]
      when: [{ key: destination.port, values: ["80", "443"] }]
`);
  assert.equal(authorizeConnection(s, connection(s, 'shop/web', 80, { ip: '10.2.0.5' })).allowed, true);
  assert.equal(authorizeConnection(s, connection(s, 'shop/web', 80, { ip: '10.2.0.9' })).allowed, false);
  assert.equal(authorizeConnection(s, connection(s, 'shop/web', 8080, { ip: '10.2.0.5' })).allowed, false);
  assert.equal(authorizeConnection(s, connection(s, 'shop/web', 443, { ip: '10.3.0.5' })).allowed, false);
});

test('HTTP-only fields: an ALLOW rule needing them never matches a connection, a DENY rule applies on its L4 part', () => {
  const allow = mesh(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: get-only, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  rules: [{ to: [{ operation: { methods: [GET] } }] }]
`);
  assert.deepEqual(authorizeConnection(allow, connection(allow, 'shop/web', 80, FRONTEND)), { allowed: false, reason: 'not-allowed' });
  const deny = mesh(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: no-admin, namespace: shop }
spec:
  action: DENY
  rules: [{ from: [{ source: { namespaces: [other] } }], to: [{ operation: { paths: [/admin*] } }] }]
`);
  assert.equal(authorizeConnection(deny, connection(deny, 'shop/web', 80, STRANGER)).allowed, false);
  assert.equal(authorizeConnection(deny, connection(deny, 'shop/web', 80, FRONTEND)).allowed, true);
});

test('an ALLOW policy without rules selects and denies; AUDIT never decides', () => {
  const s = mesh(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: lockdown, namespace: shop }
spec: { selector: { matchLabels: { app: db } } }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: audit-all, namespace: shop }
spec: { action: AUDIT, rules: [{}] }
`);
  assert.deepEqual(authorizeConnection(s, connection(s, 'shop/db', 5432, FRONTEND)), { allowed: false, reason: 'not-allowed' });
  assert.equal(authorizeConnection(s, connection(s, 'shop/web', 80, FRONTEND)).allowed, true);
});

test('service accounts: namespace/name, or a bare name in the policy\'s namespace', () => {
  const s = mesh(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: by-sa, namespace: shop }
spec:
  rules: [{ from: [{ source: { serviceAccounts: [frontend, other/intruder] } }] }]
`);
  assert.equal(authorizeConnection(s, connection(s, 'shop/web', 80, FRONTEND)).allowed, true);
  assert.equal(authorizeConnection(s, connection(s, 'shop/web', 80, STRANGER)).allowed, true);
  assert.equal(authorizeConnection(s, connection(s, 'shop/web', 80, { identity: 'cluster.local/ns/other/sa/frontend' })).allowed, false);
});

test('principal wildcards: *, prefix* and *suffix', () => {
  assert.equal(wildcardMatch('*', 'cluster.local/ns/a/sa/b'), true);
  assert.equal(wildcardMatch('*', ''), false);
  assert.equal(wildcardMatch('cluster.local/ns/shop/*', 'cluster.local/ns/shop/sa/x'), true);
  assert.equal(wildcardMatch('*/sa/frontend', 'cluster.local/ns/shop/sa/frontend'), true);
  assert.equal(wildcardMatch('*/sa/frontend', 'cluster.local/ns/shop/sa/backend'), false);
});

test('PeerAuthentication: port level, then workload, namespace and mesh; UNSET defers; PERMISSIVE by default', () => {
  assert.deepEqual(effectiveMtlsMode(mesh(''), mesh('').workloads.get('shop/web')!, 80), { mode: 'PERMISSIVE' });
  const s = mesh(`
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: mesh-strict, namespace: istio-system }
spec: { mtls: { mode: STRICT } }
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: shop-unset, namespace: shop }
spec: { mtls: { mode: UNSET } }
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: { name: web-metrics, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  mtls: { mode: UNSET }
  portLevelMtls: { "9090": { mode: DISABLE }, "8080": { mode: PERMISSIVE } }
`);
  const web = s.workloads.get('shop/web')!;
  assert.deepEqual(effectiveMtlsMode(s, web, 9090), { mode: 'DISABLE', policy: 'shop/web-metrics' });
  assert.deepEqual(effectiveMtlsMode(s, web, 8080), { mode: 'PERMISSIVE', policy: 'shop/web-metrics' });
  assert.deepEqual(effectiveMtlsMode(s, web, 80), { mode: 'STRICT', policy: 'istio-system/mesh-strict' });
  assert.deepEqual(effectiveMtlsMode(s, s.workloads.get('shop/db')!, 5432), { mode: 'STRICT', policy: 'istio-system/mesh-strict' });
});

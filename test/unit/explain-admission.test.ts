// `ambit explain`'s destination side, as the destination's agent judges it: PeerAuthentication for the
// port, every AuthorizationPolicy in scope in evaluation order with each rule's result, the verdict and
// the fix for a deny, and the rate limit that would apply.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { explainAdmissionOnly } from '../../agent/explain/explain.js';
import type { SpiffeId } from '../../agent/state/model.js';
import { FILE, HTTP_GET, POLICIES, explain, lineOf, mesh, step } from './helpers/explain-mesh.js';

describe('destination admission', () => {
  it('a request an ALLOW rule matches is allowed by that policy; the policies are listed DENY, ALLOW, AUDIT with each rule', () => {
    const e = explain(mesh(POLICIES), { source: 'shop/client', destination: 'web.shop:80', http: HTTP_GET('/api/items') });
    const authz = step(e, 'authorization');
    assert.equal(authz.outcome, 'allowed');
    assert.equal(authz.decidedBy.object, 'AuthorizationPolicy shop/web-allow');
    assert.equal(authz.decidedBy.from, `${FILE}:${lineOf(POLICIES, 'web-allow')}`);
    const lines = authz.details.filter((d) => /^(CUSTOM|DENY|ALLOW|AUDIT) /.test(d)).map((d) => d.split(' (')[0]);
    assert.deepEqual(lines, ['DENY AuthorizationPolicy shop/web-deny-admin', 'ALLOW AuthorizationPolicy shop/web-allow', 'AUDIT AuthorizationPolicy shop/web-audit']);
    assert.match(authz.details.join('\n'), /DENY .*\n {2}rule 0: does not match \(to does not hold\)\nALLOW .*\n {2}rule 0: matches/);
    assert.equal(step(e, 'peer-authentication').outcome, 'STRICT');
    const limit = step(e, 'rate-limit');
    assert.equal(limit.decidedBy.object, 'RateLimit shop/web-limit');
    assert.match(limit.details[0]!, /10 tokens, 10 back every 1000 ms/);
    assert.equal(e.verdict, 'allow');
  });

  it('a DENY rule that matches denies with 403, and the fix names that rule', () => {
    const e = explain(mesh(POLICIES), { source: 'shop/client', destination: 'web.shop:80', http: HTTP_GET('/api/admin') });
    const authz = step(e, 'authorization');
    assert.equal(authz.outcome, 'denied');
    assert.equal(authz.ends, 'deny');
    assert.equal(authz.decidedBy.object, 'AuthorizationPolicy shop/web-deny-admin');
    assert.match(authz.details.join('\n'), /403 "RBAC: access denied"/);
    assert.equal(e.verdict, 'deny');
    assert.match(e.fix ?? '', new RegExp(`rule 0 of AuthorizationPolicy shop/web-deny-admin \\(${FILE}:${lineOf(POLICIES, 'web-deny-admin')}\\)`));
  });

  it('a request no ALLOW rule matches is denied, and the fix is the rule to add, with the source principal', () => {
    const e = explain(mesh(POLICIES), { source: 'shop/client', destination: 'web.shop:80', http: { method: 'POST', path: '/api/items', authority: 'web.shop', headers: [] } });
    const authz = step(e, 'authorization');
    assert.equal(authz.outcome, 'not-allowed');
    assert.match(authz.details.join('\n'), /ALLOW .*\n {2}rule 0: does not match \(to does not hold\)/);
    assert.match(e.fix ?? '', /add to spec\.rules of AuthorizationPolicy shop\/web-allow .*principals: \["cluster\.local\/ns\/shop\/sa\/client"\].*methods: \["POST"\], paths: \["\/api\/items"\]/);
  });

  it('an L4 port: the connection is judged as a whole, and the rule\'s from is what fails', () => {
    const e = explain(mesh(POLICIES), { source: 'shop/client', destination: 'db.shop:5432' });
    const authz = step(e, 'authorization');
    assert.equal(authz.outcome, 'not-allowed');
    assert.match(authz.details.join('\n'), /authorized as a whole/);
    assert.match(authz.details.join('\n'), /rule 0: does not match \(from does not hold\)/);
    assert.match(authz.details.join('\n'), /answered 401/);
    assert.equal(e.verdict, 'deny');
  });

  it('plaintext from a pod outside the mesh is refused by STRICT, decided by the PeerAuthentication', () => {
    const e = explain(mesh(POLICIES), { source: 'legacy/old', destination: 'web.shop:80' });
    const pa = step(e, 'peer-authentication');
    assert.equal(pa.outcome, 'STRICT');
    assert.equal(pa.ends, 'deny');
    assert.equal(pa.decidedBy.object, 'PeerAuthentication shop/strict');
    assert.equal(e.verdict, 'deny');
    assert.match(e.fix ?? '', /portLevelMtls: \{8080: \{mode: PERMISSIVE\}\} to PeerAuthentication shop\/strict/);
    assert.equal(e.steps.some((s) => s.step === 'authorization'), false);
  });

  it('without STRICT, plaintext is admitted and judged with no identity', () => {
    const permissive = POLICIES.replace('mode: STRICT', 'mode: PERMISSIVE');
    const e = explain(mesh(permissive), { source: 'legacy/old', destination: 'web.shop:80', http: HTTP_GET('/api/items') });
    assert.equal(step(e, 'peer-authentication').outcome, 'PERMISSIVE');
    assert.equal(step(e, 'authorization').outcome, 'not-allowed');
    assert.match(e.fix ?? '', /ipBlocks: \["10\.20\.1\.7"\]/);
  });

  it("a policy that targetRefs the request's Service is in scope for the request, and a CUSTOM one with an unknown provider denies", () => {
    const targeted = `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: web-service-deny, namespace: shop }
spec:
  targetRefs: [{ kind: Service, group: "", name: web }]
  action: DENY
  rules: [{ to: [{ operation: { paths: [/api/old] } }] }]
`;
    const e = explain(mesh(POLICIES + targeted), { source: 'shop/client', destination: 'web.shop:80', http: HTTP_GET('/api/old') });
    assert.equal(step(e, 'authorization').decidedBy.object, 'AuthorizationPolicy shop/web-service-deny');
    assert.equal(e.verdict, 'deny');
    const custom = `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: web-ext, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  action: CUSTOM
  provider: { name: no-such-authz }
  rules: [{ to: [{ operation: { paths: [/api/*] } }] }]
`;
    const c = explain(mesh(POLICIES + custom), { source: 'shop/client', destination: 'web.shop:80', http: HTTP_GET('/api/items') });
    const authz = step(c, 'authorization');
    assert.equal(authz.outcome, 'denied');
    assert.match(authz.details.join('\n'), /^CUSTOM AuthorizationPolicy shop\/web-ext .*provider no-such-authz/m);
    assert.match(authz.details.join('\n'), /MeshConfig does not define/);
    assert.match(c.fix ?? '', /extensionProviders/);
  });

  it('the destination side alone, as the destination agent is asked', () => {
    const e = explainAdmissionOnly(mesh(POLICIES), 'node-b', { sourceIp: '10.20.1.5', sourceIdentity: 'spiffe://cluster.local/ns/shop/sa/web' as SpiffeId, destination: { ip: '10.20.2.6', port: 5432 } });
    assert.equal(e.verdict, 'allow');
    assert.equal(step(e, 'authorization').decidedBy.object, 'AuthorizationPolicy shop/db-allow');
    assert.deepEqual(e.snapshots, { 'node-b': 7 });
  });
});

// `ambit explain` step by step, on a mesh written as a user writes it (helpers/explain-mesh.ts): the
// source side's steps (capture, destination, transport, L7 route) with the object (and its file:line)
// that decided each, the rendering and the JSON shape, the admin request bodies, the join of two
// agents' answers, and the denial ring's bound. The destination side is in explain-admission.test.ts.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { AdminServer } from '../../agent/admin/admin-server.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { DenialRing } from '../../agent/explain/denials.js';
import { explainAdmissionOnly, explainPath, joinExplanations, readAdmissionQuery, readExplainQuery } from '../../agent/explain/explain.js';
import { type Explanation, formatSource } from '../../agent/explain/explanation.js';
import { explanationJson, renderExplanation } from '../../agent/explain/render.js';
import { parseHttp } from '../../agent/cli/explain.js';
import type { SpiffeId } from '../../agent/state/model.js';
import { FILE, HTTP_GET, POLICIES, explain, lineOf, mesh, step } from './helpers/explain-mesh.js';

describe('capture', () => {
  it('an enrolled pod is captured because its namespace is labelled ambient', () => {
    const e = explain(mesh(), { source: 'shop/client', destination: 'db.shop:5432' });
    const capture = step(e, 'capture');
    assert.equal(capture.outcome, 'captured');
    assert.equal(capture.decidedBy.object, 'Namespace shop');
    // The Namespace object whose label enrolled it, where a user would edit it.
    assert.match(capture.decidedBy.from ?? '', /^mesh\.yaml:\d+$/);
    assert.match(capture.details[0]!, /istio\.io\/dataplane-mode=ambient.*spiffe:\/\/cluster\.local\/ns\/shop\/sa\/client/);
  });

  it('an opted-out pod is not captured, and the pod (with its file:line) decided it', () => {
    const e = explain(mesh(), { source: 'shop/quiet', destination: 'db.shop:5432' });
    const capture = step(e, 'capture');
    assert.equal(capture.outcome, 'not-captured');
    assert.equal(capture.decidedBy.object, 'Pod shop/quiet');
    assert.match(capture.decidedBy.from ?? '', /^mesh\.yaml:\d+$/);
    assert.match(capture.details[0]!, /opted out/);
    // Not captured: plaintext straight to the pod, into its agent's 15006.
    assert.equal(step(e, 'transport').outcome, 'plaintext-inbound');
  });

  it('a pod in a namespace that is not ambient is not captured', () => {
    const capture = step(explain(mesh(), { source: 'legacy/old', destination: 'db.shop:5432' }), 'capture');
    assert.equal(capture.outcome, 'not-captured');
    assert.equal(capture.decidedBy.object, 'Namespace legacy');
  });
});

describe('destination and transport', () => {
  it('a VIP resolves to its ready endpoint on another node, carried by HBONE with the expected identity', () => {
    const e = explain(mesh(), { source: 'shop/client', destination: 'db.shop:5432' });
    const destination = step(e, 'destination');
    assert.equal(destination.outcome, 'endpoint');
    assert.ok(destination.details.some((d) => d.includes('picked shop/db-1 10.20.2.6:5432')), destination.details.join('\n'));
    const transport = step(e, 'transport');
    assert.equal(transport.outcome, 'hbone');
    assert.match(transport.details[0]!, /HBONE to 10\.20\.2\.6:15008 on node node-b/);
    assert.match(transport.details[1]!, /spiffe:\/\/cluster\.local\/ns\/shop\/sa\/db/);
    assert.equal(e.verdict, 'allow');
  });

  it('a Service whose only pod is not ready is unreachable, and the unready pod is named', () => {
    const e = explain(mesh(), { source: 'shop/client', destination: 'gone.shop:7000' });
    const destination = step(e, 'destination');
    assert.equal(destination.ends, 'unreachable');
    assert.ok(destination.details.some((d) => d.includes('not an endpoint: shop/gone-1 (not ready)')), destination.details.join('\n'));
    assert.equal(e.verdict, 'unreachable');
    assert.match(e.fix ?? '', /no ready endpoint/);
  });

  it('internalTrafficPolicy Local with no endpoint on the client\'s node is unreachable', () => {
    const e = explain(mesh(), { source: 'shop/client', destination: 'local.shop:5432' });
    assert.equal(e.verdict, 'unreachable');
    assert.match(step(e, 'destination').details.join('\n'), /internalTrafficPolicy: Local/);
    assert.match(step(e, 'destination').details.join('\n'), /endpoint shop\/db-1 10\.20\.2\.6:5432 on node node-b, not eligible from this node/);
  });

  it('a pod of the same node: no tunnel, admitted (or refused) by this agent as planOutbound plans it', () => {
    const cache = `apiVersion: v1
kind: Pod
metadata: { name: cache-1, namespace: shop, labels: { app: cache } }
spec: { nodeName: node-a, serviceAccountName: cache, containers: [{ name: c, command: [x] }] }
status: { podIP: 10.20.1.9 }
---
apiVersion: v1
kind: Service
metadata: { name: cache, namespace: shop }
spec: { clusterIP: 10.96.0.14, selector: { app: cache }, ports: [{ name: tcp, port: 6379, targetPort: 6379 }] }
`;
    const allowed = explain(mesh(cache), { source: 'shop/client', destination: 'cache.shop:6379' });
    assert.equal(step(allowed, 'transport').outcome, 'same-node');
    assert.equal(allowed.verdict, 'allow');
    const deny = `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: cache-closed, namespace: shop }
spec: { selector: { matchLabels: { app: cache } }, action: DENY, rules: [{}] }
`;
    const denied = explain(mesh(cache + deny), { source: 'shop/client', destination: 'cache.shop:6379' });
    const transport = step(denied, 'transport');
    assert.equal(transport.outcome, 'same-node');
    assert.match(transport.details[0]!, /refused it \(denied by AuthorizationPolicy shop\/cache-closed\)/);
    assert.equal(step(denied, 'authorization').decidedBy.object, 'AuthorizationPolicy shop/cache-closed');
    assert.equal(denied.verdict, 'deny');
  });

  it('an address outside the mesh is passed through as plain TCP', () => {
    const e = explain(mesh(), { source: 'shop/client', destination: '192.0.2.1:443' });
    assert.equal(step(e, 'transport').outcome, 'passthrough');
    assert.equal(e.verdict, 'allow');
  });

  it('a source and a destination named by IP are the pods holding them; an IP no pod holds is a source outside the mesh; a pod names itself', () => {
    const byIp = explain(mesh(POLICIES), { source: '10.20.1.5', destination: '10.20.2.6:5432' });
    assert.match(step(byIp, 'capture').details[0]!, /captures shop\/client's connections/);
    assert.equal(step(byIp, 'destination').decidedBy.object, 'Pod shop/db-1');
    assert.equal(byIp.steps.find((s) => s.step === 'authorization')?.decidedBy.object, 'AuthorizationPolicy shop/db-allow');
    const byName = explain(mesh(POLICIES), { source: 'shop/client', destination: 'shop/db-1:5432' });
    assert.deepEqual(byName.steps, byIp.steps);
    const outside = explain(mesh(POLICIES), { source: '192.168.7.7', destination: 'web.shop:80' });
    assert.equal(step(outside, 'capture').outcome, 'not-a-pod');
    // Plaintext from outside the mesh meets STRICT.
    assert.equal(outside.verdict, 'deny');
    assert.equal(step(outside, 'peer-authentication').decidedBy.object, 'PeerAuthentication shop/strict');
  });

  it('names the problem when a name resolves to nothing', () => {
    const answer = explainPath(mesh(), 'node-a', { source: 'shop/client', destination: 'nope.shop:80' });
    assert.ok(!answer.ok);
    assert.match(answer.error, /no Service or ServiceEntry host of that name/);
  });
});

const VS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: web-routes, namespace: shop }
spec:
  hosts: [web]
  http:
  - name: api
    match: [{ uri: { prefix: /api } }]
    route: [{ destination: { host: web, subset: v1 } }]
    timeout: 3s
    retries: { attempts: 4, perTryTimeout: 1s, retryOn: 5xx }
    fault: { abort: { httpStatus: 418, percentage: { value: 10 } } }
  - route: [{ destination: { host: web } }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: web-subsets, namespace: shop }
spec:
  host: web
  subsets: [{ name: v1, labels: { version: v1 } }]
`;

describe('L7 route', () => {
  it('an HTTP port goes to the L7 proxy; the matching VirtualService rule, its retries, timeout and fault are shown', () => {
    const e = explain(mesh(VS), { source: 'shop/client', destination: 'web.shop:80', http: HTTP_GET('/api/items') });
    assert.equal(step(e, 'transport').outcome, 'http');
    const route = e.steps.find((s) => s.step === 'l7-route')!;
    assert.equal(route.outcome, 'forward');
    assert.equal(route.decidedBy.object, 'VirtualService shop/web-routes');
    assert.equal(route.decidedBy.from, `${FILE}:${lineOf(VS, 'web-routes')}`);
    const text = route.details.join('\n');
    assert.match(text, /http\[0\] "api": its match\[0\] holds/);
    assert.match(text, /timeout: 3000 ms/);
    assert.match(text, /retries: 4, 1000 ms per try, on 5xx/);
    assert.match(text, /fault: abort HTTP 418 for 10% of requests/);
    assert.match(text, /outbound\|80\|v1\|web\.shop\.svc\.cluster\.local/);
    const destination = e.steps.filter((s) => s.step === 'destination').at(-1)!;
    assert.equal(destination.decidedBy.object, 'DestinationRule shop/web-subsets');
    assert.match(destination.details.join('\n'), /picked 10\.20\.2\.5:8080 \(shop\/web-1\)/);
    // The upstream is a pod of another node: HBONE.
    assert.equal(e.steps.filter((s) => s.step === 'transport').at(-1)!.outcome, 'hbone');
  });

  it('another path takes the next rule', () => {
    const e = explain(mesh(VS), { source: 'shop/client', destination: 'web.shop:80', http: HTTP_GET('/home') });
    assert.match(step(e, 'l7-route').details[0]!, /http\[1\]: it matches every request/);
  });

  it('a subset no DestinationRule defines is unreachable (503 NC)', () => {
    const noRule = VS.split('---')[0]!;
    const e = explain(mesh(noRule), { source: 'shop/client', destination: 'web.shop:80', http: HTTP_GET('/api/x') });
    assert.equal(e.verdict, 'unreachable');
    assert.match(e.steps.find((s) => s.ends)!.details.join('\n'), /subset "v1".*not defined/);
  });
});

describe('joining two agents and rendering', () => {
  it('the destination agent\'s steps replace the source agent\'s judgement of admission', () => {
    const snapshot = mesh(POLICIES);
    const path = explain(snapshot, { source: 'shop/client', destination: 'db.shop:5432' });
    const allowed = explainAdmissionOnly(mesh(POLICIES.replace('sa/web] } }]', 'sa/client] } }]')), 'node-b', { sourceIp: '10.20.1.5', sourceIdentity: 'spiffe://cluster.local/ns/shop/sa/client' as SpiffeId, destination: { ip: '10.20.2.6', port: 5432 } });
    const joined = joinExplanations(path, allowed);
    assert.equal(path.verdict, 'deny');
    assert.equal(joined.verdict, 'allow');
    assert.deepEqual(joined.steps.map((s) => s.step), ['capture', 'destination', 'transport', 'peer-authentication', 'authorization']);
    assert.deepEqual(joined.snapshots, { 'node-a': 7, 'node-b': 7 });
    assert.equal(joined.fix, undefined);
  });

  it('text: numbered steps, who decided and where, the verdict and the fix', () => {
    const e = explain(mesh(POLICIES), { source: 'shop/client', destination: 'web.shop:80', http: HTTP_GET('/api/admin') });
    const text = renderExplanation(e, 'shop/client -> web.shop:80 GET /api/admin');
    assert.match(text, /^shop\/client -> web\.shop:80 GET \/api\/admin\n1\. capture: captured \[node node-a\]\n {3}decided by Namespace shop/);
    assert.match(text, new RegExp(`\\d\\. authorization: denied -> DENY \\[node node-b\\]\\n {3}decided by AuthorizationPolicy shop/web-deny-admin \\(${FILE}:\\d+\\)`));
    assert.match(text, /\nverdict: DENY\nto allow it: rule 0 of /);
  });

  it('json: one object with verdict and steps, each with step, outcome and decidedBy', () => {
    const e = explain(mesh(POLICIES), { source: 'shop/client', destination: 'db.shop:5432' });
    const parsed = JSON.parse(explanationJson(e)) as { verdict: string; steps: { step: string; outcome: string; decidedBy: { object: string } }[] };
    assert.equal(parsed.verdict, 'deny');
    assert.ok(parsed.steps.length >= 4);
    for (const s of parsed.steps) {
      assert.equal(typeof s.step, 'string');
      assert.equal(typeof s.outcome, 'string');
      assert.equal(typeof s.decidedBy.object, 'string');
    }
  });
});

describe('inputs', () => {
  it('admin request bodies are checked field by field', () => {
    assert.match((readExplainQuery({ source: 'a/b' }) as { error: string }).error, /"destination"/);
    assert.match((readExplainQuery({ source: 'a/b', destination: 'c', http: { method: 'get', path: '/', authority: '', headers: [] } }) as { error: string }).error, /http\.method/);
    assert.match((readAdmissionQuery({ sourceIp: '1.2.3.4', sourceIdentity: 'x', destination: { ip: '1.2.3.5', port: 80 } }) as { error: string }).error, /spiffe/);
    assert.deepEqual(readExplainQuery({ source: 'a/b', destination: 'c:80', http: { method: 'GET', path: '/x', authority: 'c', headers: [['k', 'v']] } }), {
      ok: true,
      value: { source: 'a/b', destination: 'c:80', http: { method: 'GET', path: '/x', authority: 'c', headers: [['k', 'v']] } },
    });
  });

  it("--http 'GET /path' and -H lines; Host sets the authority", () => {
    assert.deepEqual(parseHttp('get /a?b=1', ['X-User: jason', 'Host: web:80'], 'web.shop:80'), { method: 'GET', path: '/a?b=1', authority: 'web:80', headers: [['x-user', 'jason']] });
    assert.equal(parseHttp('GET /', [], 'web.shop:80').authority, 'web.shop:80');
    assert.throws(() => parseHttp('/only-a-path', [], 'x'), /expected a method and a path/);
  });

  it('where an object came from: file:line for YAML, the API path for the Kubernetes source', () => {
    assert.equal(formatSource({ file: 'mesh/policy.yaml', line: 12 }), 'mesh/policy.yaml:12');
    assert.equal(formatSource({ file: 'kube-apiserver:/apis/security.istio.io/v1/namespaces/shop/authorizationpolicies/web', line: 1 }), 'kube-apiserver:/apis/security.istio.io/v1/namespaces/shop/authorizationpolicies/web');
    assert.equal(formatSource({ file: 'xds:Authorization/shop/web', line: 0 }), 'xds:Authorization/shop/web');
    // From the API server: the version in force, as `kubectl get -o yaml` shows it.
    assert.equal(formatSource({ file: 'kube-apiserver:/api/v1/namespaces/shop/pods/web-1', line: 1, resourceVersion: '4711' }), 'kube-apiserver:/api/v1/namespaces/shop/pods/web-1 (resourceVersion 4711)');
  });

  it('the denial ring keeps the newest entries, newest first, and bounds what a client sent', () => {
    let t = 0;
    const ring = new DenialRing(3, () => new Date(Date.UTC(2026, 0, 1, 0, 0, t++)));
    for (let i = 0; i < 5; i++) ring.record({ path: 'connection', sourceIp: `10.0.0.${i}`, destination: { ip: '10.1.0.1', port: 80 }, reason: 'x' });
    assert.deepEqual(ring.list().map((d) => d.sourceIp), ['10.0.0.4', '10.0.0.3', '10.0.0.2']);
    ring.record({ path: 'http', sourceIp: '10.0.0.9', destination: { ip: '10.1.0.1', port: 80 }, http: { method: 'GET', path: `/${'a'.repeat(1000)}`, authority: 'h', headers: Array.from({ length: 100 }, (_, i) => [`h${i}`, 'v'] as const) }, reason: 'x' });
    const newest = ring.list()[0]!;
    assert.equal(newest.http!.path.length, 256);
    assert.equal(newest.http!.headers.length, 32);
  });
});

describe('the admin endpoints and the command', () => {
  const MAIN = fileURLToPath(new URL('../../agent/cli/main.ts', import.meta.url));

  /** An agent's admin server on loopback with the POLICIES mesh in force and one denial seen. */
  async function agent(): Promise<{ port: number; close: () => Promise<void> }> {
    const store = new WorkloadStore();
    store.replace(mesh(POLICIES));
    const denials = new DenialRing();
    denials.record({ path: 'http', sourceIp: '10.20.1.5', sourceIdentity: 'spiffe://cluster.local/ns/shop/sa/client' as SpiffeId, destination: { ip: '10.20.2.5', port: 8080 }, http: { method: 'GET', path: '/api/admin', authority: 'web.shop', headers: [] }, reason: 'rbac_access_denied_matched_policy[shop/web-deny-admin]' });
    const admin = new AdminServer({ store, node: 'node-b', log: pino({ level: 'silent' }), quit: () => {}, explain: { denials } });
    const { port } = await admin.listen('127.0.0.1', 0);
    return { port, close: () => admin.close() };
  }

  it('POST /explain answers the path, GET /explain/last-denied the denials explained, bad bodies 400', async () => {
    const { port, close } = await agent();
    try {
      const base = `http://127.0.0.1:${port}`;
      const path = await fetch(`${base}/explain`, { method: 'POST', body: JSON.stringify({ source: 'shop/client', destination: 'db.shop:5432' }) });
      assert.equal(path.status, 200);
      const answer = (await path.json()) as { explanation: Explanation; destinationNode: string; admission: { sourceIdentity: string } };
      assert.equal(answer.explanation.verdict, 'deny');
      assert.equal(answer.destinationNode, 'node-b');
      assert.equal(answer.admission.sourceIdentity, 'spiffe://cluster.local/ns/shop/sa/client');
      const denied = (await (await fetch(`${base}/explain/last-denied`)).json()) as { node: string; denials: { explanation: Explanation }[] };
      assert.equal(denied.node, 'node-b');
      assert.equal(denied.denials.length, 1);
      assert.equal(step(denied.denials[0]!.explanation, 'authorization').decidedBy.object, 'AuthorizationPolicy shop/web-deny-admin');
      assert.equal((await fetch(`${base}/explain`, { method: 'POST', body: '{"source":' })).status, 400);
      assert.equal((await fetch(`${base}/explain`)).status, 405);
      assert.equal((await fetch(`${base}/explain`, { method: 'POST', body: JSON.stringify({ source: 'shop/nobody', destination: 'db.shop:5432' }) })).status, 404);
    } finally {
      await close();
    }
  });

  it('ambit explain --admin-address prints the steps, and --json the one object', async () => {
    const { port, close } = await agent();
    const run = (args: string[]): Promise<string> =>
      new Promise((resolve, reject) => execFile(process.execPath, ['--import', 'tsx', MAIN, 'explain', '--admin-address', `127.0.0.1:${port}`, ...args], { timeout: 30_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout))));
    try {
      const text = await run(['shop/client', 'web.shop:80', '--http', 'GET /api/admin']);
      assert.match(text, /^shop\/client -> web\.shop:80 GET \/api\/admin\n1\. capture: captured/);
      assert.match(text, /\nverdict: DENY\n/);
      const json = JSON.parse(await run(['shop/client', 'web.shop:80', '--http', 'GET /api/items', '--json'])) as Explanation;
      assert.equal(json.verdict, 'allow');
      assert.deepEqual(json.snapshots, { 'node-b': 7 });
    } finally {
      await close();
    }
  });
});


describe('explain: a ServiceEntry with resolution DNS', () => {
  it('names the endpoint known by name, says it is resolved when the connection opens, and how it then travels', () => {
    const m = mesh(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: search, namespace: shop}
spec: {hosts: [search.example], ports: [{number: 443, name: tls, protocol: TLS}], resolution: DNS}
`);
    const vip = m.servicesByHostname.get('search.example')!.vips[0]!;
    const e = explain(m, { source: 'shop/client', destination: `${vip}:443` });
    assert.deepEqual(step(e, 'destination').details, [
      `VIP ${vip}:443 of search.example`,
      'endpoint search.example known by name search.example:443, resolved when a connection picks it',
      "picked search.example at search.example:443, resolved through the agent's DNS upstream when the connection opens",
    ]);
    const transport = step(e, 'transport');
    assert.equal(transport.outcome, 'passthrough');
    assert.match(transport.details[0]!, /^search\.example is outside the mesh: plain TCP from [\d.]+ to the address it resolves to$/);
  });
});

// `ambit explain` against what the data path does, in the lab: for each case real traffic is sent from a
// pod, its outcome observed (the answering pod, a 403 from policy, a connection closed by an L4 policy,
// plaintext refused by STRICT, a Service with no endpoint, a 500 from a global rate limit whose service
// cannot be asked), and explain's verdict, asked of the agents of both nodes, must be that outcome. Then --last-denied must list the denials the destination agent saw.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ambit } from './helpers/lab-cli.js';
import { LabSession, labPodYaml, serviceAccountYaml, twoNodesYaml } from './helpers/lab-session.js';

const LAB = `tex${process.pid % 1000}`;
const session = LabSession.inTempDir(LAB, 'ambit-explain-test-');

// web answers HTTP with its pod name; db writes its pod name to each connection (TCP).
const WEB = `require('http').createServer((q, s) => { q.resume(); q.on('end', () => s.end(process.env.POD_NAME)); }).listen(8080);`;
const DB = `require('net').createServer((c) => { c.on('error', () => {}); c.end(process.env.POD_NAME + '\\n'); }).listen(5432);`;
// One TCP connection: what the server sent before the connection ended, or how it ended.
const TCP_CLIENT = `const c = require('net').connect(+process.argv[2], process.argv[1]); let got = ''; c.on('data', (d) => (got += d)); c.on('error', (e) => { console.log(JSON.stringify({ got, error: e.code })); process.exit(0); }); c.on('close', () => { console.log(JSON.stringify({ got })); process.exit(0); }); setTimeout(() => { console.log(JSON.stringify({ got, error: 'timeout' })); process.exit(0); }, 8000);`;

const POLICY = `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: web-allow, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  rules:
  - from: [{ source: { principals: [cluster.local/ns/shop/sa/client] } }]
    to: [{ operation: { paths: [/api/*] } }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: web-deny-admin, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  action: DENY
  rules:
  - to: [{ operation: { paths: [/api/admin] } }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: db-allow, namespace: shop }
spec:
  selector: { matchLabels: { app: db } }
  rules:
  - from: [{ source: { principals: [cluster.local/ns/shop/sa/web] } }]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: strict, namespace: shop }
spec: { mtls: { mode: STRICT } }
`;

// A global rate limit for /api/quota only, whose service (quota, no pod behind it) cannot be asked:
// failureMode deny answers those requests 500. Other paths send no descriptor, so the service is not asked.
const QUOTA = `---
apiVersion: ambit.dev/v1alpha1
kind: RateLimit
metadata: { name: web-quota, namespace: shop }
spec:
  targetRef: { kind: Service, name: web }
  global: { service: quota.shop.svc.cluster.local, port: 8081, domain: shop, failureMode: deny }
  routes:
  - name: quota
    match: [{ path: { prefix: /api/quota } }]
    descriptors: [{ name: per-client, entries: [{ sourceIdentity: {} }] }]
`;

function meshYaml(): string {
  const pod = (name: string, ns: string, app: string, ip: string, node: string, sa: string, command: readonly string[]): string =>
    labPodYaml({ name, namespace: ns, labels: { app }, node, ip, serviceAccount: sa, command });
  const sa = (name: string, ns = 'shop'): string => serviceAccountYaml(name, ns);
  const idle = ['sleep', 'infinity'];
  return `${twoNodesYaml(93, 253)}
---
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Namespace
metadata: { name: legacy }
${sa('client')}${sa('web')}${sa('db')}${sa('default', 'legacy')}${pod('client', 'shop', 'client', '10.253.1.20', 'alpha', 'client', idle)}${pod('outsider', 'legacy', 'outsider', '10.253.1.30', 'alpha', 'default', idle)}${pod('web-1', 'shop', 'web', '10.253.2.11', 'beta', 'web', ['node', '-e', WEB])}${pod('db-1', 'shop', 'db', '10.253.2.12', 'beta', 'db', ['node', '-e', DB])}---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { clusterIP: 10.105.0.11, selector: { app: web }, ports: [{ name: http, port: 80, targetPort: 8080 }] }
---
apiVersion: v1
kind: Service
metadata: { name: db, namespace: shop }
spec: { clusterIP: 10.105.0.12, selector: { app: db }, ports: [{ name: tcp, port: 5432, targetPort: 5432 }] }
---
apiVersion: v1
kind: Service
metadata: { name: gone, namespace: shop }
spec: { clusterIP: 10.105.0.13, selector: { app: gone }, ports: [{ name: tcp, port: 7000, targetPort: 7000 }] }
${POLICY}---
apiVersion: v1
kind: Service
metadata: { name: quota, namespace: shop }
spec: { clusterIP: 10.105.0.14, selector: { app: quota }, ports: [{ name: grpc, port: 8081, targetPort: 8081 }] }
${QUOTA}`;
}

interface Step {
  readonly step: string;
  readonly outcome: string;
  readonly decidedBy: { readonly object: string; readonly from?: string };
  readonly node?: string;
  readonly details: readonly string[];
}
interface Explained {
  readonly verdict: 'allow' | 'deny' | 'unreachable';
  readonly steps: readonly Step[];
  readonly fix?: string;
  readonly snapshots: Readonly<Record<string, number>>;
}

/** `ambit explain … --json`, asked of alpha's agent (which then asks beta's for admission). */
async function explain(args: readonly string[]): Promise<Explained> {
  const r = await ambit(['explain', '--lab', LAB, '--node', 'alpha', ...args, '--json'], 30_000);
  assert.equal(r.code, 0, `ambit explain ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(r.stdout) as Explained;
}

function stepOf(e: Explained, name: string): Step {
  const found = e.steps.filter((s) => s.step === name).at(-1);
  assert.ok(found, `no ${name} step: ${JSON.stringify(e, null, 2)}`);
  return found;
}

/** curl from a pod: the status (0 when no HTTP answer came) and the body. */
async function curl(pod: string, url: string): Promise<{ status: number; body: string; exit: number }> {
  const r = await session.exec(pod, ['curl', '-s', '--max-time', '5', '-w', '\n%{http_code}', url]);
  const cut = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(cut + 1)) || 0, body: r.stdout.slice(0, cut), exit: r.code ?? -1 };
}

async function tcp(pod: string, ip: string, port: number): Promise<{ got: string; error?: string }> {
  const r = await session.exec(pod, ['node', '-e', TCP_CLIENT, ip, String(port)], 20_000);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout.trim()) as { got: string; error?: string };
}

before(async () => {
  await session.up(meshYaml(), 120);
});

after(async () => {
  await session.down();
});

test('allowed: the request reaches web-1, and explain says allow, picked web-1, HBONE to beta, by web-allow', async () => {
  const seen = await curl('shop/client', 'http://10.105.0.11/api/items');
  assert.deepEqual({ status: seen.status, body: seen.body }, { status: 200, body: 'web-1' });
  const e = await explain(['shop/client', 'web.shop:80', '--http', 'GET /api/items']);
  assert.equal(e.verdict, 'allow');
  assert.match(stepOf(e, 'destination').details.join('\n'), /picked 10\.253\.2\.11:8080 \(shop\/web-1\)/);
  assert.equal(stepOf(e, 'transport').outcome, 'hbone');
  const authz = stepOf(e, 'authorization');
  assert.equal(authz.decidedBy.object, 'AuthorizationPolicy shop/web-allow');
  assert.match(authz.decidedBy.from ?? '', /mesh\.yaml:\d+$/);
  // The destination side was judged by beta's own agent.
  assert.equal(authz.node, 'beta');
  assert.deepEqual(Object.keys(e.snapshots).sort(), ['alpha', 'beta']);
});

test('403 by an L7 DENY policy: explain says deny, by web-deny-admin, and names the rule to change', async () => {
  const seen = await curl('shop/client', 'http://10.105.0.11/api/admin');
  assert.deepEqual({ status: seen.status, body: seen.body }, { status: 403, body: 'RBAC: access denied' });
  const e = await explain(['shop/client', 'web.shop:80', '--http', 'GET /api/admin']);
  assert.equal(e.verdict, 'deny');
  const authz = stepOf(e, 'authorization');
  assert.equal(authz.outcome, 'denied');
  assert.equal(authz.decidedBy.object, 'AuthorizationPolicy shop/web-deny-admin');
  assert.match(e.fix ?? '', /rule 0 of AuthorizationPolicy shop\/web-deny-admin/);
});

test('an L4 policy closes the connection: explain says deny, no ALLOW rule of db-allow matches', async () => {
  const seen = await tcp('shop/client', '10.105.0.12', 5432);
  assert.equal(seen.got, '', `the connection carried ${JSON.stringify(seen.got)}: it was not denied`);
  assert.notEqual(seen.error, 'timeout');
  const e = await explain(['shop/client', 'db.shop:5432']);
  assert.equal(e.verdict, 'deny');
  const authz = stepOf(e, 'authorization');
  assert.equal(authz.outcome, 'not-allowed');
  assert.equal(authz.decidedBy.object, 'AuthorizationPolicy shop/db-allow');
  assert.match(e.fix ?? '', /principals: \["cluster\.local\/ns\/shop\/sa\/client"\]/);
});

test('PeerAuthentication STRICT refuses plaintext from a pod outside the mesh: explain says deny, by strict', async () => {
  const seen = await curl('legacy/outsider', 'http://10.105.0.11/api/items');
  assert.equal(seen.status, 0, `plaintext got an HTTP answer: ${seen.status} ${seen.body}`);
  const e = await explain(['legacy/outsider', 'web.shop:80', '--http', 'GET /api/items']);
  assert.equal(e.verdict, 'deny');
  assert.equal(stepOf(e, 'capture').outcome, 'not-captured');
  const pa = stepOf(e, 'peer-authentication');
  assert.equal(pa.outcome, 'STRICT');
  assert.equal(pa.decidedBy.object, 'PeerAuthentication shop/strict');
});

test('a Service with no ready endpoint: the connection is closed, explain says unreachable', async () => {
  const seen = await tcp('shop/client', '10.105.0.13', 7000);
  assert.equal(seen.got, '');
  assert.notEqual(seen.error, 'timeout');
  const e = await explain(['shop/client', 'gone.shop:7000']);
  assert.equal(e.verdict, 'unreachable');
  assert.match(e.fix ?? '', /no ready endpoint/);
});

test('a global rate limit whose service cannot be asked, failureMode deny: the request gets 500, explain says deny by web-quota', async () => {
  const seen = await curl('shop/client', 'http://10.105.0.11/api/quota');
  assert.equal(seen.status, 500);
  const e = await explain(['shop/client', 'web.shop:80', '--http', 'GET /api/quota']);
  assert.equal(e.verdict, 'deny');
  const limit = e.steps.find((s) => s.step === 'rate-limit' && s.decidedBy.object === 'RateLimit shop/web-quota');
  assert.equal(limit?.outcome, 'service-unavailable');
  assert.equal(limit?.node, 'beta');
  assert.match(limit?.details.join('\n') ?? '', /descriptor per-client: source_identity=spiffe:\/\/cluster\.local\/ns\/shop\/sa\/client/);
  assert.match(e.fix ?? '', /spec\.global\.failureMode is deny/);
  // The same limit on another path sends no descriptor: the request is answered, and explain agrees.
  assert.equal((await curl('shop/client', 'http://10.105.0.11/api/items')).status, 200);
  assert.equal((await explain(['shop/client', 'web.shop:80', '--http', 'GET /api/items'])).verdict, 'allow');
});

test('--last-denied on beta lists the denials its agent decided, each explained', async () => {
  const r = await ambit(['explain', '--lab', LAB, '--node', 'beta', '--last-denied', '--json'], 30_000);
  assert.equal(r.code, 0, r.stderr);
  const answer = JSON.parse(r.stdout) as { node: string; denials: { denial: { path: string; sourceIp: string; http?: { path: string }; reason: string }; explanation: Explained }[] };
  assert.equal(answer.node, 'beta');
  const admin = answer.denials.find((d) => d.denial.http?.path === '/api/admin');
  assert.ok(admin, `no /api/admin denial in ${JSON.stringify(answer.denials.map((d) => d.denial))}`);
  assert.equal(admin.explanation.verdict, 'deny');
  assert.equal(stepOf(admin.explanation, 'authorization').decidedBy.object, 'AuthorizationPolicy shop/web-deny-admin');
  const l4 = answer.denials.find((d) => d.denial.path === 'connection' && d.denial.sourceIp === '10.253.1.20');
  assert.ok(l4, 'the L4 denial of client -> db is not listed');
  assert.equal(stepOf(l4.explanation, 'authorization').decidedBy.object, 'AuthorizationPolicy shop/db-allow');
  const plaintext = answer.denials.find((d) => d.denial.sourceIp === '10.253.1.30');
  assert.ok(plaintext, 'the STRICT refusal of the outsider is not listed');
  assert.equal(stepOf(plaintext.explanation, 'peer-authentication').outcome, 'STRICT');
  // The text form says the same.
  const text = await ambit(['explain', '--lab', LAB, '--node', 'beta', '--last-denied'], 30_000);
  assert.match(text.stdout, /denied at .*GET \/api\/admin from spiffe:\/\/cluster\.local\/ns\/shop\/sa\/client/);
});

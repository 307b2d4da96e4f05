// Istio's request-routing and traffic-shifting tasks written as Gateway API HTTPRoutes (GAMMA: parentRefs
// to the reviews Service, one Service per version as Istio's ambient guide says), in the lab with
// bookinfo's own reviews and ratings apps (examples/bookinfo/apps): curl in a client pod on node alpha
// calls reviews, alpha's agent routes each request by the HTTPRoute, and the answering version is read
// from the JSON body the reviews pod wrote.

import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, afterEach, before, test } from 'node:test';
import { LabSession, twoNodesYaml } from './helpers/lab-session.js';

const LAB = `tgw${process.pid % 1000}`;
const session = LabSession.inTempDir(LAB, 'ambit-gateway-api-test-');
const APPS = fileURLToPath(new URL('../../examples/bookinfo/apps/', import.meta.url));

function meshYaml(routes: string): string {
  const pod = (name: string, app: string, version: string, ip: string, node: string, command: string[]): string => `---
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: bookinfo, labels: { app: ${app}, version: ${version} } }
spec:
  nodeName: ${node}
  containers:
    - name: main
      command: ${JSON.stringify(command)}
      env: [{ name: VERSION, value: ${version} }, { name: POD_NAME, value: ${name} }, { name: POD_NAMESPACE, value: bookinfo }]
      ports: [{ name: http, containerPort: 9080 }]
status: { podIP: ${ip} }
`;
  const service = (name: string, vip: string, selector: string): string => `---
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: bookinfo }
spec: { clusterIP: ${vip}, selector: ${selector}, ports: [{ name: http, port: 9080, targetPort: http }] }
`;
  const reviews = (v: string, ip: string): string => pod(`reviews-${v}`, 'reviews', v, ip, 'beta', ['node', `${APPS}reviews.mjs`]);
  return `${twoNodesYaml(67, 227)}
---
apiVersion: v1
kind: Namespace
metadata: { name: bookinfo, labels: { istio.io/dataplane-mode: ambient } }
${pod('client', 'client', 'v1', '10.227.1.20', 'alpha', ['sleep', 'infinity'])}${reviews('v1', '10.227.2.11')}${reviews('v2', '10.227.2.12')}${reviews('v3', '10.227.2.13')}${pod('ratings-v1', 'ratings', 'v1', '10.227.2.21', 'beta', ['node', `${APPS}ratings.mjs`])}${service('reviews', '10.108.67.10', '{ app: reviews }')}${service('reviews-v1', '10.108.67.11', '{ app: reviews, version: v1 }')}${service('reviews-v2', '10.108.67.12', '{ app: reviews, version: v2 }')}${service('reviews-v3', '10.108.67.13', '{ app: reviews, version: v3 }')}${service('ratings', '10.108.67.20', '{ app: ratings }')}${routes}`;
}

// Istio's request-routing task: "all traffic to v1", and "end-user: jason" to v2.
const REQUEST_ROUTING = `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: reviews, namespace: bookinfo }
spec:
  parentRefs: [{ group: "", kind: Service, name: reviews, port: 9080 }]
  rules:
  - matches: [{ headers: [{ type: Exact, name: end-user, value: jason }] }]
    backendRefs: [{ name: reviews-v2, port: 9080 }]
  - backendRefs: [{ name: reviews-v1, port: 9080 }]
`;

// Istio's traffic-shifting task: 50 % to v1 and 50 % to v3.
const SHIFT = (v1: number, v3: number): string => `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: reviews, namespace: bookinfo }
spec:
  parentRefs: [{ group: "", kind: Service, name: reviews, port: 9080 }]
  rules:
  - backendRefs:
    - { name: reviews-v1, port: 9080, weight: ${v1} }
    - { name: reviews-v3, port: 9080, weight: ${v3} }
`;

/** `n` GETs of /reviews/0 with curl in the client pod; the count of each answering version (or status). */
async function versions(n: number, headers: string[] = []): Promise<Record<string, number>> {
  const h = headers.map((x) => `-H '${x}'`).join(' ');
  // The body ends in a newline, so each answer is marked off by its status: "<body> @@200@@".
  const script = `for i in $(seq ${n}); do curl -s -m 10 ${h} -w ' @@%{http_code}@@' http://reviews.bookinfo:9080/reviews/0; done`;
  const r = await session.exec('bookinfo/client', ['sh', '-c', script], 120_000);
  assert.equal(r.code, 0, r.stderr);
  const out: Record<string, number> = {};
  for (const [, body, status] of r.stdout.matchAll(/([\s\S]*?) @@(\d{3})@@/g)) {
    const version = /"version":"(v\d)"/.exec(body!)?.[1];
    const key = status === '200' && version ? version : `status ${status}`;
    out[key] = (out[key] ?? 0) + 1;
  }
  return out;
}

before(() => session.up(meshYaml(REQUEST_ROUTING), 90));

// Each test starts from the request-routing HTTPRoute in force on alpha, whatever the test before it changed or how it ended.
afterEach(() => session.restore('alpha'));

after(() => session.down());

test("request routing (Istio's task as an HTTPRoute): everyone to v1, end-user jason to v2", async () => {
  assert.deepEqual(await versions(30), { v1: 30 });
  assert.deepEqual(await versions(30, ['end-user: jason']), { v2: 30 });
  // Header names match case-insensitively; the value is exact.
  assert.deepEqual(await versions(10, ['End-User: jason']), { v2: 10 });
  assert.deepEqual(await versions(10, ['end-user: Jason']), { v1: 10 });
  // v2 asked ratings for its stars: the answer carried them, so the whole call chain ran through the mesh.
  const body = await session.exec('bookinfo/client', ['curl', '-s', '-H', 'end-user: jason', 'http://reviews.bookinfo:9080/reviews/0']);
  assert.match(body.stdout, /"color":"black"/);
});

test("traffic shifting (Istio's task as an HTTPRoute): 50/50 between v1 and v3 over 400 requests, then all to v3", async () => {
  await session.apply(meshYaml(SHIFT(50, 50)), 'alpha');
  const half = await versions(400);
  assert.equal((half['v1'] ?? 0) + (half['v3'] ?? 0), 400, JSON.stringify(half));
  assert.ok(Math.abs((half['v3'] ?? 0) / 400 - 0.5) <= 0.1, `v3 got ${half['v3']} of 400 (expected 200 ± 40): ${JSON.stringify(half)}`);
  await session.apply(meshYaml(SHIFT(0, 100)), 'alpha');
  assert.deepEqual(await versions(40), { v3: 40 });
});

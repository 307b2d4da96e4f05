// `ambit explain` for the sources and destinations issue 16 names beyond the main walk-through
// (explain.test.ts): a pod enrolled by its own label, pods never captured (hostNetwork, an Istio
// sidecar), a Gateway API HTTPRoute splitting by weight, and a ServiceEntry host as the destination.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FILE, HTTP_GET, explain, lineOf, mesh, step } from './helpers/explain-mesh.js';

/**
 * What these tests add to the shared mesh: a pod labelled ambient in the namespace that is not
 * (legacy), pods never captured whatever their labels, web's second version with a Service per
 * version and an HTTPRoute splitting web between them, and a ServiceEntry.
 */
const SUBJECTS = `apiVersion: v1
kind: Pod
metadata: { name: labelled, namespace: legacy, labels: { app: labelled, istio.io/dataplane-mode: ambient } }
spec: { nodeName: node-a, serviceAccountName: labelled, containers: [{ name: c, command: [x] }] }
status: { podIP: 10.20.1.8 }
---
apiVersion: v1
kind: Pod
metadata: { name: hostnet, namespace: shop, labels: { app: hostnet, istio.io/dataplane-mode: ambient } }
spec: { nodeName: node-a, hostNetwork: true, containers: [{ name: c, command: [x] }] }
status: { podIP: 10.10.0.1 }
---
apiVersion: v1
kind: Pod
metadata: { name: sidecar, namespace: shop, labels: { app: sidecar, istio.io/dataplane-mode: ambient }, annotations: { sidecar.istio.io/status: '{"containers":["istio-proxy"]}' } }
spec: { nodeName: node-a, containers: [{ name: c, command: [x] }] }
status: { podIP: 10.20.1.9 }
---
apiVersion: v1
kind: Pod
metadata: { name: web-2, namespace: shop, labels: { app: web, version: v2 } }
spec: { nodeName: node-b, serviceAccountName: web, containers: [{ name: c, command: [x], ports: [{ name: http, containerPort: 8080 }] }] }
status: { podIP: 10.20.2.8 }
---
apiVersion: v1
kind: Service
metadata: { name: web-v1, namespace: shop }
spec: { clusterIP: 10.96.0.21, selector: { app: web, version: v1 }, ports: [{ name: http, port: 80, targetPort: 8080 }] }
---
apiVersion: v1
kind: Service
metadata: { name: web-v2, namespace: shop }
spec: { clusterIP: 10.96.0.22, selector: { app: web, version: v2 }, ports: [{ name: http, port: 80, targetPort: 8080 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web-split, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }]
  rules:
  - matches: [{ path: { type: PathPrefix, value: /api } }]
    backendRefs: [{ name: web-v1, port: 80, weight: 90 }, { name: web-v2, port: 80, weight: 10 }]
    timeouts: { request: 5s }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: payments, namespace: shop }
spec:
  hosts: [payments.example.com]
  addresses: [192.0.2.10]
  ports: [{ number: 443, name: tls, protocol: TLS }]
  resolution: STATIC
  location: MESH_EXTERNAL
  endpoints: [{ address: 198.51.100.7 }]
`;

const SNAPSHOT = mesh(SUBJECTS);

test('capture: a pod labelled ambient in a namespace that is not is captured, decided by the pod', () => {
  const capture = step(explain(SNAPSHOT, { source: 'legacy/labelled', destination: 'web.shop:80' }), 'capture');
  assert.equal(capture.outcome, 'captured');
  assert.equal(capture.decidedBy.object, 'Pod legacy/labelled');
  assert.equal(capture.decidedBy.from, `${FILE}:${lineOf(SUBJECTS, 'labelled')}`);
  assert.match(capture.details[0]!, /the pod is labelled istio\.io\/dataplane-mode=ambient/);
});

test('capture: a hostNetwork pod and a pod with an Istio sidecar are not captured, whatever their labels, and say why', () => {
  const host = step(explain(SNAPSHOT, { source: 'shop/hostnet', destination: 'web.shop:80' }), 'capture');
  assert.deepEqual([host.outcome, host.decidedBy.object], ['not-captured', 'Pod shop/hostnet']);
  assert.match(host.details[0]!, /hostNetwork: true/);
  const sidecar = step(explain(SNAPSHOT, { source: 'shop/sidecar', destination: 'web.shop:80' }), 'capture');
  assert.deepEqual([sidecar.outcome, sidecar.decidedBy.object], ['not-captured', 'Pod shop/sidecar']);
  assert.match(sidecar.details[0]!, /Istio sidecar \(sidecar\.istio\.io\/status\): the sidecar wins/);
});

test('L7 route: an HTTPRoute bound to the Service decides, with its rule, its backends\' weights and its timeout', () => {
  const e = explain(SNAPSHOT, { source: 'legacy/labelled', destination: 'web.shop:80', http: HTTP_GET('/api/items') });
  const route = step(e, 'l7-route');
  assert.equal(route.outcome, 'forward');
  assert.equal(route.decidedBy.object, 'HTTPRoute shop/web-split');
  assert.equal(route.decidedBy.from, `${FILE}:${lineOf(SUBJECTS, 'web-split')}`);
  assert.deepEqual(route.details.slice(0, 3), [
    'HTTPRoute shop/web-split rule 0: its matches[0] holds',
    'destinations: web-v1.shop.svc.cluster.local:80 90%, web-v2.shop.svc.cluster.local:80 10%',
    'timeout: 5000 ms',
  ]);
  assert.equal(e.verdict, 'allow');
});

test('a ServiceEntry host: its address resolves to the entry\'s endpoint, passed through as plain TCP (MESH_EXTERNAL), each step naming the ServiceEntry', () => {
  const e = explain(SNAPSHOT, { source: 'legacy/labelled', destination: 'payments.example.com:443' });
  const destination = step(e, 'destination');
  assert.equal(destination.outcome, 'endpoint');
  assert.equal(destination.decidedBy.object, 'ServiceEntry shop/payments');
  assert.equal(destination.decidedBy.from, `${FILE}:${lineOf(SUBJECTS, 'payments')}`);
  assert.match(destination.details.join('\n'), /VIP 192\.0\.2\.10:443 of payments\.example\.com/);
  assert.match(destination.details.join('\n'), /picked .*198\.51\.100\.7:443/);
  const transport = e.steps.filter((s) => s.step === 'transport').at(-1)!;
  assert.equal(transport.outcome, 'passthrough');
  assert.equal(transport.decidedBy.object, 'ServiceEntry shop/payments endpoint 0');
  assert.equal(e.verdict, 'allow');
});

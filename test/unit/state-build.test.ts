// The mesh snapshot: identities, enrollment, endpoints from selectors over ready pods, protocols, and
// the cross-object problems it reports.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatDiagnostic } from '../../agent/config/diagnostics.js';
import { parseConfigFile } from '../../agent/config/parse-file.js';
import { buildSnapshot } from '../../agent/state/build.js';
import { portProtocol } from '../../agent/state/protocol.js';
import { container, namespace, node, pod, service } from './helpers/mesh-objects.js';

const options = { version: 1, trustDomain: 'example.org', clusterDomain: 'cluster.local' };

test('workloads get SPIFFE identities from their service account, default when unset', () => {
  const s = buildSnapshot([pod('shop', 'a', { ip: '10.1.0.1', serviceAccount: 'cart' }), pod('shop', 'b', { ip: '10.1.0.2' })], options);
  assert.equal(s.workloads.get('shop/a')?.identity, 'spiffe://example.org/ns/shop/sa/cart');
  assert.equal(s.workloads.get('shop/b')?.identity, 'spiffe://example.org/ns/shop/sa/default');
  assert.equal(s.workloadsByIp.get('10.1.0.2')?.key, 'shop/b');
});

test('enrollment: namespace label, pod opt-in, pod opt-out, and pods without an IP', () => {
  const s = buildSnapshot(
    [
      namespace('mesh', { 'istio.io/dataplane-mode': 'ambient' }),
      namespace('plain'),
      pod('mesh', 'in', { ip: '10.1.0.1' }),
      pod('mesh', 'out', { ip: '10.1.0.2', labels: { 'istio.io/dataplane-mode': 'none' } }),
      pod('plain', 'alone', { ip: '10.1.0.3', labels: { 'istio.io/dataplane-mode': 'ambient' } }),
      pod('plain', 'not', { ip: '10.1.0.4' }),
      pod('mesh', 'pending'),
    ],
    options,
  );
  const e = (key: string) => s.workloads.get(key)?.enrollment;
  assert.deepEqual(e('mesh/in'), { enrolled: true, reason: 'namespace-label' });
  assert.deepEqual(e('mesh/out'), { enrolled: false, reason: 'pod-opt-out' });
  assert.deepEqual(e('plain/alone'), { enrolled: true, reason: 'pod-label' });
  assert.deepEqual(e('plain/not'), { enrolled: false, reason: 'namespace-not-ambient' });
  assert.deepEqual(e('mesh/pending'), { enrolled: false, reason: 'no-pod-ip' });
});

test('hostNetwork pods and pods with a sidecar are never enrolled; hostNetwork pods share the node\'s IP without owning it', () => {
  const hostPod = (name: string, labels = '') => `---
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: mesh${labels}}
spec: {nodeName: n1, hostNetwork: true, containers: [{name: c, ports: [{containerPort: 9100}]}]}
status: {podIP: 172.31.0.1}
`;
  const parsed = parseConfigFile(
    `apiVersion: v1
kind: Namespace
metadata: {name: mesh, labels: {istio.io/dataplane-mode: ambient}}
${hostPod('exporter')}${hostPod('agent', ', labels: {istio.io/dataplane-mode: ambient, app: agent}')}---
apiVersion: v1
kind: Pod
metadata: {name: injected, namespace: mesh, annotations: {sidecar.istio.io/status: '{"containers":["istio-proxy"]}'}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.1.0.9}
---
apiVersion: v1
kind: Service
metadata: {name: agent, namespace: mesh}
spec: {clusterIP: 10.96.0.50, selector: {app: agent}, ports: [{port: 80}]}
`,
    'host.yaml',
  );
  assert.deepEqual(parsed.diagnostics, []);
  const s = buildSnapshot(parsed.objects, options);
  // Two pods on one node's IP is no conflict for hostNetwork pods, and neither one speaks for the node's address.
  assert.deepEqual(s.diagnostics.filter((d) => d.severity === 'error'), []);
  assert.deepEqual(s.workloads.get('mesh/exporter')?.enrollment, { enrolled: false, reason: 'host-network' });
  assert.deepEqual(s.workloads.get('mesh/agent')?.enrollment, { enrolled: false, reason: 'host-network' });
  assert.equal(s.workloads.get('mesh/agent')?.hostNetwork, true);
  assert.equal(s.workloadsByIp.get('172.31.0.1'), undefined);
  assert.deepEqual(s.workloads.get('mesh/injected')?.enrollment, { enrolled: false, reason: 'sidecar' });
  assert.equal(s.workloadsByIp.get('10.1.0.9')?.key, 'mesh/injected');
  // Still a Service endpoint (reached as plain TCP, outside the mesh).
  assert.deepEqual(s.services.get('mesh/agent.mesh.svc.cluster.local')?.endpoints.map((e) => e.ip), ['172.31.0.1']);
});

test('service endpoints are the ready pods its selector matches, with named target ports resolved', () => {
  const web = (name: string, ip: string, extra: object = {}) =>
    pod('shop', name, { ip, labels: { app: 'web' }, containers: [container('c', ['x'], [{ name: 'http', containerPort: 8080 }])], ...extra });
  const s = buildSnapshot(
    [
      web('w1', '10.1.0.1'),
      web('w2', '10.1.0.2', { ready: false }),
      web('w3', '10.1.0.3', { phase: 'Pending' }),
      web('w4', '10.1.0.4'),
      pod('other', 'w5', { ip: '10.1.0.5', labels: { app: 'web' } }),
      service('shop', 'web', '10.96.0.1', { app: 'web' }, [{ name: 'http', port: 80, targetPort: 'http' }]),
    ],
    options,
  );
  const svc = s.services.get('shop/web.shop.svc.cluster.local');
  assert.equal(svc?.hostname, 'web.shop.svc.cluster.local');
  assert.deepEqual(
    svc?.endpoints.map((e) => [e.workload, e.ip, [...e.ports]]),
    [
      ['shop/w1', '10.1.0.1', [[80, 8080]]],
      ['shop/w4', '10.1.0.4', [[80, 8080]]],
    ],
  );
  assert.equal(s.servicesByVip.get('10.96.0.1'), svc);
  assert.equal(s.servicesByHostname.get('web.shop.svc.cluster.local'), svc);
});

test('cross-object problems are reported with file, line, object and field', () => {
  const first = pod('shop', 'a', { ip: '10.1.0.1' });
  const clash = pod('shop', 'b', { ip: '10.1.0.1', node: 'ghost' });
  const lonely = service('shop', 'lonely', '10.96.0.2', { app: 'nothing' }, [{ port: 80 }]);
  const s = buildSnapshot([node('n1', '192.168.0.1'), first, clash, lonely], options);
  assert.deepEqual(s.diagnostics.map(formatDiagnostic), [
    `test.yaml:${clash.source.line}: Pod shop/b: spec.nodeName: warning: node "ghost" is not defined; no agent will enroll this pod`,
    `test.yaml:${clash.source.line}: Pod shop/b: status.podIP: IP 10.1.0.1 is already used by Pod shop/a (test.yaml:${first.source.line}); this pod is ignored`,
    `test.yaml:${lonely.source.line}: Service shop/lonely: spec.selector: warning: selector app=nothing matches no pod in namespace shop; the service has no endpoints`,
  ]);
  assert.equal(s.workloads.has('shop/b'), false);
});

test('port protocols follow Istio: appProtocol first, then the name prefix, else TCP', () => {
  const p = (name: string | undefined, appProtocol?: string, protocol = 'TCP') => portProtocol({ ...(name ? { name } : {}), ...(appProtocol ? { appProtocol } : {}), protocol });
  assert.equal(p('http'), 'HTTP');
  assert.equal(p('http-web'), 'HTTP');
  assert.equal(p('http2'), 'HTTP2');
  assert.equal(p('grpc-api'), 'GRPC');
  assert.equal(p('grpc-web'), 'GRPC-Web');
  assert.equal(p('h2c'), 'HTTP2');
  assert.equal(p('web', 'http'), 'HTTP');
  assert.equal(p('http', 'kubernetes.io/h2c'), 'HTTP2');
  assert.equal(p('httpx'), 'TCP');
  assert.equal(p(undefined), 'TCP');
  assert.equal(p('dns', undefined, 'UDP'), 'UDP');
});

// agent/config on Kubernetes kinds and on the file level: typed objects with defaults, and exact messages
// (file, line, object, field) for malformed YAML, wrong types, missing fields, bad enums, IPs and CIDRs.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatDiagnostic } from '../../agent/config/diagnostics.js';
import { parseConfigFile } from '../../agent/config/load.js';

const messages = (text: string) => parseConfigFile(text, 'k.yaml').diagnostics.map(formatDiagnostic);

test('a Pod gets Kubernetes defaults: namespace, protocol TCP, probe timings', () => {
  const result = parseConfigFile(
    `apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
    - name: web
      command: [node, web.mjs]
      env:
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: MODE
          value: fast
      ports:
        - name: http
          containerPort: 8080
      readinessProbe:
        httpGet:
          port: http
status:
  podIP: 10.244.1.5
`,
    'k.yaml',
  );
  assert.deepEqual(result.diagnostics, []);
  const pod = result.objects[0];
  assert.equal(pod?.kind, 'Pod');
  if (pod?.kind !== 'Pod') return;
  assert.equal(pod.metadata.namespace, 'default');
  assert.deepEqual(pod.source, { file: 'k.yaml', line: 1 });
  const container = pod.spec.containers[0];
  assert.deepEqual(container?.env, [{ name: 'POD_NAME', fieldRef: 'metadata.name' }, { name: 'MODE', value: 'fast' }]);
  assert.deepEqual(container?.ports, [{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
  assert.deepEqual(container?.readinessProbe, {
    kind: 'httpGet', path: '/', port: 'http', scheme: 'HTTP', httpHeaders: [], periodSeconds: 10, timeoutSeconds: 1, failureThreshold: 3, successThreshold: 1,
  });
  assert.equal(pod.status.podIP, '10.244.1.5');
});

test('an httpGet probe keeps its scheme and httpHeaders in order; host is reported as unused; a bad scheme is an error', () => {
  const pod = (probe: string) => `apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
    - name: web
      readinessProbe:
${probe}
status: {podIP: 10.244.1.5}
`;
  const result = parseConfigFile(
    pod(`        httpGet:
          path: /ready
          port: 8443
          scheme: HTTPS
          host: web.example
          httpHeaders:
            - {name: X-Probe, value: a}
            - {name: X-Probe, value: b}
            - {name: Host, value: web.internal}`),
    'k.yaml',
  );
  const parsed = result.objects[0];
  assert.equal(parsed?.kind, 'Pod');
  if (parsed?.kind !== 'Pod') return;
  assert.deepEqual(parsed.spec.containers[0]?.readinessProbe, {
    kind: 'httpGet', path: '/ready', port: 8443, scheme: 'HTTPS',
    httpHeaders: [{ name: 'X-Probe', value: 'a' }, { name: 'X-Probe', value: 'b' }, { name: 'Host', value: 'web.internal' }],
    periodSeconds: 10, timeoutSeconds: 1, failureThreshold: 3, successThreshold: 1,
  });
  assert.deepEqual(result.diagnostics.map(formatDiagnostic), [
    "k.yaml:12: Pod default/web: spec.containers[0].readinessProbe.httpGet.host: warning: httpGet.host is not used: the agent probes the endpoint's pod IP (set a Host header in httpHeaders to send another name)",
  ]);
  assert.match(messages(pod('        httpGet: {port: 80, scheme: FTP}')).join('\n'), /scheme.*HTTP.*HTTPS/);
});

test('a Service defaults targetPort to port and protocol to TCP, and keeps clusterIP', () => {
  const result = parseConfigFile(
    `apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  clusterIP: 10.96.0.20
  selector: {app: reviews}
  ports:
    - {name: http, port: 9080, appProtocol: http}
    - {name: grpc, port: 9090, targetPort: grpc-port}
`,
    'k.yaml',
  );
  assert.deepEqual(result.diagnostics, []);
  const svc = result.objects[0];
  if (svc?.kind !== 'Service') return assert.fail('expected a Service');
  assert.deepEqual(svc.spec, {
    type: 'ClusterIP',
    selector: { app: 'reviews' },
    clusterIP: '10.96.0.20',
    clusterIPs: [],
    ports: [
      { name: 'http', port: 9080, targetPort: 9080, protocol: 'TCP', appProtocol: 'http' },
      { name: 'grpc', port: 9090, targetPort: 'grpc-port', protocol: 'TCP' },
    ],
  });
});

test('wrong types, missing fields and bad enums name the line, object and field path', () => {
  assert.deepEqual(
    messages(`apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
spec:
  containers:
    - name: web
      command: node web.mjs
      ports:
        - containerPort: 8080
        - containerPort: http
          protocol: tcp
      env:
        - value: x
`),
    [
      'k.yaml:9: Pod shop/web: spec.containers[0].command: expected a list, got "node web.mjs"',
      'k.yaml:12: Pod shop/web: spec.containers[0].ports[1].containerPort: expected an integer from 1 to 65535, got "http"',
      'k.yaml:13: Pod shop/web: spec.containers[0].ports[1].protocol: expected one of TCP, UDP, SCTP, got "tcp"',
      'k.yaml:15: Pod shop/web: spec.containers[0].env[0].name: required field is missing',
    ],
  );
});

test('a Pod without containers, or without spec, is rejected', () => {
  assert.deepEqual(messages('apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers: []\n'), [
    'k.yaml:4: Pod default/a: spec.containers: expected at least one container, got an empty list',
  ]);
  const result = parseConfigFile('apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n', 'k.yaml');
  assert.deepEqual(result.diagnostics.map(formatDiagnostic), ['k.yaml:1: Pod default/a: spec: required field is missing']);
  assert.deepEqual(result.rejected, [{ kind: 'Pod', namespace: 'default', name: 'a', source: { file: 'k.yaml', line: 1 } }]);
});

test('IP addresses and CIDRs are checked', () => {
  assert.deepEqual(
    messages(`apiVersion: v1
kind: Node
metadata:
  name: node-a
spec:
  podCIDR: 10.244.1.0/33
status:
  addresses:
    - type: InternalIP
      address: 172.31.77.300
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: 10.96.0
  ports: [{port: 80}]
`),
    [
      'k.yaml:6: Node node-a: spec.podCIDR: expected a CIDR such as 10.244.0.0/16, got "10.244.1.0/33"',
      'k.yaml:10: Node node-a: status.addresses[0].address: expected an IP address, got "172.31.77.300"',
      'k.yaml:16: Service default/web: spec.clusterIP: expected an IP address or "None", got "10.96.0"',
    ],
  );
});

test('names must be DNS-1123; the apiVersion must be one the kind has', () => {
  assert.deepEqual(messages('apiVersion: apps/v1\nkind: Service\nmetadata:\n  name: Web_1\nspec: {ports: [{port: 80}]}\n'), [
    'k.yaml:1: Service default/Web_1: apiVersion: expected v1 for a Service, got "apps/v1"',
    "k.yaml:4: Service default/Web_1: metadata.name: expected a DNS-1123 label (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit), got \"Web_1\"",
  ]);
  assert.deepEqual(messages('apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  namespace: shop\n'), [
    'k.yaml:3: ServiceAccount: metadata.name: required field is missing',
  ]);
});

test('labels and ports follow Kubernetes syntax', () => {
  assert.deepEqual(
    messages(`apiVersion: v1
kind: Service
metadata:
  name: web
  labels:
    app: "my app"
spec:
  ports:
    - {port: 80, targetPort: "8080"}
    - {name: b, port: 81}
    - {name: c, port: 81}
`),
    [
      'k.yaml:6: Service default/web: metadata.labels.app: invalid label value "my app": expected at most 63 letters, digits, \'-\', \'_\' or \'.\', starting and ending with a letter or digit',
      'k.yaml:9: Service default/web: spec.ports[0].name: required field is missing (a Service with several ports must name each one)',
      "k.yaml:9: Service default/web: spec.ports[0].targetPort: expected a port number from 1 to 65535 or a port name (at most 15 lowercase letters, digits and '-', with at least one letter), got \"8080\"",
      'k.yaml:11: Service default/web: spec.ports[2]: duplicate port 81/TCP',
    ],
  );
});

test('malformed YAML makes the file unreadable, with the line of the error', () => {
  const result = parseConfigFile('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  name: b\n', 'bad.yaml');
  assert.equal(result.readable, false);
  assert.deepEqual(result.objects, []);
  assert.deepEqual(result.diagnostics.map(formatDiagnostic), ['bad.yaml:5: invalid YAML: Map keys must be unique']);
  const flow = parseConfigFile('apiVersion: v1\nkind: Pod\nmetadata: {name: [a\n', 'bad.yaml');
  assert.equal(flow.readable, false);
  assert.match(formatDiagnostic(flow.diagnostics[0]!), /^bad\.yaml:[34]: invalid YAML: /);
});

test('unknown kinds and documents without kind are warnings and skipped; empty documents are fine', () => {
  const result = parseConfigFile(
    `---
# only a comment
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
---
just: data
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
`,
    'k.yaml',
  );
  const reads = 'Node, Namespace, ServiceAccount, Pod, Service, VirtualService, DestinationRule, AuthorizationPolicy, PeerAuthentication, RequestAuthentication, ServiceEntry, WorkloadEntry, Telemetry, ConfigMap, HTTPRoute, GRPCRoute, TCPRoute, Gateway, RateLimit and List';
  assert.deepEqual(result.diagnostics.map(formatDiagnostic), [
    `k.yaml:4: warning: skipped: Ambit does not read kind Deployment; it reads ${reads}`,
    `k.yaml:8: warning: skipped: not a Kubernetes object (no kind or apiVersion); Ambit reads ${reads}`,
  ]);
  assert.deepEqual(result.objects.map((o) => `${o.kind} ${o.metadata.name}`), ['Namespace shop']);
});

test('a List is expanded like kubectl does, and its items are reported by path', () => {
  const result = parseConfigFile(
    `apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Namespace
    metadata: {name: shop}
  - apiVersion: v1
    kind: ServiceAccount
    metadata: {name: web, namespace: shop}
  - apiVersion: v1
    kind: Pod
    metadata: {name: broken}
    spec: {containers: [{name: c, ports: [{containerPort: 0}]}]}
`,
    'list.yaml',
  );
  assert.deepEqual(result.objects.map((o) => `${o.kind} ${o.metadata.namespace}/${o.metadata.name}`), ['Namespace /shop', 'ServiceAccount shop/web']);
  assert.deepEqual(result.diagnostics.map(formatDiagnostic), [
    'list.yaml:13: Pod default/broken: items[2].spec.containers[0].ports[0].containerPort: expected an integer from 1 to 65535, got 0',
  ]);
  assert.deepEqual(result.rejected.map((r) => r.name), ['broken']);
});

test('an invalid object is rejected alone; the rest of the file loads', () => {
  const result = parseConfigFile(
    'apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: 5}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: c}\n',
    'k.yaml',
  );
  assert.deepEqual(result.objects.map((o) => o.metadata.name), ['a', 'c']);
  assert.deepEqual(result.diagnostics.map(formatDiagnostic), ['k.yaml:7: Namespace: metadata.name: expected a string, got 5']);
  assert.deepEqual(result.rejected, [], 'an object without a usable name cannot be identified');
});

// agent/config on Istio kinds: realistic resources in the shapes of Istio's documentation parse into
// precise types (milliseconds, compiled regexes, discriminated oneofs), and istiod's rules are enforced.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatDiagnostic } from '../../agent/config/diagnostics.js';
import { parseConfigFile } from '../../agent/config/load.js';
import type { MeshObject } from '../../agent/config/objects.js';

function parseOne<K extends MeshObject['kind']>(kind: K, text: string): Extract<MeshObject, { kind: K }> {
  const result = parseConfigFile(text, 'istio.yaml');
  assert.deepEqual(result.diagnostics.map(formatDiagnostic), []);
  const object = result.objects[0];
  assert.equal(object?.kind, kind);
  return object as Extract<MeshObject, { kind: K }>;
}

const messages = (text: string) => parseConfigFile(text, 'istio.yaml').diagnostics.map(formatDiagnostic);

test('VirtualService: matches, weighted routes, retries, timeout, fault, mirror, header operations', () => {
  const vs = parseOne(
    'VirtualService',
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
    - name: jason
      match:
        - headers:
            End-User: {exact: jason}
          uri: {regex: "/api/v[0-9]+/.*"}
      route:
        - destination: {host: reviews, subset: v2}
      fault:
        delay: {fixedDelay: 1.5s, percentage: {value: 10}}
        abort: {httpStatus: 503, percentage: {value: 0.5}}
    - route:
        - destination: {host: reviews, subset: v1, port: {number: 9080}}
          weight: 75
          headers: {response: {set: {x-version: v1}, remove: [x-debug]}}
        - destination: {host: reviews, subset: v3}
          weight: 25
      timeout: 2m
      retries: {attempts: 3, perTryTimeout: 100ms, retryOn: "5xx,connect-failure,503"}
      mirror: {host: reviews, subset: v3}
      mirrorPercentage: {value: 12.5}
  tcp:
    - match: [{port: 31400, destinationSubnets: [10.96.0.0/12]}]
      route: [{destination: {host: ratings-db}}]
`,
  );
  const [jason, rest] = vs.spec.http;
  const match = jason?.match[0];
  assert.deepEqual(match?.headers, { 'end-user': { kind: 'exact', value: 'jason' } });
  assert.equal(match?.uri?.kind, 'regex');
  if (match?.uri?.kind === 'regex') {
    assert.equal(match.uri.regex.test('/api/v2/ratings'), true);
    assert.equal(match.uri.regex.test('/x/api/v2/ratings'), false, 'a regex must match the whole uri');
  }
  assert.deepEqual(jason?.fault, { delay: { fixedDelayMs: 1500, percentage: 10 }, abort: { kind: 'httpStatus', httpStatus: 503, percentage: 0.5 } });
  assert.deepEqual(rest?.action, {
    kind: 'route',
    destinations: [
      { destination: { host: 'reviews', subset: 'v1', port: 9080 }, weight: 75, headers: { request: { set: {}, add: {}, remove: [] }, response: { set: { 'x-version': 'v1' }, add: {}, remove: ['x-debug'] } } },
      { destination: { host: 'reviews', subset: 'v3' }, weight: 25, headers: { request: { set: {}, add: {}, remove: [] }, response: { set: {}, add: {}, remove: [] } } },
    ],
  });
  assert.equal(rest?.timeoutMs, 120_000);
  assert.deepEqual(rest?.retries, { attempts: 3, perTryTimeoutMs: 100, retryOn: ['5xx', 'connect-failure', '503'], retryRemoteLocalities: false });
  assert.deepEqual(rest?.mirrors, [{ destination: { host: 'reviews', subset: 'v3' }, percentage: 12.5 }]);
  assert.deepEqual(vs.spec.tcp, [{ match: [{ port: 31400, destinationSubnets: ['10.96.0.0/12'], sourceLabels: {}, gateways: [] }], route: [{ destination: { host: 'ratings-db' }, weight: 0 }] }]);
});

test('VirtualService: redirect and directResponse are actions of their own', () => {
  const vs = parseOne(
    'VirtualService',
    `apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: edge}
spec:
  hosts: [web.shop.svc.cluster.local]
  http:
    - match: [{uri: {prefix: /old}}]
      redirect: {uri: /new, authority: web}
    - directResponse: {status: 503, body: {string: "down for maintenance"}}
`,
  );
  assert.deepEqual(vs.spec.http.map((r) => r.action), [
    { kind: 'redirect', redirect: { uri: '/new', authority: 'web', redirectCode: 301 } },
    { kind: 'directResponse', directResponse: { status: 503, body: 'down for maintenance' } },
  ]);
});

test('VirtualService: istiod rules are enforced with exact messages', () => {
  assert.deepEqual(
    messages(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: ["*"]
  http:
    - route: [{destination: {host: reviews}}]
      redirect: {uri: /v2}
    - match: [{uri: {regex: "/api/(v1"}}]
      route:
        - {destination: {host: reviews, subset: v1}, weight: 0}
        - {destination: {host: reviews, subset: v2}}
    - route: [{destination: {host: reviews}}]
      timeout: soon
      retries: {perTryTimeout: 1s}
      fault: {abort: {percentage: {value: 150}, httpStatus: 503}}
`),
    [
      'istio.yaml:5: VirtualService bookinfo/reviews: spec.hosts: "*" is not allowed as a host for the mesh; name the services',
      'istio.yaml:7: VirtualService bookinfo/reviews: spec.http[0]: expected only one of route, redirect, directResponse, got route and redirect',
      'istio.yaml:9: VirtualService bookinfo/reviews: spec.http[1].match[0].uri.regex: invalid regular expression "/api/(v1": unterminated group (Istio uses RE2 syntax)',
      'istio.yaml:10: VirtualService bookinfo/reviews: spec.http[1].route: the weights add up to 0; give at least one destination a positive weight',
      'istio.yaml:14: VirtualService bookinfo/reviews: spec.http[2].timeout: expected a duration such as "100ms", "1.5s" or "2m", got "soon"',
      'istio.yaml:15: VirtualService bookinfo/reviews: spec.http[2].retries: retries are configured but attempts is 0, which disables them; set attempts',
      'istio.yaml:16: VirtualService bookinfo/reviews: spec.http[2].fault.abort.percentage.value: expected a number from 0 to 100, got 150',
    ],
  );
});

test('VirtualService: a misspelt field is a warning naming the fields Ambit reads', () => {
  const result = parseConfigFile(
    'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n    - route: [{destinaton: {host: r}, destination: {host: r}}]\n',
    'istio.yaml',
  );
  assert.deepEqual(result.diagnostics.map(formatDiagnostic), [
    'istio.yaml:7: VirtualService default/r: spec.http[0].route[0].destinaton: warning: unknown field, ignored (fields Ambit reads here: destination, headers, weight)',
  ]);
  assert.equal(result.objects.length, 1);
});

test('DestinationRule: subsets, load balancing oneofs, pools, outlier detection, TLS, port settings', () => {
  const dr = parseOne(
    'DestinationRule',
    `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews.bookinfo.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie: {name: user, ttl: 0s}
        maglev: {tableSize: 65537}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 30ms, tcpKeepalive: {time: 7200s, interval: 75s}}
      http: {http2MaxRequests: 1000, maxRequestsPerConnection: 10, h2UpgradePolicy: UPGRADE}
    outlierDetection: {consecutive5xxErrors: 7, interval: 5m, baseEjectionTime: 15m, maxEjectionPercent: 50}
    tls: {mode: ISTIO_MUTUAL}
    portLevelSettings:
      - port: {number: 9080}
        loadBalancer: {simple: RANDOM}
  subsets:
    - name: v1
      labels: {version: v1}
    - name: v2
      labels: {version: v2}
      trafficPolicy:
        loadBalancer: {simple: ROUND_ROBIN}
  workloadSelector: {matchLabels: {app: productpage}}
`,
  );
  const policy = dr.spec.trafficPolicy;
  assert.deepEqual(policy?.loadBalancer, {
    algorithm: { kind: 'consistentHash', hashKey: { kind: 'httpCookie', name: 'user', ttlMs: 0 }, hashAlgorithm: { kind: 'maglev', tableSize: 65537 } },
  });
  assert.deepEqual(policy?.connectionPool, {
    tcp: { maxConnections: 100, connectTimeoutMs: 30, tcpKeepalive: { timeMs: 7_200_000, intervalMs: 75_000 } },
    http: { http2MaxRequests: 1000, maxRequestsPerConnection: 10, h2UpgradePolicy: 'UPGRADE' },
  });
  assert.deepEqual(policy?.outlierDetection, {
    consecutive5xxErrors: 7, intervalMs: 300_000, baseEjectionTimeMs: 900_000, maxEjectionPercent: 50, splitExternalLocalOriginErrors: false,
  });
  assert.deepEqual(policy?.tls, { mode: 'ISTIO_MUTUAL', subjectAltNames: [] });
  assert.deepEqual(policy?.portLevelSettings, [{ port: 9080, loadBalancer: { algorithm: { kind: 'simple', simple: 'RANDOM' } } }]);
  assert.deepEqual(dr.spec.subsets.map((s) => [s.name, s.labels, s.trafficPolicy?.loadBalancer?.algorithm]), [
    ['v1', { version: 'v1' }, undefined],
    ['v2', { version: 'v2' }, { kind: 'simple', simple: 'ROUND_ROBIN' }],
  ]);
  assert.deepEqual(dr.spec.workloadSelector, { matchLabels: { app: 'productpage' } });
});

test('DestinationRule: bad enums, oneofs and istiod rules', () => {
  assert.deepEqual(
    messages(`apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: FASTEST}
    outlierDetection: {consecutiveLocalOriginFailures: 3}
    tls: {mode: MUTUAL}
  subsets:
    - {name: v1, labels: {version: v1}}
    - {name: v1, labels: {version: v2}}
    - name: V_3
      trafficPolicy: {}
`),
    [
      'istio.yaml:7: DestinationRule default/reviews: spec.trafficPolicy.loadBalancer.simple: expected one of ROUND_ROBIN, LEAST_REQUEST, RANDOM, PASSTHROUGH, UNSPECIFIED, LEAST_CONN, got "FASTEST"',
      'istio.yaml:8: DestinationRule default/reviews: spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures: consecutiveLocalOriginFailures needs splitExternalLocalOriginErrors: true',
      'istio.yaml:9: DestinationRule default/reviews: spec.trafficPolicy.tls.clientCertificate: required field is missing (mode MUTUAL needs it unless credentialName is set)',
      'istio.yaml:9: DestinationRule default/reviews: spec.trafficPolicy.tls.privateKey: required field is missing (mode MUTUAL needs it unless credentialName is set)',
      'istio.yaml:12: DestinationRule default/reviews: spec.subsets[1]: duplicate subset name "v1"',
      'istio.yaml:13: DestinationRule default/reviews: spec.subsets[2].name: expected a subset name (a DNS-1123 label such as "v1"), got "V_3"',
      'istio.yaml:14: DestinationRule default/reviews: spec.subsets[2].trafficPolicy: expected at least one of loadBalancer, connectionPool, outlierDetection, tls or portLevelSettings, got none',
    ],
  );
  const leastConn = parseConfigFile('apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: r\n  trafficPolicy:\n    loadBalancer: {simple: LEAST_CONN}\n', 'istio.yaml');
  assert.deepEqual(leastConn.diagnostics.map(formatDiagnostic), [
    'istio.yaml:7: DestinationRule default/r: spec.trafficPolicy.loadBalancer.simple: warning: LEAST_CONN is deprecated; it means LEAST_REQUEST',
  ]);
  const lb = leastConn.objects[0]?.kind === 'DestinationRule' ? leastConn.objects[0].spec.trafficPolicy?.loadBalancer : undefined;
  assert.deepEqual(lb, { algorithm: { kind: 'simple', simple: 'LEAST_REQUEST' } });
  assert.deepEqual(messages('apiVersion: networking.istio.io/v2\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: r}\n'), [
    'istio.yaml:1: DestinationRule default/r: apiVersion: expected one of networking.istio.io/v1, networking.istio.io/v1beta1, networking.istio.io/v1alpha3 for a DestinationRule, got "networking.istio.io/v2"',
  ]);
});

test('AuthorizationPolicy: sources, operations and conditions parse; ports become numbers', () => {
  const policy = parseOne(
    'AuthorizationPolicy',
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-viewer, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: ratings}}
  action: ALLOW
  rules:
    - from:
        - source: {principals: [cluster.local/ns/bookinfo/sa/bookinfo-reviews]}
        - source: {namespaces: [monitoring], ipBlocks: [10.244.0.0/16, 192.0.2.7]}
      to:
        - operation: {methods: [GET], paths: [/ratings/*], ports: ["9080"]}
      when:
        - key: request.headers[x-canary]
          values: ["true"]
        - key: source.ip
          notValues: [10.244.3.0/24]
`,
  );
  assert.deepEqual(policy.spec.selector, { matchLabels: { app: 'ratings' } });
  const rule = policy.spec.rules[0];
  assert.deepEqual(rule?.from[1]?.ipBlocks, ['10.244.0.0/16', '192.0.2.7']);
  assert.deepEqual(rule?.to[0]?.ports, [9080]);
  assert.deepEqual(rule?.when, [
    { key: 'request.headers[x-canary]', values: ['true'], notValues: [] },
    { key: 'source.ip', values: [], notValues: ['10.244.3.0/24'] },
  ]);
});

test('AuthorizationPolicy: bad blocks, ports, condition keys, and istiod action rules', () => {
  assert.deepEqual(
    messages(`apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: deny-bad, namespace: shop}
spec:
  action: DENY
  rules:
    - from: [{source: {ipBlocks: [10.0.0.0/40]}}]
      to: [{operation: {ports: [8080]}}]
      when: [{key: "destination.labels[app]", values: [web]}]
    - from: []
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: shop}
spec:
  action: CUSTOM
`),
    [
      'istio.yaml:7: AuthorizationPolicy shop/deny-bad: spec.rules[0].from[0].source.ipBlocks[0]: expected an IP address or a CIDR such as 10.0.0.0/8, got "10.0.0.0/40"',
      'istio.yaml:8: AuthorizationPolicy shop/deny-bad: spec.rules[0].to[0].operation.ports[0]: expected a port as a string such as "8080", got 8080',
      'istio.yaml:9: AuthorizationPolicy shop/deny-bad: spec.rules[0].when[0].key: unknown condition key "destination.labels[app]"; expected one of source.ip, remote.ip, source.namespace, source.serviceAccount, source.principal, request.auth.principal, request.auth.audiences, request.auth.presenter, destination.ip, destination.port, connection.sni, request.headers[...], request.experimental.inline.headers[...], request.auth.claims[...], experimental.envoy.filters.[...]',
      'istio.yaml:10: AuthorizationPolicy shop/deny-bad: spec.rules[1].from: expected at least one source, got an empty list (omit `from` to match any)',
      'istio.yaml:15: AuthorizationPolicy shop/ext: spec.provider: required field is missing (a CUSTOM policy names its provider)',
      'istio.yaml:15: AuthorizationPolicy shop/ext: spec.rules: required field is missing (a CUSTOM policy without rules never applies; write `rules: [{}]` to match every request)',
    ],
  );
});

test('PeerAuthentication: modes, port-level mTLS, and its selector rule', () => {
  const pa = parseOne(
    'PeerAuthentication',
    `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  mtls: {mode: STRICT}
  portLevelMtls:
    8080: {mode: PERMISSIVE}
`,
  );
  assert.deepEqual(pa.spec, { selector: { matchLabels: { app: 'web' } }, mtls: { mode: 'STRICT' }, portLevelMtls: [{ port: 8080, mode: 'PERMISSIVE' }] });
  assert.deepEqual(
    messages('apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default}\nspec:\n  mtls: {mode: strict}\n  portLevelMtls:\n    70000: {mode: DISABLE}\n'),
    [
      'istio.yaml:5: PeerAuthentication default/default: spec.mtls.mode: expected one of UNSET, DISABLE, PERMISSIVE, STRICT, got "strict"',
      'istio.yaml:6: PeerAuthentication default/default: spec.portLevelMtls: portLevelMtls needs a selector; namespace-wide and mesh-wide policies cannot set port-level mTLS',
      'istio.yaml:7: PeerAuthentication default/default: spec.portLevelMtls["70000"]: expected a port number from 1 to 65535 as the key, got "70000"',
    ],
  );
});

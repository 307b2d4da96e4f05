// Several clusters as one mesh (docs/multicluster.md): each cluster's YAML becomes one snapshot whose
// workloads carry their cluster and network, whose global Services hold every cluster's endpoints,
// where another network's workloads are reached through its east-west gateway, and where a client
// prefers its own cluster, then its network, failing over only when nothing closer is ready.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { buildConfigDump } from '../../agent/admin/config-dump.js';
import { zcOutput } from '../../agent/cli/zc.js';
import { workloads } from '../../agent/cli/zc-tables.js';
import { formatDiagnostic } from '../../agent/config/diagnostics.js';
import { explainPath } from '../../agent/explain/explain.js';
import type { MeshObject } from '../../agent/config/objects.js';
import { parseConfigFile } from '../../agent/config/parse-file.js';
import { systemClock } from '../../agent/l7/clock.js';
import { UpstreamClusters } from '../../agent/l7/upstream-cluster.js';
import { buildSnapshot } from '../../agent/state/build.js';
import { ClusterTier, clusterTier, rankEndpoints } from '../../agent/state/locality.js';
import type { MeshSnapshot } from '../../agent/state/model.js';
import { LocalFileSource } from '../../agent/sources/local-files.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { resolveOutbound } from '../../agent/tunnel/destination.js';
import { waitForSnapshot } from './helpers/snapshot-wait.js';

const REVIEWS = 'shop/reviews.shop.svc.cluster.local';

function parse(yaml: string, file: string): readonly MeshObject[] {
  const parsed = parseConfigFile(yaml, file);
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic), []);
  return parsed.objects;
}

const systemNamespace = (network: string) => `---
apiVersion: v1
kind: Namespace
metadata: {name: istio-system, labels: {topology.istio.io/network: ${network}}}
`;
const shop = `---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
`;
const node = (name: string, zone = 'z1') => `---
apiVersion: v1
kind: Node
metadata: {name: ${name}, labels: {topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: ${zone}}}
`;
const pod = (name: string, nodeName: string, ip: string, opts: { ready?: boolean; app?: string } = {}) => `---
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: shop, labels: {app: ${opts.app ?? 'reviews'}}}
spec: {nodeName: ${nodeName}, serviceAccountName: reviews, containers: [{name: c, ports: [{containerPort: 9080}]}]}
status: {podIP: ${ip}${opts.ready === false ? ', conditions: [{type: Ready, status: "False"}]' : ''}}
`;
const service = (name: string, vip: string, opts: { global?: boolean; targetPort?: number; portName?: string } = {}) => `---
apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: shop${opts.global === false ? '' : ', labels: {istio.io/global: "true"}'}}
spec: {clusterIP: ${vip}, selector: {app: ${name}}, ports: [{name: ${opts.portName ?? 'http'}, port: 9080, targetPort: ${opts.targetPort ?? 9080}}]}
`;
const eastWestGateway = (network: string, address: string) => `---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: istio-eastwestgateway, namespace: istio-system, labels: {topology.istio.io/network: ${network}}}
spec:
  gatewayClassName: istio-east-west
  addresses: [{type: IPAddress, value: ${address}}]
  listeners: [{name: mesh, port: 15008, protocol: HBONE, tls: {mode: Terminate}}]
`;

interface MeshShape {
  readonly ownReady?: boolean;
  readonly flatReady?: boolean;
}

/**
 * Cluster c1 (the agent's, network n1) with reviews-v1 on node n1; c3, another cluster on network n1,
 * with reviews-v2; c2 on network n2 behind its east-west gateway 192.0.2.2, with reviews-v3 on a node
 * that is also called n1 and at the IP of a c1 pod (networks may repeat each other's addresses).
 */
function mesh(shape: MeshShape = {}): MeshSnapshot {
  const own = parse(`${systemNamespace('n1')}${shop}${node('n1')}${node('n2')}${pod('reviews-v1', 'n1', '10.1.0.1', { ready: shape.ownReady ?? true })}${pod('productpage', 'n2', '10.1.0.2', { app: 'productpage' })}${service('reviews', '10.96.0.1')}${service('productpage', '10.96.0.2', { global: false })}`, 'c1.yaml');
  const c2 = parse(
    `${systemNamespace('n2')}${shop}${node('n1', 'z2')}${pod('reviews-v3', 'n1', '10.1.0.2')}${pod('productpage', 'n1', '10.1.0.9', { app: 'productpage' })}${service('reviews', '10.96.0.1')}${service('productpage', '10.96.0.2')}${eastWestGateway('n2', '192.0.2.2')}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: shop}
spec: {}
`,
    'c2.yaml',
  );
  const c3 = parse(`${systemNamespace('n1')}${shop}${node('m1')}${pod('reviews-v2', 'm1', '10.3.0.1', { ready: shape.flatReady ?? true })}${service('reviews', '10.97.0.1')}${service('details', '10.97.0.2', { global: false })}`, 'c3.yaml');
  return buildSnapshot(own, {
    version: 1,
    trustDomain: 'cluster.local',
    clusterDomain: 'cluster.local',
    cluster: { id: 'c1' },
    remoteClusters: [
      { id: 'c3', objects: c3 },
      { id: 'c2', objects: c2 },
    ],
  });
}

/** Which pods a client on node n1 of c1 reaches over several L4 connections to reviews. */
function reached(snapshot: MeshSnapshot): string[] {
  const seen = new Set<string>();
  for (let i = 0; i < 4; i++) {
    const target = resolveOutbound(snapshot, { ip: '10.96.0.1', port: 9080 }, 'n1', (n) => i % n);
    seen.add(target.kind === 'workload' ? `${target.workload.cluster}:${target.workload.name}` : target.kind);
  }
  return [...seen].sort();
}

describe('several clusters as one mesh', () => {
  it('gives every workload its cluster and network, and another network\'s workloads its east-west gateway', () => {
    const s = mesh();
    assert.equal(s.ownCluster, 'c1');
    assert.equal(s.ownNetwork, 'n1');
    const v1 = s.workloads.get('shop/reviews-v1');
    assert.equal(v1?.cluster, 'c1');
    assert.equal(v1?.network, 'n1');
    assert.equal(v1?.networkGateway, undefined);
    const v2 = s.workloads.get('c3//Pod/shop/reviews-v2');
    assert.deepEqual([v2?.cluster, v2?.network, v2?.networkGateway], ['c3', 'n1', undefined]);
    const v3 = s.workloads.get('c2//Pod/shop/reviews-v3');
    assert.deepEqual([v3?.cluster, v3?.network], ['c2', 'n2']);
    assert.deepEqual(v3?.networkGateway, { destination: { address: '192.0.2.2' }, hboneMtlsPort: 15008, identity: 'spiffe://cluster.local/ns/istio-system/sa/istio-eastwestgateway' });
    // Namespace sameness: the same identity in every cluster.
    assert.equal(v3?.identity, 'spiffe://cluster.local/ns/shop/sa/reviews');
    assert.equal(v3?.enrollment.enrolled, true);
    // Its node is c2's n1, never the agent's n1.
    assert.equal(v3?.node, 'c2/n1');
    assert.equal(s.nodes.get('c2/n1')?.labels['topology.kubernetes.io/zone'], 'z2');
    // Only the own network's IPs are found by address: c2's 10.1.0.2 is c1's productpage here.
    assert.equal(s.workloadsByIp.get('10.1.0.2')?.key, 'shop/productpage');
    assert.equal(s.workloadsByIp.get('10.3.0.1')?.key, 'c3//Pod/shop/reviews-v2');
  });

  it('merges a global Service by hostname: every cluster\'s endpoints, the VIPs of its own network', () => {
    const s = mesh();
    const reviews = s.services.get(REVIEWS);
    assert.deepEqual(reviews?.endpoints.map((e) => e.workload).sort(), ['c2//Pod/shop/reviews-v3', 'c3//Pod/shop/reviews-v2', 'shop/reviews-v1']);
    assert.deepEqual(reviews?.vips, ['10.96.0.1', '10.97.0.1']);
    assert.equal(s.servicesByVip.get('10.97.0.1')?.key, REVIEWS);
    assert.equal(s.servicesByHostname.get('reviews.shop.svc.cluster.local'), reviews);
    // The own cluster's Service is the base: its source, its labels.
    assert.equal(reviews?.source.file, 'c1.yaml');
  });

  it('shares only global Services: a local-only Service keeps its cluster\'s endpoints, a remote local one is not read', () => {
    const s = mesh();
    // productpage is local in c1 (though c2 marks its copy global): c2's pod is no endpoint of it.
    assert.deepEqual(s.services.get('shop/productpage.shop.svc.cluster.local')?.endpoints.map((e) => e.workload), ['shop/productpage']);
    // details exists only in c3, unlabelled: not in the mesh here.
    assert.equal(s.services.get('shop/details.shop.svc.cluster.local'), undefined);
    assert.equal(s.servicesByVip.get('10.97.0.2'), undefined);
  });

  it('takes configuration from the own cluster only, and says so for a remote cluster\'s', () => {
    const s = mesh();
    assert.equal(s.istio.authorizationPolicies.length, 0);
    assert.ok(s.diagnostics.some((d) => d.severity === 'warning' && d.object?.kind === 'AuthorizationPolicy' && /cluster c2 is a remote cluster/.test(d.message)), s.diagnostics.map(formatDiagnostic).join('\n'));
  });

  it('warns when a remote copy\'s ports differ, and when another network has no east-west gateway', () => {
    const own = parse(`${systemNamespace('n1')}${shop}${pod('reviews-v1', 'n1', '10.1.0.1')}${service('reviews', '10.96.0.1')}`, 'c1.yaml');
    const far = parse(`${systemNamespace('n9')}${shop}${pod('reviews-v9', 'x', '10.9.0.1')}${service('reviews', '10.99.0.1', { targetPort: 8080 })}`, 'c9.yaml');
    const s = buildSnapshot(own, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local', cluster: { id: 'c1' }, remoteClusters: [{ id: 'c9', objects: far }] });
    const messages = s.diagnostics.map(formatDiagnostic).join('\n');
    assert.match(messages, /cluster c9: its ports \(9080→8080\) differ from shop\/reviews\.shop\.svc\.cluster\.local's \(9080→9080\)/);
    assert.match(messages, /cluster c9: network "n9" has no east-west gateway/);
    const far9 = s.workloads.get('c9//Pod/shop/reviews-v9');
    assert.equal(far9?.networkGateway, undefined);
    assert.equal(clusterTier(s, far9), ClusterTier.Unreachable);
  });

  it('takes an east-west gateway\'s reported status.addresses before its spec.addresses, and a Hostname as a namespaced hostname', () => {
    const own = parse(`${systemNamespace('n1')}${shop}`, 'c1.yaml');
    const gateway = (network: string, spec: string, status: string) => `---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ew-${network}, namespace: istio-system, labels: {topology.istio.io/network: ${network}}}
spec: {gatewayClassName: istio-east-west, addresses: [${spec}], listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
status: {addresses: [${status}], conditions: []}
`;
    const far = parse(
      `${systemNamespace('n2')}${shop}${pod('a', 'x', '10.2.0.1')}${gateway('n2', '{type: IPAddress, value: 192.0.2.9}', '{type: IPAddress, value: 203.0.113.7}')}${gateway('n3', '{type: IPAddress, value: 192.0.2.10}', '{type: Hostname, value: ew.example.com}')}---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: shop, labels: {topology.istio.io/network: n3}}
spec: {nodeName: x, containers: [{name: c}]}
status: {podIP: 10.3.0.1}
`,
      'c2.yaml',
    );
    const s = buildSnapshot(own, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local', cluster: { id: 'c1' }, remoteClusters: [{ id: 'c2', objects: far }] });
    assert.deepEqual(s.workloads.get('c2//Pod/shop/a')?.networkGateway?.destination, { address: '203.0.113.7' });
    // A pod's own network label wins over its cluster's.
    assert.equal(s.workloads.get('c2//Pod/shop/b')?.network, 'n3');
    assert.deepEqual(s.workloads.get('c2//Pod/shop/b')?.networkGateway?.destination, { namespace: 'istio-system', hostname: 'ew.example.com' });
  });

  it('MeshConfig\'s serviceScopeConfigs decide which Services are shared, in place of the ambient profile\'s label', () => {
    const meshConfig = `---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    serviceScopeConfigs:
    - namespaceSelector: {matchLabels: {share: all}}
      scope: GLOBAL
    - servicesSelector: {matchExpressions: [{key: tier, operator: In, values: [front]}]}
      scope: LOCAL
`;
    const sharedNs = (name: string) => `---
apiVersion: v1
kind: Namespace
metadata: {name: ${name}, labels: {share: all}}
`;
    const svc = (ns: string, name: string, labels: string) => `---
apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: ${ns}, labels: {${labels}}}
spec: {clusterIP: None, selector: {app: ${name}}, ports: [{port: 80}]}
`;
    const own = parse(`${systemNamespace('n1')}${meshConfig}`, 'c1.yaml');
    const far = parse(`${systemNamespace('n1')}${sharedNs('open')}${shop}${svc('open', 'unlabelled', 'tier: back')}${svc('shop', 'labelled', 'istio.io/global: "true"')}`, 'c2.yaml');
    const s = buildSnapshot(own, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local', cluster: { id: 'c1' }, remoteClusters: [{ id: 'c2', objects: far }] });
    assert.deepEqual(s.istio.meshConfig.serviceScopeConfigs?.map((c) => c.scope), ['GLOBAL', 'LOCAL']);
    // Its namespace matches a GLOBAL entry: shared without any label of its own.
    assert.ok(s.services.has('open/unlabelled.open.svc.cluster.local'));
    // With serviceScopeConfigs set, the ambient profile's istio.io/global rule no longer applies.
    assert.equal(s.services.get('shop/labelled.shop.svc.cluster.local'), undefined);
  });

  it('--network names the own network over the istio-system label', () => {
    const own = parse(`${systemNamespace('n1')}${shop}${pod('reviews-v1', 'n1', '10.1.0.1')}`, 'c1.yaml');
    const s = buildSnapshot(own, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local', cluster: { id: 'c1', network: 'west' } });
    assert.equal(s.ownNetwork, 'west');
    assert.equal(s.workloads.get('shop/reviews-v1')?.network, 'west');
  });
});

describe('locality across clusters', () => {
  it('ranks the own cluster first, then the own network, then other networks through their gateway', () => {
    const s = mesh();
    const reviews = s.services.get(REVIEWS)!;
    const ranks = new Map(rankEndpoints(s, undefined, reviews.endpoints, 'n1').map((r) => [r.endpoint.workload, r.priority]));
    assert.deepEqual(Object.fromEntries(ranks), { 'shop/reviews-v1': 0, 'c3//Pod/shop/reviews-v2': 1, 'c2//Pod/shop/reviews-v3': 2 });
    // Under a Service policy the tiers still come first; the policy ranks within each.
    const close = rankEndpoints(s, { mode: 'failover', routingPreference: ['network', 'region', 'zone'] }, reviews.endpoints, 'n1');
    const byKey = Object.fromEntries(close.map((r) => [r.endpoint.workload, r.priority]));
    assert.ok(byKey['shop/reviews-v1']! < byKey['c3//Pod/shop/reviews-v2']! && byKey['c3//Pod/shop/reviews-v2']! < byKey['c2//Pod/shop/reviews-v3']!, JSON.stringify(byKey));
    // Strict node-local never leaves the node, even to a remote node of the same name.
    const strict = rankEndpoints(s, { mode: 'strict', routingPreference: ['node'] }, reviews.endpoints, 'n1');
    assert.deepEqual(strict.map((r) => r.endpoint.workload), ['shop/reviews-v1']);
  });

  it('an L4 client stays in its cluster, and reaches a remote one only when no closer endpoint is ready', () => {
    assert.deepEqual(reached(mesh()), ['c1:reviews-v1']);
    assert.deepEqual(reached(mesh({ ownReady: false })), ['c3:reviews-v2']);
    assert.deepEqual(reached(mesh({ ownReady: false, flatReady: false })), ['c2:reviews-v3']);
  });

  it('an L7 cluster fails over to another cluster when the own cluster\'s endpoints are ejected', () => {
    const down = new Set<string>();
    const clusters = new UpstreamClusters({ clock: systemClock, node: 'n1', isHealthy: (key) => !down.has(key) });
    const resolved = clusters.resolve(mesh(), { host: 'reviews.shop.svc.cluster.local', port: 9080 }, { namespace: 'shop', labels: {} });
    assert.ok(resolved.ok);
    const set = () => resolved.cluster.balancingSet().endpoints.map((e) => e.workload).sort();
    assert.deepEqual(set(), ['shop/reviews-v1']);
    down.add('10.1.0.1:9080');
    assert.deepEqual(set(), ['c3//Pod/shop/reviews-v2']);
    clusters.close();
  });
});

describe('local mode with --remote-config', () => {
  it('reads each cluster\'s YAML set into one snapshot, and reloads a remote set when it changes', { timeout: 10_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ambit-multicluster-'));
    const c1 = join(dir, 'c1.yaml');
    const c2 = join(dir, 'c2');
    await writeFile(c1, `${systemNamespace('n1')}${shop}${pod('reviews-v1', 'n1', '10.1.0.1')}${service('reviews', '10.96.0.1')}`);
    await mkdir(c2);
    await writeFile(join(c2, 'mesh.yaml'), `${systemNamespace('n2')}${shop}${pod('reviews-v3', 'a', '10.2.0.3')}${service('reviews', '10.97.0.1')}${eastWestGateway('n2', '192.0.2.2')}`);
    const store = new WorkloadStore();
    const source = new LocalFileSource({ paths: [c1], trustDomain: 'cluster.local', clusterDomain: 'cluster.local', cluster: { id: 'c1' }, remotes: [{ cluster: 'c2', paths: [c2] }], debounceMs: 20 }, store, pino({ level: 'silent' }));
    try {
      const first = await source.load();
      assert.equal(first.errors, 0);
      const endpoints = (s: MeshSnapshot | undefined) => (s?.services.get(REVIEWS)?.endpoints ?? []).map((e) => e.workload).sort();
      assert.deepEqual(endpoints(first.snapshot), ['c2//Pod/shop/reviews-v3', 'shop/reviews-v1']);
      assert.deepEqual(first.snapshot.workloads.get('c2//Pod/shop/reviews-v3')?.networkGateway, { destination: { address: '192.0.2.2' }, hboneMtlsPort: 15008, identity: 'spiffe://cluster.local/ns/istio-system/sa/istio-eastwestgateway' });
      await source.watch();
      const reloaded = waitForSnapshot(store, (s) => endpoints(s).length === 3, "c2's second pod as an endpoint");
      await writeFile(join(c2, 'more.yaml'), pod('reviews-v4', 'a', '10.2.0.4'));
      assert.deepEqual(endpoints(await reloaded), ['c2//Pod/shop/reviews-v3', 'c2//Pod/shop/reviews-v4', 'shop/reviews-v1']);
    } finally {
      source.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('config_dump and ambit zc', () => {
  it('show each workload\'s cluster, network and network gateway as ztunnel and istioctl do', () => {
    const dump = buildConfigDump(mesh(), 'n1');
    const byName = new Map(dump.workloads.map((w) => [`${w.clusterId}/${w.name}`, w]));
    const v3 = byName.get('c2/reviews-v3');
    assert.equal(v3?.uid, 'c2//Pod/shop/reviews-v3');
    assert.equal(v3?.network, 'n2');
    assert.deepEqual(v3?.networkGateway, { destination: 'n2/192.0.2.2', hboneMtlsPort: 15008 });
    assert.equal(byName.get('c1/reviews-v1')?.uid, 'c1//Pod/shop/reviews-v1');
    assert.equal(byName.get('c1/reviews-v1')?.networkGateway, undefined);
    // A local-only Service lists only its own cluster's pods; a global one every cluster's.
    const endpointsOf = (name: string) => Object.keys(dump.services.find((s) => s.name === name)?.endpoints ?? {}).sort();
    assert.deepEqual(endpointsOf('productpage'), ['c1//Pod/shop/productpage']);
    assert.deepEqual(endpointsOf('reviews'), ['c1//Pod/shop/reviews-v1', 'c2//Pod/shop/reviews-v3', 'c3//Pod/shop/reviews-v2']);
    const json = JSON.parse(zcOutput('workloads', 'json', JSON.stringify(dump))) as { name: string; network?: string; networkGateway?: { destination: string } }[];
    const v3json = json.find((w) => w.name === 'reviews-v3');
    assert.deepEqual([v3json?.network, v3json?.networkGateway], ['n2', { destination: 'n2/192.0.2.2' }]);
    const wide = workloads(dump, { wide: true });
    assert.deepEqual(wide[0]?.slice(-2), ['CLUSTER', 'NETWORK']);
    assert.deepEqual(wide.find((r) => r[1] === 'reviews-v3')?.slice(-2), ['c2', 'n2']);
    assert.equal(workloads(dump)[0]?.length, 6);
  });
});

describe('ambit explain', () => {
  it('names each endpoint\'s cluster and tier, and why another cluster\'s pod serves no local-only Service', () => {
    // TCP ports, so that explain walks the L4 resolver (an HTTP port's L7 cluster lists its ranks itself).
    const own = parse(
      `${systemNamespace('n1')}${shop}${pod('reviews-v1', 'n1', '10.1.0.1')}${pod('productpage', 'n1', '10.1.0.2', { app: 'productpage' })}` +
        `${service('reviews', '10.96.0.1', { portName: 'tcp' })}${service('productpage', '10.96.0.2', { global: false, portName: 'tcp' })}`,
      'c1.yaml',
    );
    const far = parse(
      `${systemNamespace('n2')}${shop}${pod('reviews-v3', 'n1', '10.2.0.3')}${pod('productpage', 'n1', '10.2.0.9', { app: 'productpage' })}` +
        `${service('reviews', '10.97.0.1', { portName: 'tcp' })}${service('productpage', '10.97.0.2', { portName: 'tcp' })}${eastWestGateway('n2', '192.0.2.2')}`,
      'c2.yaml',
    );
    const s = buildSnapshot(own, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local', cluster: { id: 'c1' }, remoteClusters: [{ id: 'c2', objects: far }] });
    const destination = (source: string, to: string): readonly string[] => {
      const answer = explainPath(s, 'n1', { source, destination: to });
      assert.ok(answer.ok, answer.ok ? '' : answer.error);
      return answer.value.explanation.steps.find((step) => step.step === 'destination')?.details ?? [];
    };
    const details = destination('shop/productpage', 'reviews.shop:9080');
    const line = (key: string) => details.find((d) => d.startsWith(`endpoint ${key} `)) ?? `(no line for ${key} in ${JSON.stringify(details)})`;
    assert.match(line('shop/reviews-v1'), /on node n1, locality rank 0$/);
    assert.match(line('c2//Pod/shop/reviews-v3'), /on node c2\/n1 in cluster c2 \(network n2, through its east-west gateway\), locality rank 2$/);
    const local = destination('shop/reviews-v1', 'productpage.shop:9080');
    assert.ok(local.includes('not an endpoint: c2//Pod/shop/productpage (in cluster c2, and the Service is not shared across clusters (not global))'), JSON.stringify(local));
  });
});

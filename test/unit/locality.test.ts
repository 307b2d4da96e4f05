// Locality-aware endpoint choice, as ztunnel applies a Service's load_balancing: Kubernetes'
// internalTrafficPolicy: Local (only endpoints on the client's node) and trafficDistribution:
// PreferClose (same zone first, the rest when none), read from YAML, for L4 connections
// (resolveOutbound) and for L7 clusters (failing over when the preferred endpoints are ejected).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatDiagnostic } from '../../agent/config/diagnostics.js';
import { parseConfigFile } from '../../agent/config/parse-file.js';
import { systemClock } from '../../agent/l7/clock.js';
import { UpstreamClusters } from '../../agent/l7/upstream-cluster.js';
import { buildSnapshot } from '../../agent/state/build.js';
import type { MeshSnapshot } from '../../agent/state/model.js';
import { resolveOutbound } from '../../agent/tunnel/destination.js';

/** Three nodes: a and b in zone z1, c in zone z2; one pod of `app: web` on each. */
function meshWith(serviceSpec: string, annotations = '', extraYaml = ''): MeshSnapshot {
  const node = (name: string, ip: string, zone: string) => `---
apiVersion: v1
kind: Node
metadata: {name: ${name}, labels: {topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: ${zone}}}
status: {addresses: [{type: InternalIP, address: ${ip}}]}
`;
  const pod = (name: string, nodeName: string, ip: string) => `---
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: shop, labels: {app: web}}
spec: {nodeName: ${nodeName}, containers: [{name: c, ports: [{containerPort: 8080}]}]}
status: {podIP: ${ip}}
`;
  const parsed = parseConfigFile(
    `${node('a', '172.31.0.1', 'z1')}${node('b', '172.31.0.2', 'z1')}${node('c', '172.31.0.3', 'z2')}${pod('web-a', 'a', '10.1.1.10')}${pod('web-b', 'b', '10.1.2.10')}${pod('web-c', 'c', '10.1.3.10')}---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop${annotations}}
spec: {clusterIP: 10.96.0.80, selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]${serviceSpec}}
${extraYaml}`,
    'locality.yaml',
  );
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic), []);
  return buildSnapshot(parsed.objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
}

/** Which pods a client on `node` reaches over many L4 connections to the Service. */
function l4Reached(snapshot: MeshSnapshot, node: string): string[] {
  const seen = new Set<string>();
  for (let i = 0; i < 3; i++) {
    const target = resolveOutbound(snapshot, { ip: '10.96.0.80', port: 80 }, node, (n) => i % n);
    seen.add(target.kind === 'workload' ? target.workload.name : target.kind === 'refused' ? `refused: ${target.reason}` : 'passthrough');
  }
  return [...seen].sort();
}

describe('locality-aware endpoints', () => {
  it('reads internalTrafficPolicy and trafficDistribution (or Istio\'s annotation) into the Service\'s policy', () => {
    assert.equal(meshWith('').services.get('shop/web.shop.svc.cluster.local')?.loadBalancing, undefined);
    assert.deepEqual(meshWith(', internalTrafficPolicy: Local').services.get('shop/web.shop.svc.cluster.local')?.loadBalancing, { mode: 'strict', routingPreference: ['node'] });
    const close = { mode: 'failover', routingPreference: ['network', 'region', 'zone', 'subzone'] };
    assert.deepEqual(meshWith(', trafficDistribution: PreferClose').services.get('shop/web.shop.svc.cluster.local')?.loadBalancing, close);
    assert.deepEqual(meshWith('', ', annotations: {networking.istio.io/traffic-distribution: PreferClose}').services.get('shop/web.shop.svc.cluster.local')?.loadBalancing, close);
    assert.deepEqual(meshWith(', trafficDistribution: PreferSameNode').services.get('shop/web.shop.svc.cluster.local')?.loadBalancing?.routingPreference, ['node', 'network', 'region', 'zone', 'subzone']);
    // Local wins over a distribution, as in Kubernetes.
    assert.equal(meshWith(', internalTrafficPolicy: Local, trafficDistribution: PreferClose').services.get('shop/web.shop.svc.cluster.local')?.loadBalancing?.mode, 'strict');
  });

  it('internalTrafficPolicy: Local keeps an L4 client on its own node\'s endpoint, and refuses it where there is none', () => {
    const snapshot = meshWith(', internalTrafficPolicy: Local');
    assert.deepEqual(l4Reached(snapshot, 'a'), ['web-a']);
    assert.deepEqual(l4Reached(snapshot, 'c'), ['web-c']);
    assert.deepEqual(l4Reached(snapshot, 'd'), ['refused: service web.shop.svc.cluster.local has no ready endpoint on node d for port 80 (internalTrafficPolicy: Local)']);
    // Without a policy every endpoint serves.
    assert.deepEqual(l4Reached(meshWith(''), 'a'), ['web-a', 'web-b', 'web-c']);
  });

  it('trafficDistribution: PreferClose keeps an L4 client in its zone, and fails over when the zone has no endpoint', () => {
    const snapshot = meshWith(', trafficDistribution: PreferClose');
    assert.deepEqual(l4Reached(snapshot, 'a'), ['web-a', 'web-b']);
    assert.deepEqual(l4Reached(snapshot, 'c'), ['web-c']);
    // Zone z2 loses its pod: its clients go to z1 rather than nowhere.
    const withoutC = meshWith(', trafficDistribution: PreferClose');
    const pruned: MeshSnapshot = { ...withoutC, services: new Map([...withoutC.services].map(([k, s]) => [k, { ...s, endpoints: s.endpoints.filter((e) => e.workload !== 'shop/web-c') }])) };
    const servicesByVip = new Map([...pruned.services.values()].flatMap((s) => s.vips.map((v) => [v, s] as const)));
    assert.deepEqual(l4Reached({ ...pruned, servicesByVip }, 'c'), ['web-a', 'web-b']);
  });

  it('an L7 cluster prefers the zone\'s endpoints and fails over when they are all ejected', () => {
    const snapshot = meshWith(', trafficDistribution: PreferClose');
    const down = new Set<string>();
    const clusters = new UpstreamClusters({ clock: systemClock, node: 'a', isHealthy: (key) => !down.has(key) });
    const resolved = clusters.resolve(snapshot, { host: 'web.shop.svc.cluster.local', port: 80 }, { namespace: 'shop', labels: {} });
    assert.ok(resolved.ok);
    const set = () => resolved.cluster.balancingSet().endpoints.map((e) => e.ip).sort();
    assert.deepEqual(set(), ['10.1.1.10', '10.1.2.10']);
    down.add('10.1.1.10:8080');
    // One of two in the zone is down: Envoy's panic threshold (50 %) is not crossed, the other serves.
    assert.deepEqual(set(), ['10.1.2.10']);
    down.add('10.1.2.10:8080');
    assert.deepEqual(set(), ['10.1.3.10']);
    clusters.close();
  });

  it('a DestinationRule with outlierDetection turns on Istio\'s locality failover for its L7 clusters, unless localityLbSetting says not', () => {
    const rule = (locality: string) => `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: shop}
spec:
  host: web
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}
${locality}`;
    const zoneOf = (snapshot: MeshSnapshot): string[] => {
      const clusters = new UpstreamClusters({ clock: systemClock, node: 'a' });
      const resolved = clusters.resolve(snapshot, { host: 'web.shop.svc.cluster.local', port: 80 }, { namespace: 'shop', labels: {} });
      assert.ok(resolved.ok);
      const ips = resolved.cluster.balancingSet().endpoints.map((e) => e.ip).sort();
      clusters.close();
      return ips;
    };
    assert.deepEqual(zoneOf(meshWith('', '', rule(''))), ['10.1.1.10', '10.1.2.10']);
    assert.deepEqual(zoneOf(meshWith('', '', rule('    loadBalancer: {localityLbSetting: {enabled: false}}\n'))), ['10.1.1.10', '10.1.2.10', '10.1.3.10']);
    // No outlierDetection, no Service policy: every endpoint alike.
    assert.deepEqual(zoneOf(meshWith('')), ['10.1.1.10', '10.1.2.10', '10.1.3.10']);
  });
});

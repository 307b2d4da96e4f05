// A lab of several clusters, planned without a kernel: each cluster gets its own fabric and network,
// its east-west gateway an edge namespace at its Gateway's address, and what cannot be built as separate
// networks (one network twice, overlapping pod ranges, a gateway without an address) is refused.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GatewayObject } from '../../agent/config/gateway-api/types.js';
import type { MeshObject } from '../../agent/config/objects.js';
import { loadConfig } from '../../agent/config/load.js';
import { type LabClusterSource, agentConfigArgs, clusterView, eastWestGatewayPodYaml } from '../../agent/lab/clusters.js';
import { LabLayout } from '../../agent/lab/layout.js';
import { planLab } from '../../agent/lab/plan.js';
import { buildSnapshot } from '../../agent/state/build.js';
import { container, namespace, node, pod } from './helpers/mesh-objects.js';

const layout = new LabLayout('mc', '/sys/fs/cgroup');
const noHost = { prefixes: [], nameservers: [] };
const options = { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' };
const example = (file: string): string => fileURLToPath(new URL(`../../examples/multicluster/${file}`, import.meta.url));

async function source(cluster: string, file: string): Promise<LabClusterSource> {
  const config = await loadConfig([example(file)]);
  assert.deepEqual(config.diagnostics.filter((d) => d.severity === 'error'), []);
  return { cluster, configPaths: [example(file)], objects: config.objects, snapshot: buildSnapshot(config.objects, options) };
}

function eastWest(network: string | undefined, addresses: GatewayObject['spec']['addresses']): GatewayObject {
  return {
    kind: 'Gateway',
    apiVersion: 'gateway.networking.k8s.io/v1',
    metadata: { name: 'ew', namespace: 'istio-system', labels: network ? { 'topology.istio.io/network': network } : {}, annotations: {} },
    spec: { gatewayClassName: 'istio-east-west', addresses },
    source: { file: 'gw.yaml', line: 1 },
  };
}

function inMemory(cluster: string, objects: MeshObject[]): LabClusterSource {
  return { cluster, configPaths: [`${cluster}.yaml`], objects, snapshot: buildSnapshot(objects, options) };
}

test('the multicluster example plans two clusters, each with its own fabric, network and east-west gateway', async () => {
  const result = planLab(layout, [await source('cluster1', 'cluster1.yaml'), await source('cluster2', 'cluster2.yaml')], noHost);
  assert.ok(result.ok, JSON.stringify(result));
  const { clusters, nodes, pods } = result.plan;
  assert.deepEqual(
    clusters.map((c) => [c.id, c.network, c.fabricNetns, c.eastWest?.gateway, c.eastWest?.netns, c.eastWest?.address]),
    [
      ['cluster1', 'network1', 'ambit-mc-fabric-cluster1', 'istio-system/istio-eastwestgateway', 'ambit-mc-gw-cluster1', '172.31.200.1'],
      ['cluster2', 'network2', 'ambit-mc-fabric-cluster2', 'istio-system/istio-eastwestgateway', 'ambit-mc-gw-cluster2', '172.31.200.2'],
    ],
  );
  assert.deepEqual(nodes.map((n) => [n.name, n.cluster, n.fabricLink]), [['east-1', 'cluster1', 'fab0'], ['west-1', 'cluster2', 'fab1']]);
  // Each cluster's view holds only its own nodes and pods: what its kube-proxy rules and DNS serve.
  const second = clusterView(result.plan, clusters[1]!);
  assert.deepEqual(second.pods.map((p) => p.key).sort(), ['bookinfo/ratings-v1', 'bookinfo/reviews-v3']);
  // Its YAML, and the pod the lab writes for its east-west gateway, as Istio's deployment controller would.
  assert.deepEqual(second.configPaths, [example('cluster2.yaml'), '/run/ambit/lab/mc/gateways/cluster2/east-west-gateway.yaml']);
  // That pod, read as the gateway and the agents read it: the gateway's identity, at its edge's fabric address.
  const podFile = join(mkdtempSync(join(tmpdir(), 'lab-clusters-')), 'east-west-gateway.yaml');
  writeFileSync(podFile, eastWestGatewayPodYaml('cluster2', clusters[1]!.eastWest!));
  const withPod = await loadConfig([example('cluster2.yaml'), podFile]);
  assert.deepEqual(withPod.diagnostics, []);
  const gateway = buildSnapshot(withPod.objects, options).workloads.get('istio-system/istio-eastwestgateway');
  assert.equal(gateway?.identity, 'spiffe://cluster.local/ns/istio-system/sa/istio-eastwestgateway');
  assert.deepEqual(gateway?.ips, ['169.254.101.2']);
  rmSync(dirname(podFile), { recursive: true });
  assert.equal(pods.length, 5);
  // Every lab namespace of the plan is one `down` finds as the lab's own.
  for (const netns of [...clusters.flatMap((c) => [c.fabricNetns, c.eastWest!.netns]), layout.internetworkNetns]) assert.ok(layout.ownsNetns(netns, ['mc']), netns);
});

test('a lab of one cluster keeps its one fabric, with no network and no gateway', () => {
  const objects = [node('a', '172.31.0.1', '10.9.1.0/24'), eastWest('n1', [{ type: 'IPAddress', value: '172.31.200.1' }])];
  const result = planLab(layout, [{ configPaths: ['/m.yaml'], objects, snapshot: buildSnapshot(objects, options) }], noHost);
  assert.ok(result.ok, JSON.stringify(result));
  assert.deepEqual(result.plan.clusters, [{ configPaths: ['/m.yaml'], fabricNetns: 'ambit-mc-fabric' }]);
  assert.equal(result.plan.nodes[0]!.cluster, undefined);
});

test('clusters that cannot be separate networks are refused before anything is built', () => {
  const web = (name: string, nodeName: string, ip: string) => pod('shop', name, { ip, node: nodeName, containers: [container('main', ['sleep', 'infinity'])] });
  const result = planLab(
    layout,
    [
      inMemory('one', [namespace('istio-system', { 'topology.istio.io/network': 'n1' }), node('a', '172.31.1.1', '10.9.0.0/16'), web('w', 'a', '10.9.1.5'), eastWest('n2', [])]),
      inMemory('two', [namespace('istio-system', { 'topology.istio.io/network': 'n1' }), node('b', '172.31.2.1', '10.9.2.0/24'), web('w', 'b', '10.9.2.5')]),
      inMemory('three', [node('c', '172.31.3.1', '10.11.0.0/24'), eastWest(undefined, [{ type: 'IPAddress', value: '172.31.3.1' }])]),
    ],
    noHost,
  );
  assert.equal(result.ok, false);
  const problems = result.ok ? [] : result.problems;
  assert.deepEqual(problems, [
    'gw.yaml:1: Gateway istio-system/ew: metadata.labels: topology.istio.io/network is "n2"; the gateway of cluster one serves its network n1',
    'gw.yaml:1: Gateway istio-system/ew: spec.addresses: the lab needs the IPv4 address other networks reach the gateway at ({ type: IPAddress, value: <address> })',
    'cluster two: network n1 is also cluster one\'s; the lab builds one network per cluster, so give each its own topology.istio.io/network',
    'cluster three: no network: label its istio-system Namespace with topology.istio.io/network: <network> (as Istio\'s multi-network install does), in three.yaml',
    'Pod shop/w is in clusters one and two; pod names must be unique across the lab (lab exec names pods by namespace/name)',
    'Node a\'s podCIDR 10.9.0.0/16 (cluster one) overlaps Node b\'s 10.9.2.0/24 (cluster two); the clusters\' pod ranges must not overlap',
  ]);
});

test("each agent of a lab of several clusters reads its own cluster's YAML, ID and network, and the others' YAML as remote clusters'", async () => {
  const result = planLab(layout, [await source('cluster1', 'cluster1.yaml'), await source('cluster2', 'cluster2.yaml')], noHost);
  assert.ok(result.ok, JSON.stringify(result));
  assert.deepEqual(agentConfigArgs(result.plan, 'cluster2'), [
    '--cluster-id',
    'cluster2',
    '--network',
    'network2',
    '--config',
    example('cluster2.yaml'),
    '--config',
    '/run/ambit/lab/mc/gateways/cluster2/east-west-gateway.yaml',
    '--remote-config',
    `cluster1=${example('cluster1.yaml')}`,
    '--remote-config',
    'cluster1=/run/ambit/lab/mc/gateways/cluster1/east-west-gateway.yaml',
  ]);
  // A lab of one cluster: its YAML alone, as before.
  const objects = [node('a', '172.31.0.1', '10.9.1.0/24')];
  const single = planLab(layout, [{ configPaths: ['/m.yaml'], objects, snapshot: buildSnapshot(objects, options) }], noHost);
  assert.ok(single.ok);
  assert.deepEqual(agentConfigArgs(single.plan, undefined), ['--config', '/m.yaml']);
});

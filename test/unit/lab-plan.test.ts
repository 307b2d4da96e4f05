// The lab's planning and rendering, without a kernel: address checks against the host, the problems
// reported for pods the lab cannot run, the kube-proxy rules and the pods' hosts files.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderPodHosts } from '../../agent/lab/hosts.js';
import { parseIpv4Prefix, prefixesOverlap } from '../../agent/system/ipv4.js';
import { renderKubeProxyRules } from '../../agent/lab/kube-proxy.js';
import { LabLayout, podHostLink } from '../../agent/lab/layout.js';
import { planLab } from '../../agent/lab/plan.js';
import { buildSnapshot } from '../../agent/state/build.js';
import { container, node, pod, service } from './helpers/mesh-objects.js';

const layout = new LabLayout('t', '/sys/fs/cgroup/unified');
const noHost = { prefixes: [], nameservers: [] };
const options = { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' };
const web = (name: string, nodeName: string, ip: string) =>
  pod('shop', name, { ip, node: nodeName, labels: { app: 'web' }, containers: [container('main', ['node', 'web.mjs'], [{ name: 'http', containerPort: 8080 }])] });

test('a valid mesh plans one namespace per node and pod, with cgroups and logs under the lab', () => {
  const objects = [node('a', '172.31.0.1', '10.9.1.0/24'), node('b', '172.31.0.2', '10.9.2.0/24'), web('w1', 'a', '10.9.1.5'), web('w2', 'b', '10.9.2.5')];
  const result = planLab(layout, [{ configPaths: ['/m.yaml'], objects, snapshot: buildSnapshot(objects, options) }], noHost);
  assert.ok(result.ok, JSON.stringify(result));
  const { nodes, pods } = result.plan;
  assert.deepEqual(
    nodes.map((n) => [n.name, n.netns, n.ip, n.fabricLink]),
    [
      ['a', 'ambit-t-n-a', '172.31.0.1', 'fab0'],
      ['b', 'ambit-t-n-b', '172.31.0.2', 'fab1'],
    ],
  );
  assert.equal(pods[1]?.netns, 'ambit-t-p-shop.w2');
  assert.equal(pods[1]?.cgroup, '/sys/fs/cgroup/unified/ambit/t/pods/shop.w2');
  assert.equal(pods[1]?.hostLink, podHostLink('shop', 'w2'));
  assert.ok(pods[1]!.hostLink.length <= 15);
  assert.deepEqual(pods[0]?.containers[0]?.argv, ['node', 'web.mjs']);
  // Commands run in the directory of the YAML file that defines the pod (here the relative test.yaml).
  assert.equal(pods[0]?.containers[0]?.cwd, '.');
});

test('pods the lab cannot run, and addresses that touch the machine, are refused before anything is built', () => {
  const objects = [
    node('a', '192.0.2.7', '10.9.1.0/24'),
    pod('shop', 'no-ip', { node: 'a' }),
    pod('shop', 'no-node', { ip: '10.9.1.6' }),
    pod('shop', 'elsewhere', { ip: '10.9.3.1', node: 'a' }),
    pod('shop', 'ghost-node', { ip: '10.9.1.7', node: 'zz' }),
    pod('shop', 'no-command', { ip: '10.9.1.8', node: 'a', containers: [container('c', [])] }),
    { ...pod('shop', 'host', { ip: '192.0.2.7', node: 'a' }), spec: { nodeName: 'a', hostNetwork: true as const, containers: [container('c', ['x'])] } },
  ];
  const host = { prefixes: [parseIpv4Prefix('192.0.2.0/24')!], nameservers: ['10.9.1.53'] };
  const result = planLab(layout, [{ configPaths: [], objects, snapshot: buildSnapshot(objects, options) }], host);
  assert.equal(result.ok, false);
  const problems = result.ok ? [] : result.problems.map((p) => p.replace(/^test\.yaml:\d+: /, ''));
  assert.deepEqual(problems, [
    'Pod shop/no-ip: status.podIP: the lab needs the pod\'s IP (in a cluster the kubelet sets it; here you do)',
    'Pod shop/no-node: spec.nodeName: the lab needs to know which node runs the pod',
    'Pod shop/elsewhere: status.podIP: 10.9.3.1 is outside node a\'s podCIDR 10.9.1.0/24',
    'Pod shop/ghost-node: spec.nodeName: node "zz" is not defined (define a Node object with that name)',
    'Pod shop/no-command: container c: command: the lab runs no images, so each container needs a command (and args)',
    'Pod shop/host: spec.hostNetwork: the lab gives every pod a network namespace of its own and cannot run it on its node\'s; remove hostNetwork (agents never capture hostNetwork pods anyway)',
    'Node a InternalIP 192.0.2.7/32 overlaps this machine\'s network 192.0.2.0/24; choose lab addresses the machine does not use',
    'Node a podCIDR 10.9.1.0/24 contains this machine\'s DNS resolver 10.9.1.53; choose a narrower range',
  ]);
});

test('prefix overlap is symmetric and exact at the boundary', () => {
  const p = (c: string) => parseIpv4Prefix(c)!;
  assert.equal(prefixesOverlap(p('10.0.0.0/8'), p('10.255.255.53/32')), true);
  assert.equal(prefixesOverlap(p('10.255.255.53/32'), p('10.0.0.0/8')), true);
  assert.equal(prefixesOverlap(p('10.244.0.0/16'), p('10.245.0.0/16')), false);
  assert.equal(prefixesOverlap(p('172.31.77.0/24'), p('172.31.77.255/32')), true);
  assert.equal(parseIpv4Prefix('10.1.2.3/33'), undefined);
});

test('kube-proxy rules DNAT each Service port to its ready endpoints and masquerade hairpins', () => {
  const objects = [
    web('w1', 'a', '10.9.1.5'),
    web('w2', 'b', '10.9.2.5'),
    pod('shop', 'solo', { ip: '10.9.1.9', labels: { app: 'solo' } }),
    service('shop', 'web', '10.96.0.10', { app: 'web' }, [{ name: 'http', port: 80, targetPort: 'http' }]),
    service('shop', 'solo', '10.96.0.11', { app: 'solo' }, [{ name: 'tcp', port: 5000, targetPort: 5001 }]),
    service('shop', 'empty', '10.96.0.12', { app: 'none' }, [{ port: 80 }]),
  ];
  const rules = renderKubeProxyRules(buildSnapshot(objects, options));
  assert.match(rules, /ip daddr 10\.96\.0\.10 tcp dport 80 dnat ip addr \. port to numgen random mod 2 map \{ 0 : 10\.9\.1\.5 \. 8080, 1 : 10\.9\.2\.5 \. 8080 \}/);
  assert.match(rules, /ip daddr 10\.96\.0\.11 tcp dport 5000 dnat ip to 10\.9\.1\.9:5001/);
  assert.doesNotMatch(rules, /10\.96\.0\.12/);
  assert.match(rules, /ct status dnat ip saddr \. ip daddr \{ 10\.9\.1\.5 \. 10\.9\.1\.5, 10\.9\.2\.5 \. 10\.9\.2\.5, 10\.9\.1\.9 \. 10\.9\.1\.9 \} masquerade/);
  assert.match(rules, /^table ip ambit_kube_proxy \{\}\ndelete table ip ambit_kube_proxy\n/);
});

test("a pod's hosts file holds localhost and the pod's own name, as the kubelet writes it: Services are the cluster DNS's", () => {
  const hosts = renderPodHosts({ name: 'client', ip: '10.9.1.4' });
  assert.match(hosts, /^10\.9\.1\.4\tclient$/m);
  assert.match(hosts, /^127\.0\.0\.1\tlocalhost$/m);
  assert.equal(hosts.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length, 3);
});

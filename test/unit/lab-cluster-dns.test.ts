// The lab's cluster DNS (its kube-dns) without a kernel: what it answers for the lab's Services and pods, that it
// knows no ServiceEntry host (only the mesh's DNS proxy answers those), and the resolv.conf each pod gets.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfigFile } from '../../agent/config/parse-file.js';
import { CLASS_IN, RCODE_NOERROR, RCODE_NXDOMAIN, TYPE_A, TYPE_AAAA } from '../../agent/dns/wire.js';
import { LAB_CLUSTER_DNS, clusterDnsAnswer, podResolvConf } from '../../agent/lab/cluster-dns.js';
import { buildSnapshot } from '../../agent/state/build.js';

const YAML = `---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: shop, labels: {app: db}}
spec: {nodeName: a, containers: [{name: c}]}
status: {podIP: 10.9.1.7}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec: {clusterIP: None, selector: {app: db}, ports: [{name: sql, port: 5432}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments, namespace: shop}
spec:
  hosts: [api.payments.example]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 192.0.2.10}]
`;

const snapshot = buildSnapshot(parseConfigFile(YAML, 'dns.yaml').objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
const ask = (name: string, type = TYPE_A): { rcode: number; addresses: string[] } => {
  const answer = clusterDnsAnswer(snapshot, { name, type, class: CLASS_IN });
  return { rcode: answer.rcode, addresses: answer.records.map((r) => [...r.address].join('.')) };
};

test("a Service's full name answers its ClusterIP; a headless Service's its ready endpoints", () => {
  assert.deepEqual(ask('web.shop.svc.cluster.local'), { rcode: RCODE_NOERROR, addresses: ['10.96.0.10'] });
  assert.deepEqual(ask('db.shop.svc.cluster.local'), { rcode: RCODE_NOERROR, addresses: ['10.9.1.7'] });
});

test("a pod's <a-b-c-d>.<namespace>.pod name answers its address, only in the pod's namespace", () => {
  assert.deepEqual(ask('10-9-1-7.shop.pod.cluster.local'), { rcode: RCODE_NOERROR, addresses: ['10.9.1.7'] });
  for (const name of ['10-9-1-7.bank.pod.cluster.local', '10-9-1-8.shop.pod.cluster.local', '10-9-1-7.pod.cluster.local', 'x.10-9-1-7.shop.pod.cluster.local']) {
    assert.deepEqual(ask(name), { rcode: RCODE_NXDOMAIN, addresses: [] }, name);
  }
});

test('a known name with no address of the asked family is NOERROR without records, as kube-dns answers AAAA in an IPv4 cluster', () => {
  assert.deepEqual(ask('web.shop.svc.cluster.local', TYPE_AAAA), { rcode: RCODE_NOERROR, addresses: [] });
});

test('a ServiceEntry host, a search-list expansion and any other name are NXDOMAIN: kube-dns knows only Services and pods', () => {
  assert.equal(snapshot.servicesByHostname.has('api.payments.example'), true, 'the mesh knows the host');
  for (const name of ['api.payments.example', 'web.svc.cluster.local', 'web', 'www.example.com']) assert.deepEqual(ask(name), { rcode: RCODE_NXDOMAIN, addresses: [] }, name);
});

test("a pod's resolv.conf names the cluster DNS with Kubernetes' search list and ndots:5", () => {
  const lines = podResolvConf('shop', 'cluster.local').split('\n');
  assert.ok(lines.includes('search shop.svc.cluster.local svc.cluster.local cluster.local'));
  assert.ok(lines.includes(`nameserver ${LAB_CLUSTER_DNS.ip}`));
  assert.ok(lines.includes('options ndots:5'));
});

// ServiceEntry and WorkloadEntry from YAML to the data path's decision: the services and workloads they
// become in the snapshot (automatic addresses included), and how planOutbound carries a pod's
// connection to them (plain TCP outside the mesh, HBONE to a WorkloadEntry with an identity, a name to
// resolve for resolution DNS).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatDiagnostic } from '../../agent/config/diagnostics.js';
import { parseConfigFile } from '../../agent/config/parse-file.js';
import { buildSnapshot } from '../../agent/state/build.js';
import type { MeshSnapshot } from '../../agent/state/model.js';
import { type OutboundPlan, type OutboundSource, type PlanContext, planOutbound, planResolved } from '../../agent/tunnel/outbound-plan.js';

const TD = 'cluster.local';
const CONTEXT: PlanContext = { node: 'a', clusterId: 'Kubernetes', l7: true, inboundHttp: true, pick: () => 0 };

const BASE = `---
apiVersion: v1
kind: Node
metadata: {name: a}
status: {addresses: [{type: InternalIP, address: 172.31.0.1}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {nodeName: a, serviceAccountName: client, containers: [{name: c}]}
status: {podIP: 10.1.1.1}
`;

function parse(extra: string): ReturnType<typeof parseConfigFile> {
  return parseConfigFile(`${BASE}${extra}`, 'entries.yaml');
}

function mesh(extra: string): MeshSnapshot {
  const parsed = parse(extra);
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic), []);
  return buildSnapshot(parsed.objects, { version: 1, trustDomain: TD, clusterDomain: 'cluster.local' });
}

function client(snapshot: MeshSnapshot): OutboundSource {
  const workload = snapshot.workloadsByIp.get('10.1.1.1');
  assert.ok(workload?.enrollment.enrolled);
  return { workload, ip: '10.1.1.1', port: 40000 };
}

function expect<T extends OutboundPlan['transport']>(plan: OutboundPlan, transport: T): Extract<OutboundPlan, { transport: T }> {
  assert.equal(plan.transport, transport, JSON.stringify(plan, (k, v) => (k === 'workload' || k === 'service' ? v?.key ?? v?.hostname : v)));
  return plan as Extract<OutboundPlan, { transport: T }>;
}

const EXTERNAL_STATIC = `---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments, namespace: shop}
spec:
  hosts: [api.payments.example]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 443, name: tls, protocol: TLS}, {number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 192.0.2.10}]
`;

describe('ServiceEntry in the snapshot and on the data path', () => {
  it('a MESH_EXTERNAL host without addresses gets an address of 240.240.0.0/16 (and 2001:2::/48); a connection to it goes plain to the endpoint, from the pod', () => {
    const snapshot = mesh(EXTERNAL_STATIC);
    const service = snapshot.servicesByHostname.get('api.payments.example');
    assert.ok(service, 'the host is a service');
    assert.equal(service.key, 'shop/api.payments.example');
    assert.equal(service.vips.length, 2);
    assert.match(service.vips[0]!, /^240\.240\.\d+\.\d+$/);
    assert.match(service.vips[1]!, /^2001:2::[0-9a-f]+$/);
    assert.equal(snapshot.servicesByVip.get(service.vips[0]!), service);
    const plan = expect(planOutbound(snapshot, client(snapshot), { ip: service.vips[0]!, port: 443 }, CONTEXT), 'plain');
    assert.deepEqual(plan.target, { ip: '192.0.2.10', port: 443 });
    assert.equal(plan.bindSource, '10.1.1.1');
    // An HTTP port of a resolved ServiceEntry goes through the L7 proxy, as a Service's http port does.
    const http = expect(planOutbound(snapshot, client(snapshot), { ip: service.vips[0]!, port: 80 }, CONTEXT), 'http');
    assert.equal(http.destination.kind, 'service');
    // The endpoint is no mesh workload: dialled by its own IP it is passthrough.
    assert.equal(snapshot.workloadsByIp.get('192.0.2.10'), undefined);
  });

  it('the automatic address depends on namespace, name and host only, never on the order of objects', () => {
    const other = EXTERNAL_STATIC.replace('name: payments', 'name: ledger').replace('api.payments.example', 'ledger.example').replace('192.0.2.10', '192.0.2.11');
    const one = mesh(`${EXTERNAL_STATIC}${other}`);
    const two = mesh(`${other}${EXTERNAL_STATIC}`);
    for (const host of ['api.payments.example', 'ledger.example']) assert.deepEqual(one.servicesByHostname.get(host)?.vips, two.servicesByHostname.get(host)?.vips);
    assert.notDeepEqual(one.servicesByHostname.get('api.payments.example')?.vips, one.servicesByHostname.get('ledger.example')?.vips);
  });

  it('no automatic address for resolution NONE, written addresses, or the opt-out label', () => {
    const optOut = EXTERNAL_STATIC.replace('namespace: shop}', 'namespace: shop, labels: {networking.istio.io/enable-autoallocate-ip: "false"}}');
    assert.deepEqual(mesh(optOut).servicesByHostname.get('api.payments.example')?.vips, []);
    const written = EXTERNAL_STATIC.replace('location: MESH_EXTERNAL', 'location: MESH_EXTERNAL\n  addresses: [198.51.100.7]');
    assert.deepEqual(mesh(written).servicesByHostname.get('api.payments.example')?.vips, ['198.51.100.7']);
  });

  it('resolution NONE: a connection to one of its addresses goes to the address dialled, as TCP even on an HTTP port', () => {
    const snapshot = mesh(`---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: legacy-db, namespace: shop}
spec:
  hosts: [db.legacy.example]
  addresses: [198.51.100.20]
  ports: [{number: 5432, name: tcp-pg}, {number: 8080, name: http, protocol: HTTP}]
  resolution: NONE
`);
    const plan = expect(planOutbound(snapshot, client(snapshot), { ip: '198.51.100.20', port: 5432 }, CONTEXT), 'plain');
    assert.deepEqual(plan.target, { ip: '198.51.100.20', port: 5432 });
    expect(planOutbound(snapshot, client(snapshot), { ip: '198.51.100.20', port: 8080 }, CONTEXT), 'plain');
    expect(planOutbound(snapshot, client(snapshot), { ip: '198.51.100.20', port: 9999 }, CONTEXT), 'refused');
  });

  it('resolution DNS: the host itself, or an endpoint written as a name, is planned as a name to resolve, then carried as to the address it resolves to', () => {
    const snapshot = mesh(`---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: search, namespace: shop}
spec: {hosts: [search.example], ports: [{number: 443, name: tls, protocol: TLS}], resolution: DNS}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vm, namespace: shop}
spec:
  hosts: [vm.internal.example]
  location: MESH_INTERNAL
  resolution: DNS
  ports: [{number: 8080, name: tcp, protocol: TCP, targetPort: 9080}]
  endpoints: [{address: vm-1.internal.example, serviceAccount: vm}]
`);
    const vip = snapshot.servicesByHostname.get('search.example')?.vips[0];
    assert.ok(vip);
    const external = expect(planOutbound(snapshot, client(snapshot), { ip: vip, port: 443 }, CONTEXT), 'dns');
    assert.deepEqual([external.hostname, external.port, external.workload, external.servicePort], ['search.example', 443, undefined, 443]);
    const plain = expect(planResolved(snapshot, client(snapshot), external, '192.0.2.30', CONTEXT), 'plain');
    assert.deepEqual(plain.target, { ip: '192.0.2.30', port: 443 });
    assert.equal(plain.bindSource, '10.1.1.1');
    const internalVip = snapshot.servicesByHostname.get('vm.internal.example')?.vips[0];
    assert.ok(internalVip);
    const internal = expect(planOutbound(snapshot, client(snapshot), { ip: internalVip, port: 8080 }, CONTEXT), 'dns');
    assert.deepEqual([internal.hostname, internal.port, internal.workload?.key], ['vm-1.internal.example', 9080, 'ServiceEntry/shop/vm/0']);
    const hbone = expect(planResolved(snapshot, client(snapshot), internal, '192.0.2.31', CONTEXT), 'hbone');
    assert.deepEqual(hbone.target, { ip: '192.0.2.31', port: 9080 });
    assert.deepEqual(hbone.request.expectedIdentities, ['spiffe://cluster.local/ns/shop/sa/vm']);
  });

  it('a MESH_INTERNAL ServiceEntry selecting a WorkloadEntry with a serviceAccount: HBONE to the VM as its identity, on the port the entry names', () => {
    const snapshot = mesh(`---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: shop}
spec: {address: 10.9.0.5, serviceAccount: billing-vm, labels: {app: billing}, ports: {tcp-api: 9443}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-2, namespace: shop}
spec: {address: 10.9.0.6, labels: {app: legacy}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: billing, namespace: shop}
spec:
  hosts: [billing.shop.mesh]
  addresses: [10.97.0.1]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9000, name: tcp-api, protocol: TCP}]
  workloadSelector: {labels: {app: billing}}
`);
    const plan = expect(planOutbound(snapshot, client(snapshot), { ip: '10.97.0.1', port: 9000 }, CONTEXT), 'hbone');
    assert.deepEqual(plan.target, { ip: '10.9.0.5', port: 9443 });
    assert.deepEqual(plan.request.expectedIdentities, [`spiffe://${TD}/ns/shop/sa/billing-vm`]);
    assert.equal(plan.headers['forwarded'], 'for="10.1.1.1";host=billing.shop.mesh');
    // Dialled by its own IP too; a WorkloadEntry with no identity is outside the mesh.
    expect(planOutbound(snapshot, client(snapshot), { ip: '10.9.0.5', port: 9443 }, CONTEXT), 'hbone');
    expect(planOutbound(snapshot, client(snapshot), { ip: '10.9.0.6', port: 22 }, CONTEXT), 'plain');
  });

  it('exportTo "." keeps a host to its own namespace, on the connection path too (L4 and L7 ports)', () => {
    const local = EXTERNAL_STATIC.replace('location: MESH_EXTERNAL', 'location: MESH_EXTERNAL\n  exportTo: ["."]');
    const elsewhere = local.replace('namespace: shop}', 'namespace: payments}');
    const snapshot = mesh(`${local}${elsewhere.replaceAll('api.payments.example', 'ledger.payments.example').replace('name: payments,', 'name: ledger,')}`);
    assert.equal(snapshot.servicesByHostname.get('api.payments.example')?.visibility, 'namespace');
    const own = snapshot.servicesByHostname.get('api.payments.example')!.vips[0]!;
    expect(planOutbound(snapshot, client(snapshot), { ip: own, port: 443 }, CONTEXT), 'plain');
    const other = snapshot.servicesByHostname.get('ledger.payments.example')!.vips[0]!;
    for (const port of [443, 80]) {
      const plan = expect(planOutbound(snapshot, client(snapshot), { ip: other, port }, CONTEXT), 'refused');
      assert.equal(plan.flag, 'NO_ROUTE');
      assert.equal(plan.reason, 'service ledger.payments.example is visible only to namespace payments (visibility NAMESPACE, or exportTo "."), not to shop');
    }
  });

  it('refuses what istiod refuses, naming the field', () => {
    const messages = (yaml: string): string[] => parse(yaml).diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic);
    assert.match(messages(EXTERNAL_STATIC.replace('  endpoints: [{address: 192.0.2.10}]\n', '')).join('\n'), /resolution STATIC needs endpoints/);
    assert.match(messages(EXTERNAL_STATIC.replace('name: http,', 'name: tls,')).join('\n'), /port name "tls" is written twice/);
    assert.match(messages(EXTERNAL_STATIC.replace('address: 192.0.2.10', 'address: not-an-ip')).join('\n'), /expected an IP address/);
    assert.match(messages(EXTERNAL_STATIC.replace('resolution: STATIC', 'resolution: SOMETIMES')).join('\n'), /expected one of NONE, STATIC, DNS/);
  });
});

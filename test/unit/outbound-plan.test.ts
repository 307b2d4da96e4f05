// planOutbound and planEndpoint: every transport the data path can take, decided from a snapshot read
// from YAML alone (no socket), as the L4 listener, the L7 upstream, health probes and `ambit explain`
// all see it.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatDiagnostic } from '../../agent/config/diagnostics.js';
import { parseConfigFile } from '../../agent/config/parse-file.js';
import { buildSnapshot } from '../../agent/state/build.js';
import type { MeshSnapshot } from '../../agent/state/model.js';
import { type OutboundPlan, type OutboundSource, type PlanContext, planEndpoint, planOutbound } from '../../agent/tunnel/outbound-plan.js';

const TD = 'cluster.local';
const CONTEXT: PlanContext = { node: 'a', clusterId: 'Kubernetes', l7: true, inboundHttp: true, pick: () => 0 };

/** Nodes a and b; in the ambient namespace shop a client and db-a on a, db-b on b; a pod outside the mesh on b. */
function mesh(extra = ''): MeshSnapshot {
  const node = (name: string, ip: string) => `---
apiVersion: v1
kind: Node
metadata: {name: ${name}}
status: {addresses: [{type: InternalIP, address: ${ip}}]}
`;
  const pod = (ns: string, name: string, nodeName: string, ip: string, labels: string, ports = '[{containerPort: 5432}]') => `---
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: ${ns}, labels: {${labels}}}
spec: {nodeName: ${nodeName}, serviceAccountName: ${name}, containers: [{name: c, ports: ${ports}}]}
status: {podIP: ${ip}}
`;
  const service = (name: string, vip: string, selector: string, port: string) => `---
apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: shop}
spec: {clusterIP: ${vip}, selector: {${selector}}, ports: [${port}]}
`;
  const parsed = parseConfigFile(
    `${node('a', '172.31.0.1')}${node('b', '172.31.0.2')}---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: legacy}
${pod('shop', 'client', 'a', '10.1.1.1', 'app: client')}${pod('shop', 'db-a', 'a', '10.1.1.2', 'app: db-a')}${pod('shop', 'db-b', 'b', '10.1.2.2', 'app: db-b')}${pod('shop', 'web', 'b', '10.1.2.4', 'app: web', '[{containerPort: 8080}]')}${pod('legacy', 'old', 'b', '10.1.2.3', 'app: old')}${service('db', '10.96.0.5', 'app: db-b', '{name: tcp-db, port: 5432}')}${service('web', '10.96.0.8', 'app: web', '{name: http, port: 80, targetPort: 8080}')}${service('ghost', '10.96.0.9', 'app: nobody', '{name: tcp, port: 7000}')}${extra}`,
    'plan.yaml',
  );
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic), []);
  return buildSnapshot(parsed.objects, { version: 1, trustDomain: TD, clusterDomain: 'cluster.local' });
}

function clientOf(snapshot: MeshSnapshot): OutboundSource {
  const workload = snapshot.workloadsByIp.get('10.1.1.1');
  assert.ok(workload?.enrollment.enrolled, 'the client pod is enrolled');
  return { workload, ip: '10.1.1.1', port: 40000 };
}

function expect<T extends OutboundPlan['transport']>(plan: OutboundPlan, transport: T): Extract<OutboundPlan, { transport: T }> {
  assert.equal(plan.transport, transport, JSON.stringify(plan, (k, v) => (k === 'workload' || k === 'service' ? v?.key ?? v?.hostname : v)));
  return plan as Extract<OutboundPlan, { transport: T }>;
}

describe('planOutbound', () => {
  it('an enrolled pod on another node, reached through its Service: HBONE to its 15008 as the source pod', () => {
    const snapshot = mesh();
    const plan = expect(planOutbound(snapshot, clientOf(snapshot), { ip: '10.96.0.5', port: 5432 }, CONTEXT), 'hbone');
    assert.deepEqual(plan.target, { ip: '10.1.2.2', port: 5432 });
    assert.equal(plan.authority, '10.1.2.2:5432');
    assert.deepEqual(plan.request.source, { identity: `spiffe://${TD}/ns/shop/sa/client`, ip: '10.1.1.1' });
    assert.equal(plan.request.bindSource, true);
    assert.deepEqual(plan.request.destination, { ip: '10.1.2.2' });
    assert.deepEqual(plan.request.expectedIdentities, [`spiffe://${TD}/ns/shop/sa/db-b`]);
    assert.equal(plan.headers['forwarded'], 'for="10.1.1.1";host=db.shop.svc.cluster.local');
    assert.match(plan.headers['baggage'] ?? '', /^k8s\.cluster\.name=Kubernetes,k8s\.namespace\.name=shop,k8s\.pod\.name=client,/);
    assert.deepEqual(
      plan.telemetry.map((d) => [d.direction, d.src.addr, d.dst.addr, d.dst.hboneAddr, d.dst.service?.hostname, d.securityPolicy]),
      [['outbound', '10.1.1.1:40000', '10.1.2.2:15008', '10.1.2.2:5432', 'db.shop.svc.cluster.local', 'mutual_tls']],
    );
  });

  it('an enrolled pod of this node: no tunnel, admitted here as its agent would, both reporters counted', () => {
    const snapshot = mesh();
    const plan = expect(planOutbound(snapshot, clientOf(snapshot), { ip: '10.1.1.2', port: 5432 }, CONTEXT), 'local');
    assert.equal(plan.workload.key, 'shop/db-a');
    assert.equal(plan.bindSource, '10.1.1.1');
    assert.deepEqual(plan.admission, { node: 'a', sourceIp: '10.1.1.1', sourceIdentity: `spiffe://${TD}/ns/shop/sa/client`, destination: { ip: '10.1.1.2', port: 5432 }, httpPerRequest: true });
    assert.deepEqual(plan.telemetry.map((d) => d.direction), ['outbound', 'inbound']);
  });

  it('an enrolled pod of this node whose policy denies the source: refused with DENY, on both reporters', () => {
    const deny = `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-client, namespace: shop}
spec: {selector: {matchLabels: {app: db-a}}, action: DENY, rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/client]}}]}]}
`;
    const snapshot = mesh(deny);
    const plan = expect(planOutbound(snapshot, clientOf(snapshot), { ip: '10.1.1.2', port: 5432 }, CONTEXT), 'refused');
    assert.equal(plan.flag, 'DENY');
    assert.match(plan.reason, /deny-client/);
    assert.deepEqual(plan.telemetry.map((d) => d.direction), ['outbound', 'inbound']);
  });

  it('a pod that is not enrolled, or an address outside the mesh: plain TCP from the source pod\'s own address', () => {
    const snapshot = mesh();
    const legacy = expect(planOutbound(snapshot, clientOf(snapshot), { ip: '10.1.2.3', port: 5432 }, CONTEXT), 'plain');
    assert.deepEqual(legacy.target, { ip: '10.1.2.3', port: 5432 });
    assert.equal(legacy.bindSource, '10.1.1.1');
    assert.deepEqual(legacy.telemetry.map((d) => [d.securityPolicy, d.src.identity, d.dst.workload?.key]), [['unknown', undefined, 'legacy/old']]);
    const outside = expect(planOutbound(snapshot, clientOf(snapshot), { ip: '192.0.2.7', port: 443 }, CONTEXT), 'plain');
    assert.equal(outside.bindSource, '10.1.1.1');
    assert.equal(outside.telemetry[0]?.dst.workload, undefined);
  });

  it('a Service port that speaks HTTP goes to the L7 proxy, unless the agent runs without it', () => {
    const snapshot = mesh();
    const http = expect(planOutbound(snapshot, clientOf(snapshot), { ip: '10.96.0.8', port: 80 }, CONTEXT), 'http');
    assert.ok(http.destination.kind === 'service' && http.destination.service.hostname === 'web.shop.svc.cluster.local');
    assert.equal(http.destination.protocol, 'HTTP');
    const l4 = expect(planOutbound(snapshot, clientOf(snapshot), { ip: '10.96.0.8', port: 80 }, { ...CONTEXT, l7: false }), 'hbone');
    assert.deepEqual(l4.target, { ip: '10.1.2.4', port: 8080 });
  });

  it('a Service VIP with no endpoint, or a source that is not an enrolled pod of this node: refused with NO_ROUTE', () => {
    const snapshot = mesh();
    const ghost = expect(planOutbound(snapshot, clientOf(snapshot), { ip: '10.96.0.9', port: 7000 }, CONTEXT), 'refused');
    assert.equal(ghost.flag, 'NO_ROUTE');
    assert.match(ghost.reason, /ghost\.shop\.svc\.cluster\.local has no ready endpoint for port 7000/);
    assert.deepEqual(ghost.telemetry.map((d) => [d.src.addr, d.dst.addr]), [['10.1.1.1:40000', '10.96.0.9:7000']]);
    const elsewhere = expect(planOutbound(snapshot, clientOf(snapshot), { ip: '10.96.0.5', port: 5432 }, { ...CONTEXT, node: 'b' }), 'refused');
    assert.match(elsewhere.reason, /not an enrolled pod of node b/);
  });
});

describe('planEndpoint for health probes', () => {
  it('a pod of this node is probed plainly from the agent; one on another node over HBONE as the source', () => {
    const snapshot = mesh();
    const source = { ...clientOf(snapshot), port: 0 };
    const probe: PlanContext = { node: 'a', clusterId: 'Kubernetes', purpose: 'probe' };
    const local = expect(planEndpoint(snapshot, source, { workload: snapshot.workloadsByIp.get('10.1.1.2')!, address: { ip: '10.1.1.2', port: 5432 } }, probe), 'plain');
    assert.equal(local.bindSource, undefined, 'from the agent\'s own address, as a kubelet');
    const remote = expect(planEndpoint(snapshot, source, { workload: snapshot.workloadsByIp.get('10.1.2.2')!, address: { ip: '10.1.2.2', port: 5432 } }, probe), 'hbone');
    assert.deepEqual(remote.request.expectedIdentities, [`spiffe://${TD}/ns/shop/sa/db-b`]);
    const noIp = expect(planEndpoint(snapshot, { ...source, ip: '' }, { workload: snapshot.workloadsByIp.get('10.1.2.2')!, address: { ip: '10.1.2.2', port: 5432 } }, probe), 'refused');
    assert.match(noIp.reason, /has no IP to connect from/);
  });
});

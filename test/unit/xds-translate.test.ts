// The xDS translation's corner cases, each against ztunnel's semantics (src/rbac.rs, state/workload.rs):
// empty matches and clauses, string-match kinds, destination IPs, groups the policy engine cannot
// express, IPv6 bytes, per-workload trust domains, ServiceEntry hostnames and subject_alt_names.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type MessageInitShape, create } from '@bufbuild/protobuf';
import { authorizeConnection } from '../../agent/policy/authorization.js';
import { Action, AuthorizationSchema, Scope } from '../../agent/proto/istio/security/authorization_pb.js';
import { AddressSchema, LoadBalancing_Mode, LoadBalancing_Scope, NetworkMode, TunnelProtocol, type WorkloadSchema } from '../../agent/proto/istio/workload/workload_pb.js';
import { xdsNode, xdsNodeInfoFromEnv } from '../../agent/sources/xds/node.js';
import { type XdsAddress, ipFromBytes, translateAddress } from '../../agent/sources/xds/translate-address.js';
import { type XdsAuthorization, translateAuthorization } from '../../agent/sources/xds/translate-authorization.js';
import { buildXdsSnapshot } from '../../agent/sources/xds/xds-snapshot.js';
import { type MeshSnapshot, spiffeId } from '../../agent/state/model.js';
import { resolveOutbound, serverIdentities } from '../../agent/tunnel/destination.js';

const ip4 = (text: string): Uint8Array => new Uint8Array(text.split('.').map(Number));

function addr(init: MessageInitShape<typeof WorkloadSchema>): XdsAddress {
  const t = translateAddress(create(AddressSchema, { type: { case: 'workload', value: init } }));
  assert.ok(t.ok, t.ok ? '' : t.reason);
  return t.value;
}

function policy(init: MessageInitShape<typeof AuthorizationSchema>): XdsAuthorization {
  const t = translateAuthorization(create(AuthorizationSchema, init));
  assert.ok(t.ok, t.ok ? '' : t.reason);
  return t.value;
}

const server = addr({ uid: 'c//Pod/ns1/server', name: 'server', namespace: 'ns1', addresses: [ip4('10.1.0.2')], tunnelProtocol: TunnelProtocol.HBONE, authorizationPolicies: ['ns1/selected'] });

function snapshotWith(...policies: XdsAuthorization[]): MeshSnapshot {
  return buildXdsSnapshot(new Map([['c//Pod/ns1/server', server]]), new Map(policies.map((p) => [p.key, p])), { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' }).snapshot;
}

function allowed(snapshot: MeshSnapshot, from: string | undefined, port = 80, destinationIp = '10.1.0.2'): boolean {
  const destination = snapshot.workloads.get('c//Pod/ns1/server')!;
  return authorizeConnection(snapshot, {
    ...(from ? { sourceIdentity: spiffeId('cluster.local', from.split('/')[0]!, from.split('/')[1]!) } : {}),
    sourceIp: '10.9.0.1',
    destination,
    destinationIp,
    destinationPort: port,
  }).allowed;
}

describe('xDS Authorization translation', () => {
  it('never matches a group whose clause holds only empty matches; an empty clause matches all', () => {
    const emptyMatch = policy({ name: 'selected', namespace: 'ns1', scope: Scope.WORKLOAD_SELECTOR, groups: [{ rules: [{ matches: [{}] }] }] });
    assert.deepEqual(emptyMatch.policy.spec.rules, [], 'an ALLOW with no usable rule allows nothing');
    assert.equal(allowed(snapshotWith(emptyMatch), 'ns2/a'), false);
    const emptyClause = policy({ name: 'selected', namespace: 'ns1', scope: Scope.WORKLOAD_SELECTOR, groups: [{ rules: [{ matches: [] }] }] });
    assert.equal(allowed(snapshotWith(emptyClause), 'ns2/a'), true);
  });

  it('maps exact, prefix, suffix and presence as ztunnel matches them', () => {
    const p = (matchType: MessageInitShape<typeof AuthorizationSchema>['groups']) => policy({ name: 'selected', namespace: 'ns1', scope: Scope.WORKLOAD_SELECTOR, groups: matchType });
    const principals = (m: object) => [{ rules: [{ matches: [{ principals: [{ matchType: m }] }] }] }] as MessageInitShape<typeof AuthorizationSchema>['groups'];
    assert.equal(allowed(snapshotWith(p(principals({ case: 'prefix', value: 'cluster.local/ns/ns2/' }))), 'ns2/a'), true);
    assert.equal(allowed(snapshotWith(p(principals({ case: 'prefix', value: 'cluster.local/ns/ns3/' }))), 'ns2/a'), false);
    assert.equal(allowed(snapshotWith(p(principals({ case: 'suffix', value: '/sa/a' }))), 'ns2/a'), true);
    assert.equal(allowed(snapshotWith(p(principals({ case: 'presence', value: {} }))), 'ns2/a'), true);
    assert.equal(allowed(snapshotWith(p(principals({ case: 'presence', value: {} }))), undefined), false, 'no identity, no principal');
    // A literal "*evil" cannot be matched as such here: the entry goes, and with it the only field of its match.
    const wildcardExact = policy({ name: 'selected', namespace: 'ns1', scope: Scope.WORKLOAD_SELECTOR, groups: principals({ case: 'exact', value: '*evil' }) });
    assert.match(wildcardExact.dropped.join('\n'), /groups\[0\]\.rules\[0\]\.matches\[0\]\.principals\[0\]: exact match "\*evil" begins or ends with "\*", which would read as a wildcard; this entry is dropped/);
    assert.equal(allowed(snapshotWith(wildcardExact), 'ns2/evil'), false, 'an ALLOW whose only match is gone allows nothing');
  });

  it('turns a single match with destination IPs and ports into conditions', () => {
    const deny = policy({
      name: 'deny-vip',
      namespace: 'ns1',
      scope: Scope.NAMESPACE,
      action: Action.DENY,
      groups: [{ rules: [{ matches: [{ destinationIps: [{ address: ip4('10.1.0.0'), length: 24 }], destinationPorts: [80] }] }] }],
    });
    const snapshot = snapshotWith(deny);
    assert.equal(allowed(snapshot, 'ns2/a', 80, '10.1.0.2'), false);
    assert.equal(allowed(snapshot, 'ns2/a', 81, '10.1.0.2'), true);
    assert.equal(allowed(snapshot, 'ns2/a', 80, '10.2.0.2'), true);
  });

  it('places GLOBAL in the root namespace and WORKLOAD_SELECTOR only on the workloads that list it', () => {
    const global = policy({ name: 'g', namespace: 'whatever', scope: Scope.GLOBAL, action: Action.DENY, groups: [{ rules: [] }] });
    assert.equal(global.policy.metadata.namespace, 'istio-system');
    assert.equal(allowed(snapshotWith(global), 'ns2/a'), false);
    const elsewhere = policy({ name: 'not-listed', namespace: 'ns1', scope: Scope.WORKLOAD_SELECTOR, action: Action.DENY, groups: [{ rules: [] }] });
    assert.equal(allowed(snapshotWith(elsewhere), 'ns2/a'), true, 'a selector policy the workload does not list does not apply');
    const dryRun = policy({ name: 'selected', namespace: 'ns1', scope: Scope.WORKLOAD_SELECTOR, action: Action.DENY, dryRun: true, groups: [{ rules: [] }] });
    assert.equal(allowed(snapshotWith(dryRun), 'ns2/a'), true, 'dry-run policies are not enforced');
  });

  it('refuses groups the policy engine cannot express', () => {
    const mixed = translateAuthorization(
      create(AuthorizationSchema, { name: 'm', namespace: 'ns1', groups: [{ rules: [{ matches: [{ destinationIps: [{ address: ip4('10.0.0.1'), length: 32 }] }, { namespaces: [{ matchType: { case: 'exact', value: 'a' } }] }] }] }] }),
    );
    assert.ok(!mixed.ok && /ORs 2 matches that mix kinds of fields/.test(mixed.reason));
  });
});

describe('xDS Address translation', () => {
  it('reads IPv6 bytes in canonical form', () => {
    const bytes = new Uint8Array(16);
    bytes[0] = 0xfd;
    bytes[15] = 1;
    assert.equal(ipFromBytes(bytes), 'fd00::1');
    assert.equal(ipFromBytes(new Uint8Array(3)), undefined);
  });

  it('keeps each workload\'s trust domain and each service\'s own hostname', () => {
    const w = addr({ uid: 'u1', name: 'w', namespace: 'ns1', addresses: [ip4('10.1.0.3')], trustDomain: 'example.org', serviceAccount: 'sa', services: { 'ns1/api.example.com': { ports: [{ servicePort: 443, targetPort: 8443 }] } } });
    const s = translateAddress(create(AddressSchema, { type: { case: 'service', value: { name: 'api', namespace: 'ns1', hostname: 'api.example.com', addresses: [{ address: ip4('240.0.0.1') }], ports: [{ servicePort: 443, targetPort: 8443 }] } } }));
    assert.ok(s.ok);
    const { snapshot } = buildXdsSnapshot(new Map<string, XdsAddress>([['u1', w], ['ns1/api.example.com', s.value]]), new Map(), { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
    assert.equal(snapshot.workloads.get('u1')!.identity, 'spiffe://example.org/ns/ns1/sa/sa');
    assert.equal(snapshot.workloads.get('u1')!.uid, 'u1');
    assert.equal(snapshot.workloads.get('u1')!.enrollment.enrolled, false, 'not HBONE: not captured');
    const api = snapshot.servicesByHostname.get('api.example.com');
    assert.ok(api);
    assert.deepEqual(api.endpoints.map((e) => [e.ip, [...e.ports]]), [['10.1.0.3', [[443, 8443]]]]);
  });

  it('takes HOST_NETWORK workloads as hostNetwork pods: on their node\'s shared address, owning none of it, never captured', () => {
    const host = (name: string) => addr({ uid: `c//Pod/ns1/${name}`, name, namespace: 'ns1', addresses: [ip4('172.31.0.1')], node: 'n1', networkMode: NetworkMode.HOST_NETWORK, tunnelProtocol: TunnelProtocol.HBONE });
    const { snapshot } = buildXdsSnapshot(new Map([['a', host('exporter')], ['b', host('agent')]]), new Map(), { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
    assert.deepEqual(snapshot.diagnostics.filter((d) => d.severity === 'error'), []);
    assert.deepEqual([...snapshot.workloads.keys()].sort(), ['c//Pod/ns1/agent', 'c//Pod/ns1/exporter']);
    assert.deepEqual(snapshot.workloads.get('c//Pod/ns1/agent')!.enrollment, { enrolled: false, reason: 'host-network' });
    assert.equal(snapshot.workloadsByIp.get('172.31.0.1'), undefined);
  });

  it('ranks a service\'s endpoints by istiod\'s load_balancing and the workloads\' localities, as ztunnel does', () => {
    const at = (name: string, ip: string, node: string, zone: string) =>
      addr({ uid: `c//Pod/ns1/${name}`, name, namespace: 'ns1', addresses: [ip4(ip)], node, locality: { region: 'r1', zone }, tunnelProtocol: TunnelProtocol.HBONE, services: { 'ns1/db.ns1.svc.cluster.local': { ports: [{ servicePort: 5432, targetPort: 5432 }] } } });
    const service = (mode: LoadBalancing_Mode) => {
      const t = translateAddress(create(AddressSchema, { type: { case: 'service', value: { name: 'db', namespace: 'ns1', hostname: 'db.ns1.svc.cluster.local', addresses: [{ address: ip4('10.96.1.1') }], ports: [{ servicePort: 5432, targetPort: 5432 }], loadBalancing: { mode, routingPreference: [LoadBalancing_Scope.NETWORK, LoadBalancing_Scope.REGION, LoadBalancing_Scope.ZONE] } } } }));
      assert.ok(t.ok);
      return t.value;
    };
    const addresses = (mode: LoadBalancing_Mode) => new Map<string, XdsAddress>([['a', at('db-a', '10.1.1.5', 'n1', 'z1')], ['b', at('db-b', '10.1.2.5', 'n2', 'z2')], ['s', service(mode)]]);
    const options = { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local', node: { name: 'n3', ip: '172.31.0.3' } };
    const failover = buildXdsSnapshot(addresses(LoadBalancing_Mode.FAILOVER), new Map(), options).snapshot;
    assert.deepEqual(failover.diagnostics, []);
    assert.equal(failover.nodes.get('n2')?.labels['topology.kubernetes.io/zone'], 'z2');
    const picked = (snapshot: MeshSnapshot, node: string) => [0, 1].map((i) => {
      const t = resolveOutbound(snapshot, { ip: '10.96.1.1', port: 5432 }, node, (n) => i % n);
      return t.kind === 'workload' ? t.workload.name : t.kind;
    });
    assert.deepEqual(picked(failover, 'n2'), ['db-b', 'db-b']);
    // Node n3 has no workload, so no known zone: it shares none, and fails over to all.
    assert.deepEqual(picked(failover, 'n3'), ['db-a', 'db-b']);
    const strict = buildXdsSnapshot(addresses(LoadBalancing_Mode.STRICT), new Map(), options).snapshot;
    assert.deepEqual(picked(strict, 'n1'), ['db-a', 'db-a']);
    assert.deepEqual(picked(strict, 'n3'), ['refused', 'refused']);
  });

  it('keeps a service\'s subject_alt_names that are SPIFFE ids, and the outbound side accepts them from its servers', () => {
    const w = addr({ uid: 'u1', name: 'w', namespace: 'ns1', addresses: [ip4('10.1.0.3')], tunnelProtocol: TunnelProtocol.HBONE, serviceAccount: 'sa', services: { 'ns1/db.example.com': { ports: [{ servicePort: 5432, targetPort: 5432 }] } } });
    const s = translateAddress(create(AddressSchema, { type: { case: 'service', value: {
      name: 'db', namespace: 'ns1', hostname: 'db.example.com', addresses: [{ address: ip4('240.0.0.2') }], ports: [{ servicePort: 5432, targetPort: 5432 }],
      subjectAltNames: ['spiffe://cluster.local/ns/db/sa/postgres', 'db.example.com'],
    } } }));
    assert.ok(s.ok && s.value.kind === 'service');
    assert.deepEqual(s.value.subjectAltNames, ['spiffe://cluster.local/ns/db/sa/postgres']);
    assert.match(s.value.unsupported.join('\n'), /subject_alt_names\[1\] is ignored: "db.example.com" is not a SPIFFE id/);
    const { snapshot } = buildXdsSnapshot(new Map<string, XdsAddress>([['u1', w], ['ns1/db.example.com', s.value]]), new Map(), { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
    const target = resolveOutbound(snapshot, { ip: '240.0.0.2', port: 5432 });
    assert.ok(target.kind === 'workload' && target.service);
    assert.deepEqual(serverIdentities(target.workload, target.service), ['spiffe://cluster.local/ns/ns1/sa/sa', 'spiffe://cluster.local/ns/db/sa/postgres']);
    const direct = resolveOutbound(snapshot, { ip: '10.1.0.3', port: 5432 });
    assert.ok(direct.kind === 'workload');
    assert.deepEqual(serverIdentities(direct.workload, direct.service), ['spiffe://cluster.local/ns/ns1/sa/sa'], 'a pod dialled by IP answers only for itself');
  });

  it('refuses a workload without a name and a service port out of range', () => {
    const noName = translateAddress(create(AddressSchema, { type: { case: 'workload', value: { uid: 'u', namespace: 'ns1' } } }));
    assert.ok(!noName.ok && /workload u has no name/.test(noName.reason));
    const badPort = translateAddress(create(AddressSchema, { type: { case: 'service', value: { name: 's', namespace: 'n', hostname: 'h', ports: [{ servicePort: 0 }] } } }));
    assert.ok(!badPort.ok && /port 0 is outside 1-65535/.test(badPort.reason));
    const empty = translateAddress(create(AddressSchema, {}));
    assert.ok(!empty.ok && /neither a workload nor a service/.test(empty.reason));
  });
});

describe('xDS node identity', () => {
  it('reads the DaemonSet\'s environment into ztunnel\'s node id and metadata', () => {
    const { info, problems } = xdsNodeInfoFromEnv({
      INSTANCE_IP: '10.0.0.7',
      POD_NAME: 'ambit-abc',
      POD_NAMESPACE: 'istio-system',
      NODE_NAME: 'worker-1',
      ISTIO_META_CLUSTER_ID: 'Kubernetes',
      ISTIO_METAJSON_LABELS: '{"app":"ambit"}',
    });
    assert.deepEqual(problems, []);
    const node = xdsNode(info);
    assert.equal(node.id, 'ztunnel~10.0.0.7~ambit-abc.istio-system~istio-system.svc.cluster.local');
    assert.deepEqual(node.metadata, { NAME: 'ambit-abc', NAMESPACE: 'istio-system', INSTANCE_IPS: '10.0.0.7', NODE_NAME: 'worker-1', CLUSTER_ID: 'Kubernetes', LABELS: { app: 'ambit' } });
    assert.equal(xdsNode({ ...info, proxyType: 'sidecar' }).id.split('~')[0], 'sidecar');
    assert.equal(xdsNodeInfoFromEnv({}).problems.length, 4);
  });
});

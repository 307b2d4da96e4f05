// What istiod really sends, served by the istiod test peer over delta ADS and handled as ztunnel handles
// it (src/state/service.rs, src/state/workload.rs, src/state.rs, src/rbac.rs): a port listed twice
// (kube-dns), workloads and services sharing a namespace/name (ServiceEntry endpoints and hosts,
// EndpointSlice addresses), health_policy ALLOW_ALL, capacity, hostname-only workloads, visibility, and
// a policy with an entry that cannot be read. Each is ACKed, and checked where a user sees it: where a
// connection goes, what the policy engine decides, /config_dump and the agent's log.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { buildConfigDump } from '../../agent/admin/config-dump.js';
import { authorizeConnection } from '../../agent/policy/authorization.js';
import { Action, Scope } from '../../agent/proto/istio/security/authorization_pb.js';
import { LoadBalancing_HealthPolicy, TunnelProtocol, Visibility, WorkloadStatus } from '../../agent/proto/istio/workload/workload_pb.js';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, XdsSource } from '../../agent/sources/xds/xds-source.js';
import { type MeshSnapshot, serviceVisibleTo, spiffeId } from '../../agent/state/model.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { resolveOutbound } from '../../agent/tunnel/destination.js';
import { planOutbound } from '../../agent/tunnel/outbound-plan.js';
import { authorization, ip, service, workload } from '../fixtures/istiod/resources.js';
import { waitForSnapshot } from './helpers/snapshot-wait.js';
import { type RunningIstiod, startIstiod } from '../fixtures/istiod/running.js';
import type { FakeXdsServer, ResourceBody } from '../fixtures/istiod/xds-server.js';

const TOKEN = 'node-agent-token';
const podUid = (ns: string, name: string): string => `Kubernetes//Pod/${ns}/${name}`;

/** Where each of `n` successive connections to `vip:port` goes, with the resolver's pick walking its list. */
function reached(snapshot: MeshSnapshot, vip: string, port: number, n: number): string[] {
  return Array.from({ length: n }, (_, i) => {
    const target = resolveOutbound(snapshot, { ip: vip, port }, undefined, (size) => i % size);
    return target.kind === 'workload' ? `${target.address.ip}:${target.address.port}` : `${target.kind}: ${target.kind === 'refused' ? target.reason : ''}`;
  });
}

describe('what istiod sends, handled as ztunnel handles it', () => {
  let istiod: RunningIstiod;
  let server: FakeXdsServer;
  let source: XdsSource;
  const store = new WorkloadStore();
  const logged: { level: number; msg: string }[] = [];

  /** Serves `resources` and waits for the agent's answer, which must be an ACK, and for the snapshot that passes `ready`. */
  async function serve(resources: readonly { name: string; body: ResourceBody }[], ready: (s: MeshSnapshot) => boolean): Promise<MeshSnapshot> {
    const typeUrl = resources[0]!.body.typeUrl;
    const nonce = server.push(typeUrl, resources.map((r) => ({ ...r, version: '1' })));
    const answer = await server.answerTo(nonce);
    assert.equal(answer.errorDetail?.message, undefined, 'istiod\'s resources are ACKed');
    return waitForSnapshot(store, ready);
  }

  before(async () => {
    istiod = await startIstiod(TOKEN);
    server = istiod.server;
    server.push(ADDRESS_TYPE_URL, []);
    server.push(AUTHORIZATION_TYPE_URL, []);
    const log = pino({ level: 'warn' }, { write: (line: string) => void logged.push(JSON.parse(line) as { level: number; msg: string }) });
    source = new XdsSource(istiod.agentOptions, store, log);
    await source.load();
  });

  after(async () => {
    source.close();
    await istiod.stop();
  });

  it('takes a Service that lists a port twice (kube-dns: 53/UDP and 53/TCP) with one mapping per port, as ztunnel', async () => {
    const host = 'kube-dns.kube-system.svc.cluster.local';
    const ports = [{ servicePort: 53, targetPort: 53 }, { servicePort: 53, targetPort: 53 }, { servicePort: 9153, targetPort: 9153 }];
    const snapshot = await serve(
      [
        { name: `kube-system/${host}`, body: service({ name: 'kube-dns', namespace: 'kube-system', hostname: host, addresses: [{ address: ip('10.96.0.10') }], ports }) },
        { name: podUid('kube-system', 'coredns-1'), body: workload({ uid: podUid('kube-system', 'coredns-1'), name: 'coredns-1', namespace: 'kube-system', addresses: [ip('10.1.9.2')], services: { [`kube-system/${host}`]: { ports } } }) },
      ],
      (s) => s.servicesByVip.has('10.96.0.10'),
    );
    assert.deepEqual(snapshot.servicesByVip.get('10.96.0.10')!.ports.map((p) => p.port), [53, 9153]);
    assert.deepEqual(reached(snapshot, '10.96.0.10', 53, 1), ['10.1.9.2:53']);
  });

  it('keeps every workload and service that shares a namespace/name: workloads by uid, services by namespace/hostname', async () => {
    const seUid = (ip4: string) => `Kubernetes/networking.istio.io/ServiceEntry/egress/api/${ip4}`;
    const sliceUid = (ip4: string) => `Kubernetes/discovery.k8s.io/EndpointSlice/egress/legacy-x7/${ip4}`;
    const apiHosts = ['api-v2.example.com', 'api.example.com']; // in the dump's order: by hostname
    const apiServices = Object.fromEntries(apiHosts.map((h) => [`egress/${h}`, { ports: [{ servicePort: 443, targetPort: 8443 }] }]));
    const legacy = 'legacy.egress.svc.cluster.local';
    const snapshot = await serve(
      [
        // One ServiceEntry "api" with two hosts and two inline endpoints.
        ...apiHosts.map((h, i) => ({ name: `egress/${h}`, body: service({ name: 'api', namespace: 'egress', hostname: h, addresses: [{ address: ip(`240.240.0.${2 - i}`) }], ports: [{ servicePort: 443, targetPort: 8443 }] }) })),
        ...['10.1.7.1', '10.1.7.2'].map((a) => ({ name: seUid(a), body: workload({ uid: seUid(a), name: 'api', namespace: 'egress', addresses: [ip(a)], services: apiServices }) })),
        // A Service without a selector, whose EndpointSlice lists two addresses.
        { name: `egress/${legacy}`, body: service({ name: 'legacy', namespace: 'egress', hostname: legacy, addresses: [{ address: ip('10.96.3.3') }], ports: [{ servicePort: 80, targetPort: 8080 }] }) },
        ...['10.1.8.1', '10.1.8.2'].map((a) => ({ name: sliceUid(a), body: workload({ uid: sliceUid(a), name: 'legacy-x7', namespace: 'egress', addresses: [ip(a)], services: { [`egress/${legacy}`]: { ports: [{ servicePort: 80, targetPort: 8080 }] } } }) })),
      ],
      (s) => s.servicesByVip.has('10.96.3.3'),
    );
    assert.deepEqual(snapshot.diagnostics.filter((d) => d.severity === 'error'), []);
    assert.deepEqual(reached(snapshot, '240.240.0.1', 443, 2), ['10.1.7.1:8443', '10.1.7.2:8443']);
    assert.deepEqual(reached(snapshot, '240.240.0.2', 443, 2), ['10.1.7.1:8443', '10.1.7.2:8443']);
    assert.deepEqual(reached(snapshot, '10.96.3.3', 80, 2), ['10.1.8.1:8080', '10.1.8.2:8080']);
    const dump = buildConfigDump(snapshot, 'node-a');
    assert.deepEqual(dump.workloads.filter((w) => w.namespace === 'egress').map((w) => w.uid).sort(), [seUid('10.1.7.1'), seUid('10.1.7.2'), sliceUid('10.1.8.1'), sliceUid('10.1.8.2')].sort());
    assert.deepEqual(dump.services.filter((s) => s.name === 'api').map((s) => [s.hostname, Object.keys(s.endpoints).sort()]), apiHosts.map((h) => [h, [seUid('10.1.7.1'), seUid('10.1.7.2')]]));
  });

  it('sends traffic to unhealthy endpoints of a service whose health_policy is ALLOW_ALL, and only there', async () => {
    const services = { 'batch/queue.batch.svc.cluster.local': { ports: [{ servicePort: 5672, targetPort: 5672 }] }, 'batch/strict.batch.svc.cluster.local': { ports: [{ servicePort: 5672, targetPort: 5672 }] } };
    const snapshot = await serve(
      [
        { name: 'batch/queue.batch.svc.cluster.local', body: service({ name: 'queue', namespace: 'batch', hostname: 'queue.batch.svc.cluster.local', addresses: [{ address: ip('10.96.4.1') }], ports: [{ servicePort: 5672, targetPort: 5672 }], loadBalancing: { healthPolicy: LoadBalancing_HealthPolicy.ALLOW_ALL } }) },
        { name: 'batch/strict.batch.svc.cluster.local', body: service({ name: 'strict', namespace: 'batch', hostname: 'strict.batch.svc.cluster.local', addresses: [{ address: ip('10.96.4.2') }], ports: [{ servicePort: 5672, targetPort: 5672 }] }) },
        { name: podUid('batch', 'queue-0'), body: workload({ uid: podUid('batch', 'queue-0'), name: 'queue-0', namespace: 'batch', addresses: [ip('10.1.4.5')], status: WorkloadStatus.UNHEALTHY, services }) },
      ],
      (s) => s.servicesByVip.has('10.96.4.2'),
    );
    assert.deepEqual(reached(snapshot, '10.96.4.1', 5672, 1), ['10.1.4.5:5672']);
    assert.deepEqual(reached(snapshot, '10.96.4.2', 5672, 1), ['refused: service strict.batch.svc.cluster.local has no ready endpoint for port 5672']);
    assert.equal(buildConfigDump(snapshot, 'node-a').services.find((s) => s.name === 'queue')?.loadBalancer?.healthPolicy, 'AllowAll');
  });

  it('weighs endpoints by their workloads\' capacity, and never picks one of capacity 0', async () => {
    const host = 'cart.shop.svc.cluster.local';
    const member = (name: string, address: string, capacity?: number) => ({
      name: podUid('shop', name),
      body: workload({ uid: podUid('shop', name), name, namespace: 'shop', addresses: [ip(address)], ...(capacity !== undefined ? { capacity } : {}), services: { [`shop/${host}`]: { ports: [{ servicePort: 80, targetPort: 8080 }] } } }),
    });
    const snapshot = await serve(
      [{ name: `shop/${host}`, body: service({ name: 'cart', namespace: 'shop', hostname: host, addresses: [{ address: ip('10.96.5.1') }], ports: [{ servicePort: 80, targetPort: 8080 }] }) }, member('big', '10.1.5.1', 3), member('small', '10.1.5.2'), member('drained', '10.1.5.3', 0)],
      (s) => s.servicesByVip.has('10.96.5.1'),
    );
    const counts = new Map<string, number>();
    for (const to of reached(snapshot, '10.96.5.1', 80, 40)) counts.set(to, (counts.get(to) ?? 0) + 1);
    assert.deepEqual(Object.fromEntries(counts), { '10.1.5.1:8080': 30, '10.1.5.2:8080': 10 });
    assert.deepEqual(buildConfigDump(snapshot, 'node-a').workloads.filter((w) => w.namespace === 'shop').map((w) => [w.name, w.capacity]).sort(), [['big', 3], ['drained', 0], ['small', 1]]);
  });

  it('takes a hostname-only workload as an endpoint resolved when a connection picks it, as ztunnel does', async () => {
    const seUid = 'Kubernetes/networking.istio.io/ServiceEntry/egress/db/db.example.net';
    const snapshot = await serve(
      [
        { name: 'egress/db.example.net', body: service({ name: 'db', namespace: 'egress', hostname: 'db.example.net', addresses: [{ address: ip('240.240.0.9') }], ports: [{ servicePort: 5432, targetPort: 5432 }] }) },
        { name: seUid, body: workload({ uid: seUid, name: 'db', namespace: 'egress', hostname: 'db.example.net', tunnelProtocol: TunnelProtocol.NONE, services: { 'egress/db.example.net': { ports: [{ servicePort: 5432, targetPort: 6432 }] } } }) },
      ],
      (s) => s.servicesByVip.has('240.240.0.9'),
    );
    const target = resolveOutbound(snapshot, { ip: '240.240.0.9', port: 5432 });
    assert.equal(target.kind, 'dns', JSON.stringify(target.kind === 'refused' ? target.reason : target.kind));
    assert.deepEqual(target.kind === 'dns' ? [target.hostname, target.port, target.workload?.uid] : [], ['db.example.net', 6432, seUid]);
    assert.deepEqual(logged.filter((l) => l.level === 40 && l.msg.includes(seUid)).map((l) => l.msg), [], 'no warning: the workload is used');
    const dumped = buildConfigDump(snapshot, 'node-a').workloads.find((w) => w.uid === seUid);
    assert.deepEqual([dumped?.hostname, dumped?.workloadIps], ['db.example.net', []]);
  });

  it('keeps visibility NAMESPACE: the service is for its own namespace\'s clients, in the snapshot, /config_dump and on the connection path', async () => {
    const host = 'ledger.team-a.svc.cluster.local';
    const pod = (namespace: string, name: string, address: string, services = {}) => ({
      name: podUid(namespace, name),
      body: workload({ uid: podUid(namespace, name), name, namespace, node: 'node-a', tunnelProtocol: TunnelProtocol.HBONE, addresses: [ip(address)], services }),
    });
    const snapshot = await serve(
      [
        { name: `team-a/${host}`, body: service({ name: 'ledger', namespace: 'team-a', hostname: host, addresses: [{ address: ip('10.96.6.1') }], ports: [{ servicePort: 80, targetPort: 80 }], visibility: Visibility.NAMESPACE }) },
        pod('team-a', 'ledger-0', '10.1.6.1', { [`team-a/${host}`]: { ports: [{ servicePort: 80, targetPort: 80 }] } }),
        pod('team-a', 'teller', '10.1.6.2'),
        pod('team-b', 'auditor', '10.1.6.3'),
      ],
      (s) => s.servicesByVip.has('10.96.6.1') && s.workloadsByIp.has('10.1.6.3'),
    );
    const ledger = snapshot.servicesByVip.get('10.96.6.1')!;
    assert.deepEqual([serviceVisibleTo(ledger, 'team-a'), serviceVisibleTo(ledger, 'team-b')], [true, false]);
    assert.equal(buildConfigDump(snapshot, 'node-a').services.find((s) => s.hostname === host)?.visibility, 'Namespace');
    const from = (address: string) => planOutbound(snapshot, { workload: snapshot.workloadsByIp.get(address)!, ip: address, port: 40000 }, { ip: '10.96.6.1', port: 80 }, { node: 'node-a', clusterId: 'Kubernetes' });
    assert.equal(from('10.1.6.2').transport, 'local', 'a client of the service\'s namespace reaches it');
    const refused = from('10.1.6.3');
    assert.deepEqual(refused.transport === 'refused' ? [refused.flag, refused.reason] : refused.transport, ['NO_ROUTE', `service ${host} is visible only to namespace team-a (visibility NAMESPACE, or exportTo "."), not to team-b`]);
  });

  it('drops a policy\'s entries that cannot be read, warning with where and why, and enforces the rest', async () => {
    const snapshot = await serve(
      [
        {
          name: 'guarded/allow-web',
          body: authorization({
            name: 'allow-web',
            namespace: 'guarded',
            scope: Scope.NAMESPACE,
            action: Action.ALLOW,
            groups: [
              {
                rules: [
                  { matches: [{ principals: [{ matchType: { case: 'exact', value: 'cluster.local/ns/web/sa/web' } }, { matchType: { case: 'exact', value: '*evil' } }] }] },
                  { matches: [{ destinationPorts: [8080, 70000] }] },
                ],
              },
              { rules: [{ matches: [{ sourceIps: [{ address: new Uint8Array([10, 9, 0, 0, 1]), length: 16 }, { address: ip('10.9.0.0'), length: 16 }] }] }] },
            ],
          }),
        },
      ],
      (s) => s.istio.authorizationPolicies.some((p) => p.metadata.name === 'allow-web'),
    );
    const guarded = await serve(
      [{ name: podUid('guarded', 'api-0'), body: workload({ uid: podUid('guarded', 'api-0'), name: 'api-0', namespace: 'guarded', addresses: [ip('10.1.6.6')], tunnelProtocol: TunnelProtocol.HBONE }) }],
      (s) => s.workloads.has(podUid('guarded', 'api-0')),
    );
    assert.ok(guarded.version >= snapshot.version);
    const allowed = (sourceIp: string, port: number, from?: string) =>
      authorizeConnection(guarded, { ...(from ? { sourceIdentity: spiffeId('cluster.local', from, from) } : {}), sourceIp, destination: guarded.workloads.get(podUid('guarded', 'api-0'))!, destinationIp: '10.1.6.6', destinationPort: port }).allowed;
    assert.deepEqual([allowed('10.1.1.1', 8080, 'web'), allowed('10.1.1.1', 9090, 'web'), allowed('10.1.1.1', 8080, 'evil')], [true, false, false]);
    assert.deepEqual([allowed('10.9.1.1', 9090), allowed('10.8.1.1', 9090)], [true, false]);
    const warnings = logged.filter((l) => l.level === 40 && l.msg.includes('authorization guarded/allow-web')).map((l) => l.msg);
    for (const entry of ['groups[0].rules[0].matches[0].principals[1]: exact match "*evil"', 'groups[0].rules[1].matches[0].destination_ports[1]: destination port 70000', 'groups[1].rules[0].matches[0].source_ips[0]: address has 5 bytes']) {
      assert.ok(warnings.some((w) => w.includes(`xds:Authorization/guarded/allow-web:0: AuthorizationPolicy guarded/allow-web: warning: authorization guarded/allow-web: ${entry}`)), `${entry} in\n${warnings.join('\n')}`);
    }
  });
});

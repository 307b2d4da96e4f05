// The xDS source against a delta ADS server speaking real gRPC, TLS and Istio protobufs on loopback
// (test/fixtures/istiod/xds-server.ts): the request ztunnel sends, the initial sync, updates and
// removals with an ACK each, a malformed resource NACKed with its reason while the rest applies,
// nothing published before both types synced, reconnection with initial_resource_versions and
// backoff. The same snapshot and policy decisions as the equivalent local YAML: xds-source-parity.test.ts.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { pino } from 'pino';
import { ResourceSchema } from '../../agent/proto/envoy/service/discovery/v3/discovery_pb.js';
import { Action, Scope } from '../../agent/proto/istio/security/authorization_pb.js';
import { TunnelProtocol, WorkloadStatus } from '../../agent/proto/istio/workload/workload_pb.js';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, XdsSource, type XdsSourceOptions } from '../../agent/sources/xds/xds-source.js';
import { spiffeId } from '../../agent/state/model.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { authorization, ip, workload } from '../fixtures/istiod/resources.js';
import { waitForSnapshot } from './helpers/snapshot-wait.js';
import type { FakeXdsServer } from '../fixtures/istiod/xds-server.js';
import { type RunningIstiod, startIstiod } from '../fixtures/istiod/running.js';
import { NS, TOKEN, decide, productpageV1, pushBookinfo, reviewsV1Fields, strict, svcHost, uid } from './helpers/xds-bookinfo.js';

const silent = pino({ level: 'silent' });

describe('XdsSource against a delta ADS server', () => {
  let istiod: RunningIstiod;
  let server: FakeXdsServer;
  let options: XdsSourceOptions;
  const store = new WorkloadStore();
  let source: XdsSource;

  before(async () => {
    istiod = await startIstiod(TOKEN);
    server = istiod.server;
    pushBookinfo(server);
    options = istiod.agentOptions;
    source = new XdsSource(options, store, silent);
  });

  after(async () => {
    source.close();
    await istiod.stop();
  });

  it('subscribes as ztunnel does and loads the initial state, ACKing both types', async () => {
    const outcome = await source.load();
    assert.equal(outcome.errors, 0);
    const stream = server.streams[0]!;
    assert.equal(stream.metadata.get('authorization')[0], `Bearer ${TOKEN}`);
    assert.equal(stream.metadata.get('clusterid')[0], 'Kubernetes');
    const initial = stream.requests.filter((r) => r.responseNonce === '');
    assert.deepEqual(initial.map((r) => r.typeUrl), [ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL]);
    for (const request of initial) {
      assert.equal(request.node?.id, 'ztunnel~10.20.0.1~ambit-x7k2p.istio-system~istio-system.svc.cluster.local');
      assert.deepEqual(request.node?.metadata, { NAME: 'ambit-x7k2p', NAMESPACE: 'istio-system', INSTANCE_IPS: '10.20.0.1', NODE_NAME: 'node-a', CLUSTER_ID: 'Kubernetes' });
      assert.deepEqual([request.resourceNamesSubscribe, request.resourceNamesUnsubscribe, request.initialResourceVersions], [[], [], {}]);
    }
    for (const typeUrl of [ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL]) {
      const { request: ack } = await server.request((r) => r.typeUrl === typeUrl && r.responseNonce !== '');
      assert.equal(ack.errorDetail, undefined, `${typeUrl} is ACKed`);
    }

    const snapshot = outcome.snapshot;
    const productpage = snapshot.workloads.get(uid('productpage-v1'))!;
    assert.equal(productpage.uid, uid('productpage-v1'));
    assert.equal(productpage.identity, spiffeId('cluster.local', NS, 'bookinfo-productpage'));
    assert.deepEqual(productpage.enrollment, { enrolled: true, reason: 'pod-label' });
    assert.equal(productpage.node, 'node-a');
    assert.equal(snapshot.workloadsByIp.get('10.1.0.5'), productpage);
    assert.equal(snapshot.workloads.get(uid('reviews-v1'))!.identity, spiffeId('cluster.local', NS, 'default'));
    assert.equal(snapshot.nodes.get('node-a')?.internalIp, '10.20.0.1', 'the agent\'s own node, for capture');
    const reviews = snapshot.servicesByVip.get('10.96.0.21')!;
    assert.equal(reviews.hostname, svcHost('reviews'));
    assert.deepEqual(reviews.endpoints.map((e) => [e.ip, [...e.ports]]), [['10.1.1.7', [[9080, 9081]]]]);
    assert.deepEqual(snapshot.diagnostics, []);
  });

  it('applies updates and removals live, ACKing each', async () => {
    const added = server.push(ADDRESS_TYPE_URL, [
      {
        name: uid('ratings-v1'),
        version: '1',
        body: workload({ uid: uid('ratings-v1'), name: 'ratings-v1', namespace: NS, addresses: [ip('10.1.0.9')], node: 'node-a', tunnelProtocol: TunnelProtocol.HBONE }),
      },
      { name: uid('reviews-v1'), version: '2', body: workload({ ...reviewsV1Fields, status: WorkloadStatus.UNHEALTHY }) },
    ]);
    let snapshot = await waitForSnapshot(store, (s) => s.workloads.has(uid('ratings-v1')));
    assert.equal((await server.answerTo(added)).errorDetail, undefined);
    assert.equal(snapshot.workloads.get(uid('reviews-v1'))!.ready, false, 'UNHEALTHY makes the workload unready');
    assert.deepEqual(snapshot.servicesByVip.get('10.96.0.21')!.endpoints, [], 'and takes it out of its service');

    const removed = server.push(ADDRESS_TYPE_URL, [], [uid('ratings-v1')]);
    snapshot = await waitForSnapshot(store, (s) => !s.workloads.has(uid('ratings-v1')));
    assert.equal((await server.answerTo(removed)).errorDetail, undefined);
    assert.equal(snapshot.workloadsByIp.has('10.1.0.9'), false);

    const policyGone = server.push(AUTHORIZATION_TYPE_URL, [], ['istio-system/istio-converted-static-strict']);
    snapshot = await waitForSnapshot(store, (s) => s.istio.authorizationPolicies.length === 1);
    assert.equal((await server.answerTo(policyGone)).errorDetail, undefined);
    assert.equal(decide(snapshot, 'reviews-v1', undefined, 9080).allowed, true, 'plaintext is allowed once STRICT is gone');
    // Put it back for the tests that follow.
    server.push(AUTHORIZATION_TYPE_URL, [{ name: 'istio-system/istio-converted-static-strict', version: '2', body: strict }]);
    await waitForSnapshot(store, (s) => s.istio.authorizationPolicies.length === 2);
  });

  it('NACKs malformed resources with their reasons while the rest of the response applies', async () => {
    const before = store.current!;
    const nonce = server.push(ADDRESS_TYPE_URL, [
      { name: uid('details-v1'), version: '1', body: workload({ uid: uid('details-v1'), name: 'details-v1', namespace: NS, addresses: [ip('10.1.0.11')], tunnelProtocol: TunnelProtocol.HBONE }) },
      { name: 'truncated', version: '1', body: { typeUrl: ADDRESS_TYPE_URL, value: new Uint8Array([0x0a, 0x40, 0x01]) } },
      { name: uid('five-bytes'), version: '1', body: workload({ uid: uid('five-bytes'), name: 'five-bytes', namespace: NS, addresses: [new Uint8Array([10, 1, 0, 12, 1])] }) },
      { name: 'wrong-type', version: '1', body: { ...productpageV1(), typeUrl: AUTHORIZATION_TYPE_URL } },
      // A bad new version of a workload we hold: the old version must stay.
      { name: uid('productpage-v1'), version: '2', body: workload({ uid: uid('productpage-v1'), name: 'productpage-v1', namespace: NS, addresses: [new Uint8Array([10, 1, 0])] }) },
    ]);
    const answer = await server.answerTo(nonce);
    assert.ok(answer.errorDetail, 'the response is NACKed');
    const message = answer.errorDetail.message;
    assert.match(message, /truncated: cannot decode Address: /);
    assert.match(message, /Kubernetes\/\/Pod\/bookinfo\/five-bytes: workload Kubernetes\/\/Pod\/bookinfo\/five-bytes: addresses\[0\] has 5 bytes; an IPv4 address has 4 and an IPv6 address 16/);
    assert.match(message, /wrong-type: the resource is a type.googleapis.com\/istio.security.Authorization, not a type.googleapis.com\/istio.workload.Address/);
    assert.match(message, /Kubernetes\/\/Pod\/bookinfo\/productpage-v1: .*addresses\[0\] has 3 bytes/);
    assert.doesNotMatch(message, /details-v1/);

    const snapshot = await waitForSnapshot(store, (s) => s.workloads.has(uid('details-v1')));
    assert.ok(snapshot.version > before.version);
    assert.equal(snapshot.workloads.has(uid('five-bytes')), false);
    assert.deepEqual(snapshot.workloads.get(uid('productpage-v1'))!.ips, ['10.1.0.5'], 'the last good version stays');

    const badPolicy = server.push(AUTHORIZATION_TYPE_URL, [
      { name: `${NS}/unknown-action`, version: '1', body: authorization({ name: 'unknown-action', namespace: NS, action: 7 as Action, groups: [] }) },
      { name: `${NS}/deny-ratings-port`, version: '1', body: authorization({ name: 'deny-ratings-port', namespace: NS, scope: Scope.NAMESPACE, action: Action.DENY, groups: [{ rules: [{ matches: [{ destinationPorts: [9999] }] }] }] }) },
    ]);
    const policyAnswer = await server.answerTo(badPolicy);
    assert.equal(policyAnswer.errorDetail?.message, 'bookinfo/unknown-action: authorization bookinfo/unknown-action: unknown action 7');
    const withPolicy = await waitForSnapshot(store, (s) => s.istio.authorizationPolicies.some((p) => p.metadata.name === 'deny-ratings-port'));
    assert.deepEqual(decide(withPolicy, 'productpage-v1', spiffeId('cluster.local', NS, 'gateway'), 9999), { allowed: false, reason: 'denied', policy: `${NS}/deny-ratings-port` });
  });

  it('reconnects after istiod drops the stream, sending the versions it holds, and catches up', async () => {
    const streamsBefore = server.streams.length;
    const held = store.current!;
    assert.ok(held.workloads.has(uid('details-v1')));
    // Meanwhile istiod's state changes: details leaves, ratings arrives, the bad resources are gone.
    const state = server.state.get(ADDRESS_TYPE_URL)!;
    for (const name of [uid('details-v1'), 'truncated', 'wrong-type', uid('five-bytes')]) state.delete(name);
    const ratings = workload({ uid: uid('ratings-v1'), name: 'ratings-v1', namespace: NS, addresses: [ip('10.1.0.9')], tunnelProtocol: TunnelProtocol.HBONE });
    state.set(uid('ratings-v1'), create(ResourceSchema, { name: uid('ratings-v1'), version: '3', resource: ratings }));
    state.set(uid('productpage-v1'), create(ResourceSchema, { name: uid('productpage-v1'), version: '1', resource: productpageV1() }));
    server.disconnectAll();
    assert.equal(store.current, held, 'the last state keeps serving while disconnected');

    const { request } = await server.request((r, s) => s.id > streamsBefore && r.typeUrl === ADDRESS_TYPE_URL && r.responseNonce === '');
    assert.deepEqual(
      request.initialResourceVersions,
      {
        [uid('productpage-v1')]: '1', // version 2 was refused, so the agent still holds version 1
        [uid('reviews-v1')]: '2',
        [uid('details-v1')]: '1',
        [`${NS}/${svcHost('productpage')}`]: '1',
        [`${NS}/${svcHost('reviews')}`]: '1',
      },
    );
    const { request: policies } = await server.request((r, s) => s.id > streamsBefore && r.typeUrl === AUTHORIZATION_TYPE_URL && r.responseNonce === '');
    assert.deepEqual(policies.initialResourceVersions, {
      [`${NS}/productpage-viewer`]: '1',
      'istio-system/istio-converted-static-strict': '2',
      [`${NS}/deny-ratings-port`]: '1',
    });
    const snapshot = await waitForSnapshot(store, (s) => s.workloads.has(uid('ratings-v1')) && !s.workloads.has(uid('details-v1')));
    assert.deepEqual(snapshot.workloads.get(uid('productpage-v1'))!.ips, ['10.1.0.5']);
    const { request: ack } = await server.request((r, s) => s.id > streamsBefore && r.typeUrl === ADDRESS_TYPE_URL && r.responseNonce !== '');
    assert.equal(ack.errorDetail, undefined);
  });

  it('backs off while istiod refuses the stream, then connects once it accepts', async () => {
    const otherStore = new WorkloadStore();
    const refused = new XdsSource({ ...options, backoff: { initialMs: 40, maxMs: 320 } }, otherStore, silent);
    server.requiredToken = 'a-token-the-agent-does-not-have';
    const opened: number[] = [];
    const unsubscribe = refused.subscribe((e) => {
      if (e.type === 'connected') opened.push(Date.now());
    });
    const first = server.streams.length;
    try {
      const loading = refused.load();
      const deadline = Date.now() + 10_000;
      while (server.streams.length - first < 6 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.ok(opened.length >= 6, `only ${opened.length} attempts within 10 s`);
      const gaps = opened.slice(1).map((t, i) => t - opened[i]!);
      // Equal jitter: each delay lies in [d/2, d] for d = 40, 80, 160, 320, 320 ms.
      const ceilings = [40, 80, 160, 320, 320];
      gaps.slice(0, 5).forEach((gap, i) => assert.ok(gap >= ceilings[i]! / 2 - 5, `attempt ${i + 2} came ${gap} ms after the previous one (ceiling ${ceilings[i]} ms)`));
      assert.equal(otherStore.current, undefined, 'nothing is published while istiod refuses');
      server.requiredToken = TOKEN;
      const outcome = await loading;
      assert.ok(outcome.snapshot.workloads.has(uid('productpage-v1')));
    } finally {
      unsubscribe();
      refused.close();
    }
  });

  it('publishes nothing until both types have synced', async () => {
    const otherStore = new WorkloadStore();
    server.held.add(AUTHORIZATION_TYPE_URL);
    const slow = new XdsSource(options, otherStore, silent);
    const streamsBefore = server.streams.length;
    try {
      const loading = slow.load();
      await server.request((r, s) => s.id >= streamsBefore && r.typeUrl === ADDRESS_TYPE_URL && r.responseNonce !== '');
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(otherStore.current, undefined, 'workloads without their policies are never enforced');
      server.release(AUTHORIZATION_TYPE_URL);
      const outcome = await loading;
      assert.equal(outcome.snapshot.istio.authorizationPolicies.length, 3);
    } finally {
      slow.close();
    }
  });
});

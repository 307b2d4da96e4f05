// Double HBONE's decisions from a snapshot alone: when a connection crosses to another network, what
// both tunnels carry (authority, identities, headers, where TCP goes), when it is refused and why, what
// `ambit explain` shows of the gateway hop; and how the destination reads the inner CONNECT's Service
// authority.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { explainPath } from '../../agent/explain/explain.js';
import type { MeshSnapshot, Workload } from '../../agent/state/model.js';
import { spiffeId } from '../../agent/state/model.js';
import { readConnectRequest } from '../../agent/tunnel/hbone/connect-headers.js';
import { resolveServicePort } from '../../agent/tunnel/inbound-hbone.js';
import { type OutboundPlan, type PlanContext, planOutbound } from '../../agent/tunnel/outbound-plan.js';
import { CLIENT, CLIENT_IP, GATEWAY, GATEWAY_IP, HOSTNAME, REVIEWS, REVIEWS_IP, TD, VIP, doubleHboneSnapshot } from '../fixtures/hbone/double-hbone-mesh.js';

const APP_PORT = 9081;
const GATEWAY_PORT = 15008;
const CONTEXT: PlanContext = { node: 'a', clusterId: 'cluster1', pick: () => 0 };

/** The fixture's mesh with the reviews workload changed by `change`. */
function withReviews(change: (w: Workload) => Workload): MeshSnapshot {
  const snapshot = doubleHboneSnapshot(APP_PORT, GATEWAY_PORT);
  const reviews = change(snapshot.workloadsByIp.get(REVIEWS_IP)!);
  const workloads = new Map(snapshot.workloads).set(reviews.key, reviews);
  return { ...snapshot, workloads, workloadsByIp: new Map(snapshot.workloadsByIp).set(REVIEWS_IP, reviews) };
}

function plan(snapshot: MeshSnapshot, ip = VIP, port = 9080): OutboundPlan {
  return planOutbound(snapshot, { workload: snapshot.workloadsByIp.get(CLIENT_IP)!, ip: CLIENT_IP, port: 40000 }, { ip, port }, CONTEXT);
}

describe('double-HBONE plan', () => {
  it('to a Service endpoint on another network: both CONNECTs name the Service; outer to the gateway as the node, inner to the workload', () => {
    const p = plan(doubleHboneSnapshot(APP_PORT, GATEWAY_PORT));
    assert.equal(p.transport, 'double-hbone');
    if (p.transport !== 'double-hbone') return;
    const { outer, inner } = p.request;
    for (const request of [outer, inner]) {
      assert.deepEqual(request.authority, { hostname: HOSTNAME, port: 9080 });
      assert.deepEqual(request.source, { identity: CLIENT, ip: CLIENT_IP });
      assert.equal(request.serviceHostname, HOSTNAME);
      assert.match(request.baggage ?? '', /^k8s\.cluster\.name=cluster1,k8s\.namespace\.name=shop,k8s\.pod\.name=client/);
      assert.equal(request.bindSource, undefined, 'never from the pod\'s address: it means nothing on the other network');
    }
    assert.deepEqual(outer.destination, { ip: GATEWAY_IP, port: GATEWAY_PORT });
    assert.deepEqual(outer.expectedIdentities, [GATEWAY], 'the gateway pod at the address');
    assert.equal(outer.originNetwork, undefined, 'the outer CONNECT carries no network header');
    assert.deepEqual(inner.expectedIdentities, [REVIEWS]);
    assert.equal(inner.originNetwork, 'net1');
    assert.deepEqual(p.target, { ip: REVIEWS_IP, port: APP_PORT });
  });

  it('the same network: single HBONE, as before', () => {
    const snapshot = withReviews((w) => ({ ...w, network: 'net1' }));
    assert.equal(plan(snapshot).transport, 'hbone');
  });

  it('refused, with the reason, when the other network cannot be crossed', () => {
    const reasonOf = (p: OutboundPlan): string => (p.transport === 'refused' ? `${p.flag}: ${p.reason}` : `not refused: ${p.transport}`);
    // A pod IP of another network, dialled directly: only Services cross networks.
    assert.match(reasonOf(plan(doubleHboneSnapshot(APP_PORT, GATEWAY_PORT), REVIEWS_IP, APP_PORT)), /^NO_ROUTE: shop\/reviews on network net2 is reachable only through a Service/);
    // No gateway for its network.
    const { networkGateway: _, ...rest } = doubleHboneSnapshot(APP_PORT, GATEWAY_PORT).workloadsByIp.get(REVIEWS_IP)!;
    assert.match(reasonOf(plan(withReviews(() => rest))), /^NO_ROUTE: shop\/reviews is on network net2, not net1, and has no east-west gateway/);
    // A gateway at an address nobody here holds, and no identity named for it: it could not be authenticated.
    const unknown = withReviews((w) => ({ ...w, networkGateway: { destination: { address: '192.0.2.10' }, hboneMtlsPort: 15008 } }));
    assert.match(reasonOf(plan(unknown)), /^NO_ROUTE: the east-west gateway 192\.0\.2\.10 of shop\/reviews is no workload or Service this agent knows, and its Gateway names no identity/);
  });

  it("a gateway at a load balancer's address is expected to prove the identity its Gateway names", () => {
    const named = spiffeId(TD, 'ambit-system', 'eastwest-gateway');
    const p = plan(withReviews((w) => ({ ...w, networkGateway: { destination: { address: '192.0.2.10' }, hboneMtlsPort: 15008, identity: named } })));
    assert.equal(p.transport, 'double-hbone');
    if (p.transport !== 'double-hbone') return;
    assert.deepEqual(p.request.outer.destination, { ip: '192.0.2.10', port: 15008 });
    assert.deepEqual(p.request.outer.expectedIdentities, [named]);
  });

  it('ambit explain shows the gateway hop and both identities', () => {
    const answer = explainPath(doubleHboneSnapshot(APP_PORT, GATEWAY_PORT), 'a', { source: 'shop/client', destination: `${VIP}:9080` });
    assert.ok(answer.ok, answer.ok ? '' : answer.error);
    const transport = answer.value.explanation.steps.find((s) => s.step === 'transport');
    assert.equal(transport?.outcome, 'double-hbone');
    const text = transport.details.join('\n');
    assert.match(text, /shop\/reviews is on network net2, this pod on net1: double HBONE through its east-west gateway/);
    assert.match(text, new RegExp(`outer tunnel: HBONE to the gateway ${GATEWAY_IP}:${GATEWAY_PORT}, CONNECT ${HOSTNAME}:9080, as ${CLIENT}; expected gateway identity: ${GATEWAY}`));
    assert.match(text, new RegExp(`inner tunnel, inside it: CONNECT ${HOSTNAME}:9080 with mTLS to ${REVIEWS}`));
  });
});

describe('the destination of the inner tunnel', () => {
  it('a Service authority is accepted only where the server resolves Services, with the network header read', () => {
    const headers = { ':method': 'CONNECT', ':authority': `${HOSTNAME}:9080`, 'x-forwarded-network': 'net1' };
    const plain = readConnectRequest(headers, REVIEWS_IP);
    assert.equal(plain.ok, false, 'a node that does not resolve Services refuses it (400)');
    const check = readConnectRequest(headers, REVIEWS_IP, true);
    assert.ok(check.ok);
    assert.deepEqual(check.authority, { hostname: HOSTNAME, port: 9080 });
    assert.equal(check.headers.originNetwork, 'net1');
    // An address authority still has to be the pod dialled.
    assert.equal(readConnectRequest({ ':method': 'CONNECT', ':authority': '127.0.0.99:9081' }, REVIEWS_IP, true).ok, false);
  });

  it("maps the Service port to the pod's target port, as ztunnel's find_inbound_upstream, or says why not", () => {
    const snapshot = doubleHboneSnapshot(APP_PORT, GATEWAY_PORT);
    assert.equal(resolveServicePort(snapshot, { hostname: HOSTNAME, port: 9080 }, REVIEWS_IP), APP_PORT);
    assert.equal(resolveServicePort(snapshot, { hostname: 'nothing.shop.svc.cluster.local', port: 9080 }, REVIEWS_IP), 'no Service nothing.shop.svc.cluster.local is known here');
    assert.equal(resolveServicePort(snapshot, { hostname: HOSTNAME, port: 7000 }, REVIEWS_IP), `service ${HOSTNAME} has no port 7000`);
    // A pod that is no endpoint of the Service still gets a numeric targetPort.
    assert.equal(resolveServicePort(snapshot, { hostname: HOSTNAME, port: 9080 }, CLIENT_IP), APP_PORT);
  });
});

// `ambit explain`'s rate-limit steps against what the destination agent's inbound proxy does with the
// same request: the descriptors explain says would be sent are those a rate limit service on loopback
// receives, the service and failure mode it names are those the request met, and for a service with no
// ready endpoint explain's verdict is the answer the client gets (500 under failureMode deny, 200 under
// allow). Explain itself never calls the service: it is asked after the requests, and the service
// counts one call per request.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { explainAdmissionOnly } from '../../agent/explain/explain.js';
import type { Explanation, ExplainStep } from '../../agent/explain/explanation.js';
import type { AdmissionQuery } from '../../agent/explain/admission.js';
import type { MeshSnapshot } from '../../agent/state/model.js';
import { PRODUCTPAGE, inboundHarness } from './helpers/inbound-harness.js';
import { MapCounters, globalRateLimitYaml, startRateLimitService } from './helpers/rate-limit-service.js';

/** The tunnel every harness request arrives on (productpage over mTLS to reviews-v1:9080), and the request on it. */
function admission(path: string, headers: readonly (readonly [string, string])[]): AdmissionQuery {
  return { sourceIp: '10.244.1.10', sourceIdentity: PRODUCTPAGE, destination: { ip: '10.244.1.21', port: 9080 }, http: { method: 'GET', path, authority: 'reviews:9080', headers } };
}

/**
 * The harness's snapshot as explain reads it: the harness admits its tunnels itself and its pods name no
 * node, while explain's admission asks the pod's own node (as a real pod has), so they are placed on node-b.
 */
function onNodeB(snapshot: MeshSnapshot): MeshSnapshot {
  const placed = new Map([...snapshot.workloads].map(([key, w]) => [key, { ...w, node: 'node-b' }]));
  return { ...snapshot, workloads: placed, workloadsByIp: new Map([...snapshot.workloadsByIp].map(([ip, w]) => [ip, placed.get(w.key)!])) };
}

function rateLimitSteps(e: Explanation): ExplainStep[] {
  return e.steps.filter((s) => s.step === 'rate-limit');
}

const DESCRIPTORS = `    - name: per-service
      entries:
      - genericKey: {descriptorValue: reviews}
    - name: per-client
      entries:
      - remoteAddress: {}
      - sourceIdentity: {}
      - destinationService: {}
      - requestHeaders: {headerName: x-tenant, descriptorKey: tenant, skipIfAbsent: true}
    - name: per-plan
      entries:
      - requestHeaders: {headerName: x-plan, descriptorKey: plan}
`;

test('the descriptors explain lists are those the rate limit service receives for the request; a local bucket comes first', async () => {
  const rls = await startRateLimitService({ counters: new MapCounters(), perMinute: { generic_key: 100 } });
  const local = `---
apiVersion: ambit.dev/v1alpha1
kind: RateLimit
metadata: {name: reviews-local, namespace: bookinfo}
spec:
  targetRef: {kind: Service, name: reviews}
  tokenBucket: {maxTokens: 50, tokensPerFill: 50, fillInterval: 1s}
`;
  const agent = await inboundHarness(globalRateLimitYaml('reviews-global', rls.port, 'mesh', ['timeout: 2s'], DESCRIPTORS) + local);
  try {
    const answer = await agent.request('/reviews/1', { 'x-tenant': 'acme' });
    assert.equal(answer.status, 200);
    const e = explainAdmissionOnly(onNodeB(agent.snapshot()), 'node-b', admission('/reviews/1', [['x-tenant', 'acme']]));
    assert.equal(e.verdict, 'allow', 'as the request was answered');
    const [bucket, global] = rateLimitSteps(e);
    assert.equal(bucket?.outcome, 'local-bucket');
    assert.equal(bucket?.decidedBy.object, 'RateLimit bookinfo/reviews-local');
    assert.equal(global?.outcome, 'global');
    assert.equal(global?.decidedBy.object, 'RateLimit bookinfo/reviews-global');
    assert.match(global?.decidedBy.from ?? '', /^mesh\.yaml:\d+$/);
    assert.match(global!.details[0]!, new RegExp(`^decided by the rate limit service at 127\\.0\\.0\\.1:${rls.port}, failure mode allow: if it does not answer within 2000 ms the request is let through$`));
    assert.match(global!.details[1]!, /^route default, domain mesh: OVER_LIMIT is answered 429/);

    // What the service received for the request, descriptor by descriptor, in the form explain prints.
    assert.equal(rls.requests.length, 1, 'one call, by the request; explaining called nothing');
    const received = rls.requests[0]!.descriptors.map((d) => d.entries.map((x) => `${x.key}=${x.value}`).join(', '));
    const listed = global!.details.filter((d) => d.startsWith('descriptor '));
    assert.deepEqual(
      listed.filter((d) => !d.includes('not sent')).map((d) => d.replace(/^descriptor [^:]+: /, '')),
      received,
    );
    assert.deepEqual(listed, [
      'descriptor per-service: generic_key=reviews',
      `descriptor per-client: remote_address=10.244.1.10, source_identity=${PRODUCTPAGE}, destination_service=reviews.bookinfo.svc.cluster.local, tenant=acme`,
      'descriptor per-plan: not sent (the request has no x-plan header)',
    ]);
  } finally {
    await agent.close();
    await rls.close();
  }
});

/** A RateLimit whose service is a mesh Service no pod backs: the agent cannot call it. */
const unbackedYaml = (failureMode: 'allow' | 'deny'): string => `
apiVersion: v1
kind: Service
metadata: {name: ratelimit, namespace: bookinfo}
spec: {clusterIP: 10.96.0.81, selector: {app: ratelimit}, ports: [{name: grpc, port: 8081, targetPort: 8081}]}
---
apiVersion: ambit.dev/v1alpha1
kind: RateLimit
metadata: {name: reviews-global, namespace: bookinfo}
spec:
  targetRef: {kind: Service, name: reviews}
  global:
    service: bookinfo/ratelimit.bookinfo.svc.cluster.local
    port: 8081
    domain: mesh
    failureMode: ${failureMode}
    descriptors:
    - name: per-service
      entries: [{genericKey: {descriptorValue: reviews}}]
`;

test('a rate limit service with no ready endpoint: under failureMode deny the client gets 500 and explain says deny, with the fix; under allow, 200 and allow', async () => {
  const deny = await inboundHarness(unbackedYaml('deny'));
  try {
    const answer = await deny.request('/reviews/1');
    assert.equal(answer.status, 500);
    const e = explainAdmissionOnly(onNodeB(deny.snapshot()), 'node-b', admission('/reviews/1', []));
    assert.equal(e.verdict, 'deny', 'as the client was answered 500');
    const [step] = rateLimitSteps(e);
    assert.equal(step?.outcome, 'service-unavailable');
    assert.equal(step?.ends, 'deny');
    assert.match(step!.details[0]!, /ratelimit\.bookinfo\.svc\.cluster\.local:8081 has no ready endpoint on port 8081: the agent cannot ask it, so the client gets 500 \(flag RLSE/);
    assert.match(e.fix ?? '', /RateLimit bookinfo\/reviews-global \(mesh\.yaml:\d+\) has no ready endpoint and spec\.global\.failureMode is deny/);
  } finally {
    await deny.close();
  }
  const allow = await inboundHarness(unbackedYaml('allow'));
  try {
    assert.equal((await allow.request('/reviews/1')).status, 200);
    const e = explainAdmissionOnly(onNodeB(allow.snapshot()), 'node-b', admission('/reviews/1', []));
    assert.equal(e.verdict, 'allow', 'as the request was answered 200');
    const [step] = rateLimitSteps(e);
    assert.equal(step?.outcome, 'service-unavailable');
    assert.equal(step?.ends, undefined);
    assert.match(step!.details[0]!, /so the request is let through unlimited \(failure mode allow\)/);
  } finally {
    await allow.close();
  }
});

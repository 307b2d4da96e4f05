// The istiod CA client against a real gRPC CA over TLS on loopback (test/fixtures/istiod/ca-server.ts,
// issuing with the embedded CA): the request ztunnel sends (P-256 CSR with one URI SAN, lifetime,
// ImpersonatedIdentity, bearer token, clusterid), istiod's refusals as results with clear messages,
// and retries with backoff through the certificate manager.

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { type CertificateEvent, WorkloadCertificateManager } from '../../agent/identity/certificate-manager.js';
import { verifyWorkloadCsr } from '../../agent/identity/csr.js';
import { EmbeddedCa } from '../../agent/identity/embedded-ca.js';
import { IstioCaClient, type IstioCaClientOptions } from '../../agent/identity/istio-ca-client.js';
import { spiffeIdOfCertificate } from '../../agent/identity/san.js';
import { type SpiffeId, spiffeId } from '../../agent/state/model.js';
import { FakeIstiodCa } from '../fixtures/istiod/ca-server.js';
import { ISTIOD_NAME, type IstiodTls, makeIstiodTls } from '../fixtures/istiod/tls.js';
import { makePluggedInCa, tempDir } from '../fixtures/identity/test-ca.js';
import { createWorkloadCsr } from '../../agent/identity/csr.js';

const TD = 'cluster.local';
const NODE = 'node-a';
const CLUSTER = 'Kubernetes';
const AGENT_TOKEN = 'token-of-the-node-agent';
const AGENT_ID = spiffeId(TD, 'istio-system', 'ztunnel');
const PRODUCTPAGE = spiffeId(TD, 'bookinfo', 'productpage');
const ELSEWHERE = spiffeId(TD, 'bookinfo', 'reviews');

describe('IstioCaClient against a gRPC CA', () => {
  let tls: IstiodTls;
  let server: FakeIstiodCa;
  let address: string;
  let tokenFile: string;
  let options: IstioCaClientOptions;
  const onNode = new Map<string, Set<SpiffeId>>([[NODE, new Set([PRODUCTPAGE])]]);

  before(async () => {
    tls = await makeIstiodTls();
    const ca = await EmbeddedCa.open({ stateDir: join(tls.dir, 'state'), pluggedInDir: tls.ca.dir, trustDomain: TD, identitiesOnNode: (node) => onNode.get(node) ?? new Set() });
    assert.ok(ca.ok, ca.ok ? '' : ca.error.message);
    server = new FakeIstiodCa(tls, ca.value, CLUSTER);
    server.tokens.set(AGENT_TOKEN, { node: NODE, identity: AGENT_ID, trustedNodeAgent: true });
    address = await server.start();
    tokenFile = join(tls.dir, 'istio-token');
    await writeFile(tokenFile, `${AGENT_TOKEN}\n`);
    options = { address, rootCertFile: tls.rootCertFile, tokenFile, clusterId: CLUSTER, tlsServerName: ISTIOD_NAME };
  });

  after(async () => {
    await server.stop();
    await rm(tls.dir, { recursive: true, force: true });
  });

  it('sends ztunnel\'s request and gets a chain for the impersonated identity', async () => {
    const client = new IstioCaClient(options);
    try {
      const csr = await createWorkloadCsr(PRODUCTPAGE);
      const answer = await client.requestCertificate(csr.csrPem, PRODUCTPAGE, 3600);
      assert.ok(answer.ok, answer.ok ? '' : answer.error.message);
      assert.ok(answer.value.length >= 2, 'leaf first, root last');
      const leaf = new X509Certificate(answer.value[0]!);
      const named = spiffeIdOfCertificate(leaf);
      assert.ok(named.ok && named.value === PRODUCTPAGE);
      const lifetime = (Date.parse(leaf.validTo) - Date.now()) / 1000;
      assert.ok(lifetime > 3500 && lifetime <= 3600, `leaf lives ${lifetime} s`);
      assert.equal(answer.value.at(-1)!.trim(), tls.ca.rootPem.trim());

      const call = server.calls.at(-1)!;
      assert.equal(call.metadata.get('authorization')[0], `Bearer ${AGENT_TOKEN}`);
      assert.equal(call.metadata.get('clusterid')[0], CLUSTER);
      assert.deepEqual(call.request.metadata, { ImpersonatedIdentity: PRODUCTPAGE });
      assert.equal(call.request.validityDuration, 3600n);
      // The CSR on the wire: P-256, exactly one URI SAN naming the identity.
      const verified = await verifyWorkloadCsr(call.request.csr, PRODUCTPAGE);
      assert.ok(verified.ok, verified.ok ? '' : verified.error.message);
    } finally {
      client.close();
    }
  });

  it('reports istiod\'s refusal to impersonate an identity that is not on this node', async () => {
    const client = new IstioCaClient(options);
    try {
      const answer = await client.requestCertificate((await createWorkloadCsr(ELSEWHERE)).csrPem, ELSEWHERE, 3600);
      assert.ok(!answer.ok);
      assert.equal(answer.error.reason, 'not-authorized');
      assert.match(answer.error.message, /UNAUTHENTICATED: request impersonation authentication failure: node node-a asked for spiffe:\/\/cluster.local\/ns\/bookinfo\/sa\/reviews/);
    } finally {
      client.close();
    }
  });

  it('reports a refused token, a wrong cluster id, a missing token file and a missing root file', async () => {
    const badToken = join(tls.dir, 'bad-token');
    await writeFile(badToken, 'not-a-token');
    const csr = (await createWorkloadCsr(PRODUCTPAGE)).csrPem;
    const cases: [Partial<IstioCaClientOptions>, string, RegExp][] = [
      [{ tokenFile: badToken }, 'not-authorized', /UNAUTHENTICATED: authenticate failure: no valid bearer token; istiod refused our token/],
      [{ clusterId: 'other-cluster' }, 'not-authorized', /unknown cluster "other-cluster"/],
      [{ tokenFile: join(tls.dir, 'absent-token') }, 'not-authorized', /cannot read the service-account token .*absent-token.*istio-token volume/],
      [{ rootCertFile: join(tls.dir, 'absent-root.pem') }, 'ca-files', /cannot read istiod's root certificate .*absent-root.pem/],
    ];
    for (const [override, reason, message] of cases) {
      const client = new IstioCaClient({ ...options, ...override });
      try {
        const answer = await client.requestCertificate(csr, PRODUCTPAGE, 3600);
        assert.ok(!answer.ok, JSON.stringify(override));
        assert.equal(answer.error.reason, reason, answer.error.message);
        assert.match(answer.error.message, message);
      } finally {
        client.close();
      }
    }
  });

  it('refuses an istiod whose certificate does not chain to the configured root', async () => {
    const other = await makePluggedInCa(join(tls.dir, 'other-ca'), { intermediate: false });
    const otherRoot = join(tls.dir, 'other-root.pem');
    await writeFile(otherRoot, other.rootPem);
    const client = new IstioCaClient({ ...options, rootCertFile: otherRoot, timeoutMs: 3000 });
    try {
      const answer = await client.requestCertificate((await createWorkloadCsr(PRODUCTPAGE)).csrPem, PRODUCTPAGE, 3600);
      assert.ok(!answer.ok);
      assert.equal(answer.error.reason, 'ca-unavailable');
      assert.match(answer.error.message, /UNAVAILABLE/);
      assert.equal(server.calls.filter((c) => c.metadata.get('authorization')[0] === undefined).length, 0);
    } finally {
      client.close();
    }
  });

  it('retries through the certificate manager with backoff while istiod fails, then installs the certificate', async () => {
    server.failNext.push({ code: grpc.status.UNAVAILABLE, details: 'overloaded (test)' }, { code: grpc.status.UNAVAILABLE, details: 'overloaded (test)' });
    const client = new IstioCaClient(options);
    const manager = new WorkloadCertificateManager({ caClient: client, ttlSeconds: 3600, retry: { initialMs: 100, maxMs: 1000, jitter: 0 } });
    const events: (CertificateEvent & { at: number })[] = [];
    manager.subscribe((e) => events.push({ ...e, at: Date.now() }));
    const callsBefore = server.calls.length;
    try {
      const first = await manager.fetch(PRODUCTPAGE);
      assert.ok(!first.ok);
      assert.equal(first.error.reason, 'ca-unavailable');
      assert.match(first.error.message, /UNAVAILABLE: overloaded \(test\); is istiod running at 127\.0\.0\.1:\d+/);
      const deadline = Date.now() + 5000;
      while (!events.some((e) => e.type === 'issued') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const failed = events.filter((e) => e.type === 'failed');
      assert.deepEqual(failed.map((e) => (e.type === 'failed' ? e.retryInMs : 0)), [100, 200]);
      assert.ok(events.some((e) => e.type === 'issued'), 'issued after the CA recovered');
      const calls = server.calls.slice(callsBefore);
      assert.deepEqual(calls.map((c) => c.outcome), [grpc.status.UNAVAILABLE, grpc.status.UNAVAILABLE, 'issued']);
      assert.ok(calls[1]!.at - calls[0]!.at >= 90, `second try after ${calls[1]!.at - calls[0]!.at} ms`);
      assert.ok(calls[2]!.at - calls[1]!.at >= 190, `third try after ${calls[2]!.at - calls[1]!.at} ms`);
      assert.equal(manager.current(PRODUCTPAGE)?.identity, PRODUCTPAGE);
    } finally {
      manager.close();
      client.close();
    }
  });

  it('reads the token file on every request (kubelet rotates projected tokens)', async () => {
    const rotating = join(tls.dir, 'rotating-token');
    await writeFile(rotating, 'stale-token');
    const client = new IstioCaClient({ ...options, tokenFile: rotating });
    try {
      const csr = (await createWorkloadCsr(PRODUCTPAGE)).csrPem;
      const before = await client.requestCertificate(csr, PRODUCTPAGE, 3600);
      assert.ok(!before.ok && before.error.reason === 'not-authorized');
      await writeFile(rotating, AGENT_TOKEN);
      const afterRotation = await client.requestCertificate(csr, PRODUCTPAGE, 3600);
      assert.ok(afterRotation.ok, afterRotation.ok ? '' : afterRotation.error.message);
    } finally {
      client.close();
    }
  });

  it('says where istiod is when nothing answers there', async () => {
    const dir = await tempDir('ca-down');
    const client = new IstioCaClient({ ...options, address: '127.0.0.1:1', timeoutMs: 2000 });
    try {
      const answer = await client.requestCertificate((await createWorkloadCsr(PRODUCTPAGE)).csrPem, PRODUCTPAGE, 3600);
      assert.ok(!answer.ok);
      assert.equal(answer.error.reason, 'ca-unavailable');
      assert.match(answer.error.message, /istiod's CA at 127\.0\.0\.1:1 did not issue a certificate for spiffe:\/\/cluster\.local\/ns\/bookinfo\/sa\/productpage: (UNAVAILABLE|DEADLINE_EXCEEDED)/);
    } finally {
      client.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

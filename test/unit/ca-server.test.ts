// `ambit ca` in-process on loopback: a real gRPC server over TLS (agent/ca/ca-server.ts) with the
// agent's own Istio CA client, against the lab's kube-apiserver stand-in (list/watch pods, TokenReview
// of pod-bound tokens it issued). Who may obtain which identity: the agent of a node, for the pods of
// that node, with a token for audience istio-ca; a CSR of ztunnel's shape; and an agent that keeps
// its certificates while the CA is down and renews once it is back.

import assert from 'node:assert/strict';
import { randomBytes, webcrypto } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tls from 'node:tls';
import { CaServer, type CaServerConfig } from '../../agent/ca/ca-server.js';
import { CA_AUDIENCE, callerOf } from '../../agent/ca/token-review.js';
import { type CertificateEvent, WorkloadCertificateManager } from '../../agent/identity/certificate-manager.js';
import { createWorkloadCsr } from '../../agent/identity/csr.js';
import { IstioCaClient } from '../../agent/identity/istio-ca-client.js';
import { x509 } from '../../agent/identity/pki.js';
import { acceptCaResponse } from '../../agent/identity/workload-certificate.js';
import { FakeApiServer } from '../../agent/lab/kube-apiserver.js';
import type { KubeObject } from '../../agent/lab/kube-resources.js';
import { API_SERVER_AUDIENCE, type BoundToken, issueServiceAccountToken } from '../../agent/lab/service-account-tokens.js';
import { KubeApiClient } from '../../agent/sources/kubernetes/api-client.js';
import { type SpiffeId, spiffeId } from '../../agent/state/model.js';
import { createLogger } from '../../agent/telemetry/log.js';
import { type TestCa, makePluggedInCa, tempDir } from '../fixtures/identity/test-ca.js';

const TD = 'cluster.local';
const ADMIN = 'admin-token-of-the-ca';
const CA_NAME = 'ambit-ca.ambit-system.svc';
const PRODUCTPAGE = spiffeId(TD, 'bookinfo', 'productpage');
const REVIEWS = spiffeId(TD, 'bookinfo', 'reviews');
const RATINGS = spiffeId(TD, 'bookinfo', 'ratings');
const BOOKINFO_DEFAULT = spiffeId(TD, 'bookinfo', 'default');
const PAYMENTS = spiffeId(TD, 'payments', 'payments');
const AGENT_A_UID = '0a0a0a0a-0000-4000-8000-00000000000a';

function pod(namespace: string, name: string, node: string, serviceAccount: string | undefined, extra: { uid?: string; phase?: string; mirror?: boolean } = {}): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, ...(extra.uid ? { uid: extra.uid } : {}), ...(extra.mirror ? { annotations: { 'kubernetes.io/config.mirror': 'static-pod-hash' } } : {}) },
    spec: { nodeName: node, ...(serviceAccount ? { serviceAccountName: serviceAccount } : {}), containers: [{ name: 'app', image: 'app' }] },
    status: { phase: extra.phase ?? 'Running' },
  };
}

describe('ambit ca: IstioCertificateService with TokenReview and node authorization', () => {
  let dir: string;
  let ca: TestCa;
  let api: FakeApiServer;
  let kube: KubeApiClient;
  let server: CaServer;
  let config: CaServerConfig;
  const uids = new Map<string, string>();
  const key = randomBytes(32);
  const log = createLogger('fatal');

  const agentA: BoundToken = {
    namespace: 'ambit-system',
    serviceAccount: 'ambit',
    pod: { name: 'ambit-a', uid: AGENT_A_UID },
    node: 'node-a',
    audiences: [CA_AUDIENCE],
    expiresAt: new Date(Date.now() + 3600_000),
  };

  /** A client of the CA presenting `token`, as the agent's `--ca istiod --ca-address` does. */
  async function clientWith(token: BoundToken | string, name: string): Promise<IstioCaClient> {
    const tokenFile = join(dir, `token-${name}`);
    await writeFile(tokenFile, typeof token === 'string' ? token : issueServiceAccountToken(key, token));
    return new IstioCaClient({ address: `127.0.0.1:${server.port}`, rootCertFile: join(ca.dir, 'root-cert.pem'), tokenFile, tlsServerName: CA_NAME, timeoutMs: 5000 });
  }

  async function ask(client: IstioCaClient, identity: SpiffeId, csrPem?: string): Promise<{ ok: true; chain: readonly string[] } | { ok: false; message: string }> {
    try {
      const answer = await client.requestCertificate(csrPem ?? (await createWorkloadCsr(identity)).csrPem, identity, 3600);
      return answer.ok ? { ok: true, chain: answer.value } : { ok: false, message: answer.error.message };
    } finally {
      client.close();
    }
  }

  before(async () => {
    dir = await tempDir('ambit-ca');
    ca = await makePluggedInCa(join(dir, 'cacerts'), { intermediate: true });
    api = new FakeApiServer({ token: ADMIN, tokenReviewKey: key });
    api.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ambit-system' } });
    for (const object of [
      pod('ambit-system', 'ambit-a', 'node-a', 'ambit', { uid: AGENT_A_UID }),
      pod('ambit-system', 'ambit-b', 'node-b', 'ambit'),
      pod('bookinfo', 'productpage-1', 'node-a', 'productpage'),
      pod('bookinfo', 'reviews-1', 'node-b', 'reviews'),
      // A finished Job's pod: its node has no business with its identity any more.
      pod('bookinfo', 'ratings-migrate', 'node-a', 'ratings', { phase: 'Succeeded' }),
      // Static pods a compromised node-a writes: mirror pods name no ServiceAccount (NodeRestriction).
      pod('bookinfo', 'static-node-a', 'node-a', undefined, { mirror: true }),
      pod('payments', 'static-node-a', 'node-a', 'payments', { mirror: true }),
    ]) {
      uids.set(object.metadata.name, api.apply(object).metadata.uid!);
    }
    await api.start();
    kube = new KubeApiClient({ server: api.url, credentials: async () => ({ headers: { authorization: `Bearer ${ADMIN}` } }) });
    config = {
      host: '127.0.0.1',
      port: 0,
      caDir: ca.dir,
      trustDomain: TD,
      servingNames: [CA_NAME],
      servingTtlSeconds: 3600,
      trustedNodeAccounts: [{ namespace: 'ambit-system', name: 'ambit' }],
    };
    server = await CaServer.start(config, kube, log);
  });

  after(async () => {
    await server.stop(0);
    await api.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('issues the identity of a pod on the caller\'s node, chained to the mesh root', async () => {
    const csr = await createWorkloadCsr(PRODUCTPAGE);
    const client = await clientWith(agentA, 'a');
    const answer = await ask(client, PRODUCTPAGE, csr.csrPem);
    assert.ok(answer.ok, answer.ok ? '' : answer.message);
    const accepted = acceptCaResponse(PRODUCTPAGE, csr.keyPem, answer.chain);
    assert.ok(accepted.ok, accepted.ok ? '' : accepted.error.message);
    assert.equal(answer.chain.at(-1)!.trim(), ca.rootPem.trim());
    const review = api.requests.find((r) => r.method === 'POST' && r.path === '/apis/authentication.k8s.io/v1/tokenreviews');
    assert.equal(review?.authorization, `Bearer ${ADMIN}`, 'the CA reviews tokens with its own credentials');
  });

  it('refuses with PERMISSION_DENIED an identity no running pod of the caller\'s node has', async () => {
    // reviews runs on node-b only; ratings' only pod on node-a has finished; node-a's static pods
    // (mirror pods) give it no identity, not even the namespace's default.
    for (const identity of [REVIEWS, RATINGS, BOOKINFO_DEFAULT, PAYMENTS]) {
      const answer = await ask(await clientWith(agentA, 'a'), identity);
      assert.ok(!answer.ok, `${identity} must be refused to node-a`);
      assert.match(answer.message, new RegExp(`PERMISSION_DENIED: node node-a asked for ${identity} but no .*pod with that identity runs on node-a`));
    }
    // A token of the node-b agent gets reviews.
    const agentB: BoundToken = { ...agentA, pod: { name: 'ambit-b', uid: uids.get('ambit-b')! }, node: 'node-b' };
    const granted = await ask(await clientWith(agentB, 'b'), REVIEWS);
    assert.ok(granted.ok, granted.ok ? '' : granted.message);
  });

  it('refuses with PERMISSION_DENIED a caller that is not the node agents\' ServiceAccount', async () => {
    const productpageUid = uids.get('productpage-1')!;
    const workload: BoundToken = { namespace: 'bookinfo', serviceAccount: 'productpage', pod: { name: 'productpage-1', uid: productpageUid }, node: 'node-a', audiences: [CA_AUDIENCE], expiresAt: agentA.expiresAt };
    const answer = await ask(await clientWith(workload, 'workload'), PRODUCTPAGE);
    assert.ok(!answer.ok, 'a workload\'s own token must not get certificates for other pods');
    assert.match(answer.message, /PERMISSION_DENIED: ServiceAccount bookinfo\/productpage may not ask for certificates on behalf of pods; only the node agents' \(ambit-system\/ambit\) may/);
  });

  it("issues a pod its own identity when it asks without ImpersonatedIdentity (an east-west gateway), and no other", async () => {
    const productpageUid = uids.get('productpage-1')!;
    const own: BoundToken = { namespace: 'bookinfo', serviceAccount: 'productpage', pod: { name: 'productpage-1', uid: productpageUid }, node: 'node-a', audiences: [CA_AUDIENCE], expiresAt: agentA.expiresAt };
    const tokenFile = join(dir, 'token-own');
    await writeFile(tokenFile, issueServiceAccountToken(key, own));
    const self = (): IstioCaClient => new IstioCaClient({ address: `127.0.0.1:${server.port}`, rootCertFile: join(ca.dir, 'root-cert.pem'), tokenFile, tlsServerName: CA_NAME, timeoutMs: 5000, impersonate: false });
    const csr = await createWorkloadCsr(PRODUCTPAGE);
    const granted = await ask(self(), PRODUCTPAGE, csr.csrPem);
    assert.ok(granted.ok, granted.ok ? '' : granted.message);
    assert.ok(acceptCaResponse(PRODUCTPAGE, csr.keyPem, granted.chain).ok, 'the certificate names the pod\'s own identity');
    // A CSR for another identity is refused: the identity comes from the token, never from the request.
    const other = await ask(self(), REVIEWS, (await createWorkloadCsr(REVIEWS)).csrPem);
    assert.ok(!other.ok, 'a pod must not obtain another identity by its CSR');
    // A token bound to a pod that is gone gets nothing.
    await writeFile(tokenFile, issueServiceAccountToken(key, { ...own, pod: { name: 'productpage-gone', uid: productpageUid } }));
    const gone = await ask(self(), PRODUCTPAGE);
    assert.ok(!gone.ok);
    assert.match(gone.message, /UNAUTHENTICATED: .*productpage-gone .*no longer exists/);
  });

  it('refuses with UNAUTHENTICATED a bad, expired, wrong-audience or unbound token', async () => {
    const cases: [string, BoundToken | string, RegExp][] = [
      ['garbage', 'not-a-token', /UNAUTHENTICATED: the API server did not authenticate the token: \[invalid bearer token, token is not a JWT\]/],
      ['forged', issueServiceAccountToken(randomBytes(32), agentA), /UNAUTHENTICATED: .*signature is invalid/],
      ['expired', { ...agentA, expiresAt: new Date(Date.now() - 1000) }, /UNAUTHENTICATED: .*token has expired/],
      // Valid for the API server itself, as a default projected token is; never for the CA.
      ['api-audience', { ...agentA, audiences: [API_SERVER_AUDIENCE] }, /UNAUTHENTICATED: .*(audience|audiences)/],
      ['unbound', { namespace: agentA.namespace, serviceAccount: agentA.serviceAccount, audiences: [CA_AUDIENCE], expiresAt: agentA.expiresAt }, /UNAUTHENTICATED: the token of ambit-system\/ambit is not bound to a pod/],
      ['stale-pod', { ...agentA, pod: { name: 'ambit-a', uid: 'uid-of-a-pod-long-gone' } }, /UNAUTHENTICATED: .*no longer exists/],
    ];
    for (const [name, token, message] of cases) {
      const answer = await ask(await clientWith(token, name), PRODUCTPAGE);
      assert.ok(!answer.ok, `${name} token must be refused`);
      assert.match(answer.message, message, name);
    }
  });

  it('trusts a TokenReview only when the API server names the CA\'s audience back', () => {
    const user = { username: 'system:serviceaccount:ambit-system:ambit', extra: { 'authentication.kubernetes.io/pod-name': ['ambit-a'], 'authentication.kubernetes.io/pod-uid': [AGENT_A_UID] } };
    // A TokenReview server that is not audience-aware authenticates and names no audience.
    assert.equal(callerOf({ status: { authenticated: true, user, audiences: [] } }, CA_AUDIENCE).kind, 'unauthenticated');
    assert.equal(callerOf({ status: { authenticated: true, user } }, CA_AUDIENCE).kind, 'unauthenticated');
    assert.equal(callerOf({ status: { authenticated: true, user, audiences: [CA_AUDIENCE] } }, CA_AUDIENCE).kind, 'authenticated');
  });

  it('refuses with INVALID_ARGUMENT a CSR with another key type, a second SAN or a bad signature', async () => {
    const p384 = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, ['sign', 'verify']);
    const otherKey = await x509.Pkcs10CertificateRequestGenerator.create({
      keys: p384,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' },
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: PRODUCTPAGE }], true)],
    });
    const p256 = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const twoSans = await x509.Pkcs10CertificateRequestGenerator.create({
      keys: p256,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: PRODUCTPAGE }, { type: 'url', value: REVIEWS }], true)],
    });
    // The last byte of the DER is inside the signature: flipping it keeps the CSR readable, not valid.
    const der = Buffer.from((await createWorkloadCsr(PRODUCTPAGE)).csrPem.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
    der[der.length - 1] = der[der.length - 1]! ^ 0x01;
    const badSignature = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE REQUEST-----\n`;
    const cases: [string, string, RegExp][] = [
      ['P-384 key', otherKey.toString('pem'), /INVALID_ARGUMENT: the CSR for .* carries a ec secp384r1 key; workload keys must be ECDSA P-256/],
      ['second SAN', twoSans.toString('pem'), /INVALID_ARGUMENT: the CSR for .* must name exactly that one URI and nothing else/],
      ['bad signature', badSignature, /INVALID_ARGUMENT: the CSR for .* has a signature that does not verify with its own public key/],
    ];
    for (const [name, csrPem, message] of cases) {
      const answer = await ask(await clientWith(agentA, 'a'), PRODUCTPAGE, csrPem);
      assert.ok(!answer.ok, `a CSR with ${name} must be refused`);
      assert.match(answer.message, message, name);
    }
  });

  it('an agent keeps serving with its certificate while the CA is down and renews once it is back', async () => {
    const client = await clientWith(agentA, 'renewing');
    const manager = new WorkloadCertificateManager({ caClient: client, ttlSeconds: 6, retry: { initialMs: 200, maxMs: 400, jitter: 0 } });
    const events: CertificateEvent[] = [];
    const waiters: (() => void)[] = [];
    manager.subscribe((event) => {
      events.push(event);
      for (const wake of waiters.splice(0)) wake();
    });
    const waitFor = async (what: string, found: () => boolean, timeoutMs: number): Promise<void> => {
      const deadline = Date.now() + timeoutMs;
      while (!found()) {
        const left = deadline - Date.now();
        assert.ok(left > 0, `timed out waiting for ${what}; events: ${events.map((e) => e.type).join(', ')}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    };
    const tlsServer = tls.createServer({}, (socket) => socket.end('served'));
    try {
      const first = await manager.fetch(PRODUCTPAGE);
      assert.ok(first.ok, first.ok ? '' : first.error.message);
      const port = server.port;
      await server.stop(0);

      await waitFor('a failed renewal while the CA is down', () => events.some((e) => e.type === 'failed' && e.stillValid), 8000);
      const during = manager.current(PRODUCTPAGE);
      assert.equal(during?.serialNumber, first.value.serialNumber, 'the current certificate stays in use');
      // The data path builds its TLS contexts from current(): a peer still completes a handshake.
      tlsServer.setSecureContext({ key: during!.tls.key, cert: during!.tls.cert });
      await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve));
      const reply = await new Promise<string>((resolve, reject) => {
        const socket = tls.connect({ host: '127.0.0.1', port: (tlsServer.address() as AddressInfo).port, ca: during!.tls.ca, checkServerIdentity: () => undefined });
        let text = '';
        socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
        socket.once('end', () => resolve(text));
        socket.once('error', reject);
      });
      assert.equal(reply, 'served');

      server = await CaServer.start({ ...config, port }, kube, log);
      await waitFor('the renewal after the CA came back', () => events.some((e) => e.type === 'issued' && e.previous !== undefined), 8000);
      const renewed = manager.current(PRODUCTPAGE)!;
      assert.notEqual(renewed.serialNumber, first.value.serialNumber);
      assert.ok(renewed.notAfter.getTime() > first.value.notAfter.getTime(), 'the renewed certificate outlives the first');
      assert.ok(!events.some((e) => e.type === 'expired'), 'never without a valid certificate');
    } finally {
      manager.close();
      client.close();
      tlsServer.close();
    }
  });
});

// Issued identities on real node:tls: a TLS 1.3 mutual-TLS handshake where each side learns the
// other's SPIFFE id, and the refusals: a certificate from another root, an unexpected server identity,
// a peer from another trust domain.

import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type TLSSocket, type Server, connect, createServer } from 'node:tls';
import { createWorkloadCsr } from '../../agent/identity/csr.js';
import { EmbeddedCa } from '../../agent/identity/embedded-ca.js';
import type { IdentityResult } from '../../agent/identity/errors.js';
import { checkTrustDomain, expectServerIdentity, peerChainOf, verifyClientPeer, verifyPeerChain } from '../../agent/identity/peer-verification.js';
import { type WorkloadCertificate, acceptCaResponse } from '../../agent/identity/workload-certificate.js';
import { type SpiffeId, spiffeId } from '../../agent/state/model.js';
import { tempDir } from '../fixtures/identity/test-ca.js';

const TD = 'cluster.local';
const PRODUCTPAGE = spiffeId(TD, 'default', 'productpage');
const REVIEWS = spiffeId(TD, 'default', 'reviews');
const RATINGS = spiffeId(TD, 'default', 'ratings');

function unwrap<T>(result: IdentityResult<T>): T {
  if (!result.ok) assert.fail(`${result.error.reason}: ${result.error.message}`);
  return result.value;
}

async function issue(ca: EmbeddedCa, identity: SpiffeId): Promise<WorkloadCertificate> {
  const csr = await createWorkloadCsr(identity);
  return unwrap(acceptCaResponse(identity, csr.keyPem, unwrap(await ca.sign(csr.csrPem, { requestingNode: 'node-a', identity, ttlSeconds: 3600 }))));
}

/** An HBONE-like server: TLS 1.3 only, h2, client certificate required; answers with the client's identity. */
interface TestServer {
  readonly server: Server;
  readonly port: number;
  /** Connections that completed the handshake, refused by verifyClientPeer or not. */
  readonly accepted: { count: number };
}

/**
 * With `rejectUnauthorized`, node:tls drops unverified clients itself (silently); without it, every
 * client reaches verifyClientPeer, which says why it refuses.
 */
function startServer(cert: WorkloadCertificate, rejectUnauthorized = true): Promise<TestServer> {
  const accepted = { count: 0 };
  const server = createServer({ ...cert.tls, requestCert: true, rejectUnauthorized, minVersion: 'TLSv1.3', ALPNProtocols: ['h2'] }, (socket) => {
    accepted.count++;
    const peer = verifyClientPeer(socket, cert.rootsPem, TD);
    socket.end(peer.ok ? peer.value.identity : `refused: ${peer.error.message}`);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as AddressInfo).port, accepted })));
}

interface ClientOutcome {
  readonly socket?: TLSSocket;
  readonly reply?: string;
  readonly error?: Error;
}

function dial(port: number, cert: WorkloadCertificate, expected: SpiffeId, trustBundle: readonly string[] = cert.rootsPem): Promise<ClientOutcome> {
  return new Promise((resolve) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      ...cert.tls,
      ca: trustBundle.join(''),
      minVersion: 'TLSv1.3',
      ALPNProtocols: ['h2'],
      checkServerIdentity: expectServerIdentity(new Set([expected]), trustBundle),
    });
    let reply = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (reply += chunk));
    socket.on('end', () => resolve({ socket, reply }));
    socket.on('error', (error) => resolve({ error }));
  });
}

describe('mutual TLS with issued identities', () => {
  let dirs: string[] = [];
  let ca: EmbeddedCa;
  let foreignCa: EmbeddedCa;
  let server: TestServer;
  let serverCert: WorkloadCertificate;
  let clientCert: WorkloadCertificate;
  before(async () => {
    dirs = [await tempDir('tls'), await tempDir('tls-foreign')];
    const everyone = (): Set<SpiffeId> => new Set([PRODUCTPAGE, REVIEWS, RATINGS]);
    ca = unwrap(await EmbeddedCa.open({ stateDir: dirs[0]!, trustDomain: TD, identitiesOnNode: everyone }));
    // Same trust domain and the same root name: only the key tells the roots apart.
    foreignCa = unwrap(await EmbeddedCa.open({ stateDir: dirs[1]!, trustDomain: TD, identitiesOnNode: everyone }));
    serverCert = await issue(ca, REVIEWS);
    clientCert = await issue(ca, PRODUCTPAGE);
    server = await startServer(serverCert);
  });
  after(async () => {
    await new Promise((resolve) => server.server.close(resolve));
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('completes a TLS 1.3 h2 handshake in which each side reads the other\'s SPIFFE id', async () => {
    const outcome = await dial(server.port, clientCert, REVIEWS);
    assert.equal(outcome.error, undefined);
    assert.equal(outcome.socket?.getProtocol(), 'TLSv1.3');
    assert.equal(outcome.socket?.alpnProtocol, 'h2');
    assert.equal(outcome.reply, PRODUCTPAGE, 'the server read the client identity');
    const serverSide = unwrap(verifyPeerChain(peerChainOf(outcome.socket!.getPeerCertificate(true)), clientCert.rootsPem));
    assert.deepEqual(serverSide, { identity: REVIEWS, trustDomain: TD });
  });

  it('refuses a server that is not the identity expected', async () => {
    const outcome = await dial(server.port, clientCert, RATINGS);
    assert.equal(outcome.error?.message, `the server is ${REVIEWS}, expected ${RATINGS}`);
  });

  it('refuses a client whose certificate comes from another root', async () => {
    const intruder = await issue(foreignCa, PRODUCTPAGE);
    // The intruder trusts our root, so only the server's check can stop it.
    const acceptedBefore = server.accepted.count;
    const dropped = await dial(server.port, intruder, REVIEWS, serverCert.rootsPem);
    // In TLS 1.3 the client finishes first; the server's verdict is a close without a word.
    assert.ok(dropped.error !== undefined || dropped.reply === '', `the server answered ${dropped.reply}`);
    assert.equal(server.accepted.count, acceptedBefore, 'node:tls never handed the intruder to the application');

    const explaining = await startServer(serverCert, false);
    try {
      const refused = await dial(explaining.port, intruder, REVIEWS, serverCert.rootsPem);
      assert.equal(refused.reply, "refused: the client's certificate failed TLS verification: UNABLE_TO_VERIFY_LEAF_SIGNATURE");
    } finally {
      await new Promise((resolve) => explaining.server.close(resolve));
    }
  });

  it('refuses a server whose certificate comes from another root', async () => {
    const impostor = await startServer(await issue(foreignCa, REVIEWS));
    try {
      const outcome = await dial(impostor.port, clientCert, REVIEWS);
      assert.ok(outcome.error);
      // node:tls sends the root along with the leaf; it is simply not ours.
      assert.equal((outcome.error as NodeJS.ErrnoException).code, 'SELF_SIGNED_CERT_IN_CHAIN');
    } finally {
      await new Promise((resolve) => impostor.server.close(resolve));
    }
  });

  it('verifyPeerChain rejects another root\'s chain even where node:tls was not asked to', async () => {
    const intruder = await issue(foreignCa, PRODUCTPAGE);
    const result = verifyPeerChain([intruder.leafPem, ...intruder.rootsPem], clientCert.rootsPem);
    assert.ok(!result.ok);
    assert.equal(result.error.reason, 'untrusted-peer');
    assert.equal(
      result.error.message,
      `the peer's certificate does not chain to our trust bundle: the chain ends at "O=${TD}, CN=Ambit root CA", a root that is not among the trusted roots`,
    );
    const leafOnly = verifyPeerChain([intruder.leafPem], clientCert.rootsPem);
    assert.ok(!leafOnly.ok);
    assert.equal(
      leafOnly.error.message,
      `the peer's certificate does not chain to our trust bundle: nothing in the chain or the trust bundle signed the certificate for URI:${PRODUCTPAGE} (issuer O=${TD}, CN=Ambit root CA)`,
    );
  });

  it('refuses a CA certificate presented as a workload identity', () => {
    const result = verifyPeerChain(clientCert.rootsPem, clientCert.rootsPem);
    assert.ok(!result.ok);
    assert.equal(result.error.message, 'the peer presented a CA certificate as its own; workload certificates are never CAs');
  });

  it('checks the trust domain of a verified peer', () => {
    const peer = { identity: spiffeId('other.domain', 'default', 'x'), trustDomain: 'other.domain' };
    const result = checkTrustDomain(peer, TD);
    assert.ok(!result.ok);
    assert.equal(result.error.reason, 'unexpected-peer');
    assert.equal(result.error.message, `peer spiffe://other.domain/ns/default/sa/x is in trust domain other.domain, not ours (${TD})`);
  });

  it('measures a full mTLS handshake with SPIFFE checks on both sides', async () => {
    const n = 50;
    const started = performance.now();
    for (let i = 0; i < n; i++) assert.equal((await dial(server.port, clientCert, REVIEWS)).reply, PRODUCTPAGE);
    console.log(`# identity: ${((performance.now() - started) / n).toFixed(2)} ms per mTLS connection (handshake + both SPIFFE checks, mean of ${n})`);
  });
});

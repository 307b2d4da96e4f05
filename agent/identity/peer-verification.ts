// Who is on the other end of an mTLS connection: verify the peer's chain against our trust bundle and
// read its single SPIFFE id, then check it is in our trust domain (inbound, ztunnel's
// TrustDomainVerifier) or one of the identities we meant to reach (outbound, its IdentityVerifier).
// node:tls verifies the chain too when rejectUnauthorized is set; this is the SPIFFE half it lacks.

import { X509Certificate } from 'node:crypto';
import type { DetailedPeerCertificate, PeerCertificate, TLSSocket } from 'node:tls';
import type { SpiffeId } from '../state/model.js';
import { verifyChain } from './chain.js';
import { IdentityError, type IdentityResult, fail, messageOf, ok } from './errors.js';
import { splitPemCertificates } from './pki.js';
import { spiffeIdOfCertificate } from './san.js';
import { trustDomainOf } from './spiffe.js';

/** A peer's certificates, leaf first, as DER (node:tls `raw`) or PEM. */
export type PeerChain = readonly (Buffer | string)[];

export interface VerifiedPeer {
  readonly identity: SpiffeId;
  readonly trustDomain: string;
}

// Istio chains are leaf, up to two intermediates, root; a longer list is not worth parsing.
const MAX_PEER_CHAIN = 10;

/** Verifies `chain` leads to a root in `trustBundlePem` and returns the leaf's SPIFFE id. */
export function verifyPeerChain(chain: PeerChain, trustBundlePem: readonly string[], now: Date = new Date()): IdentityResult<VerifiedPeer> {
  if (chain.length === 0) return fail('untrusted-peer', 'the peer presented no certificate');
  if (chain.length > MAX_PEER_CHAIN) return fail('untrusted-peer', `the peer presented ${chain.length} certificates; at most ${MAX_PEER_CHAIN} are accepted`);
  let certs: X509Certificate[];
  let roots: X509Certificate[];
  try {
    certs = chain.map((item) => new X509Certificate(item));
    roots = trustBundlePem.flatMap(splitPemCertificates).map((pem) => new X509Certificate(pem));
  } catch (err) {
    return fail('untrusted-peer', `a certificate cannot be parsed: ${messageOf(err)}`);
  }
  const leaf = certs[0]!;
  if (leaf.ca) return fail('untrusted-peer', 'the peer presented a CA certificate as its own; workload certificates are never CAs');
  const verified = verifyChain(leaf, certs.slice(1), roots, now);
  if (!verified.ok) return fail('untrusted-peer', `the peer's certificate does not chain to our trust bundle: ${verified.problem}`);
  const identity = spiffeIdOfCertificate(leaf);
  if (!identity.ok) return fail('untrusted-peer', `the peer's certificate is unusable: ${identity.error.message}`);
  return ok({ identity: identity.value, trustDomain: trustDomainOf(identity.value) });
}

/** The chain node:tls received, leaf first, from `getPeerCertificate(true)`. */
export function peerChainOf(cert: DetailedPeerCertificate | PeerCertificate): Buffer[] {
  const chain: Buffer[] = [];
  let current: PeerCertificate | undefined = cert;
  while (current?.raw && chain.length <= MAX_PEER_CHAIN) {
    chain.push(current.raw);
    const issuer: DetailedPeerCertificate | undefined = 'issuerCertificate' in current ? (current as DetailedPeerCertificate).issuerCertificate : undefined;
    // node ends the list with a self-signed root that names itself as its issuer.
    if (!issuer || issuer === current || issuer.raw.equals(current.raw)) break;
    current = issuer;
  }
  return chain;
}

/**
 * Inbound: the client must have passed node:tls's verification and be in our own trust domain. With
 * `rejectUnauthorized: true` node:tls drops a refused client silently (the server sees only "socket
 * hang up"); a server that wants to log why uses `requestCert: true, rejectUnauthorized: false` and
 * this check, which then reports node's `authorizationError`.
 */
export function verifyClientPeer(socket: TLSSocket, trustBundlePem: readonly string[], trustDomain: string): IdentityResult<VerifiedPeer> {
  if (!socket.authorized) {
    const reason = socket.authorizationError === undefined ? 'it sent no certificate' : String(socket.authorizationError);
    return fail('untrusted-peer', `the client's certificate failed TLS verification: ${reason}`);
  }
  const peer = verifyPeerChain(peerChainOf(socket.getPeerCertificate(true)), trustBundlePem);
  if (!peer.ok) return peer;
  return checkTrustDomain(peer.value, trustDomain);
}

export function checkTrustDomain(peer: VerifiedPeer, trustDomain: string): IdentityResult<VerifiedPeer> {
  if (peer.trustDomain === trustDomain) return ok(peer);
  return fail('unexpected-peer', `peer ${peer.identity} is in trust domain ${peer.trustDomain}, not ours (${trustDomain})`);
}

/**
 * Outbound: a `checkServerIdentity` for tls.connect that accepts a server whose verified chain names
 * one of `expected` (the destination workload and its Service's SANs). node:tls's own check matches DNS
 * names and IPs, which SPIFFE certificates do not carry.
 */
export function expectServerIdentity(
  expected: ReadonlySet<SpiffeId>,
  trustBundlePem: readonly string[],
): (hostname: string, cert: PeerCertificate) => Error | undefined {
  return (_hostname, cert) => {
    const peer = verifyPeerChain(peerChainOf(cert), trustBundlePem);
    if (!peer.ok) return peer.error;
    if (expected.has(peer.value.identity)) return undefined;
    return new IdentityError('unexpected-peer', `the server is ${peer.value.identity}, expected ${[...expected].join(' or ')}`);
  };
}

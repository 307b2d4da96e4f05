// `ambit ca`'s CreateCertificate: authenticate the caller's token (TokenReview), find the node it
// speaks for, then let the CA sign the CSR for the ImpersonatedIdentity only if a pod with that
// identity runs there; a pod asking without ImpersonatedIdentity gets its own identity. Every refusal
// is a gRPC status with a message the agent's log can act on.

import * as grpc from '@grpc/grpc-js';
import type { EmbeddedCa } from '../identity/embedded-ca.js';
import type { IdentityErrorReason } from '../identity/errors.js';
import { IMPERSONATED_IDENTITY } from '../identity/istio-ca-api.js';
import type { IstioCertificateRequest, IstioCertificateResponse } from '../proto/istio/v1/auth/ca_pb.js';
import type { SpiffeId } from '../state/model.js';
import type { Logger } from '../telemetry/log.js';
import { type PodLookup, type ServiceAccountName, nodeOfCaller, podOfCaller } from './caller-node.js';
import type { TokenAuthenticator } from './token-review.js';

export interface CertificateServiceOptions {
  readonly authenticate: TokenAuthenticator;
  readonly ca: EmbeddedCa;
  readonly pods: PodLookup;
  readonly trustedNodeAccounts: readonly ServiceAccountName[];
  readonly log: Logger;
}

export type CertificateOutcome =
  | { readonly kind: 'issued'; readonly chain: readonly string[]; readonly node: string; readonly identity: SpiffeId }
  | { readonly kind: 'refused'; readonly code: grpc.status; readonly message: string };

/** The outcome of one request, decided in order: token, caller's node, request shape, then the CA's own checks. */
export async function createCertificate(options: CertificateServiceOptions, request: IstioCertificateRequest, authorization: string | undefined): Promise<CertificateOutcome> {
  const refuse = (code: grpc.status, message: string): CertificateOutcome => ({ kind: 'refused', code, message });
  const authenticated = await options.authenticate(authorization);
  if (authenticated.kind === 'unavailable') return refuse(grpc.status.UNAVAILABLE, authenticated.message);
  if (authenticated.kind === 'unauthenticated') return refuse(grpc.status.UNAUTHENTICATED, authenticated.message);

  const impersonated = request.metadata?.[IMPERSONATED_IDENTITY];
  const onBehalf = typeof impersonated === 'string' && impersonated !== '';
  // Without ImpersonatedIdentity a pod asks for its own identity, as workloads ask istiod (an east-west
  // gateway, which no node agent captures); on behalf of others only the node agents may ask.
  const caller = onBehalf ? nodeOfCaller(authenticated.caller, options.trustedNodeAccounts, options.pods) : podOfCaller(authenticated.caller, options.pods);
  if (caller.kind === 'unavailable') return refuse(grpc.status.UNAVAILABLE, caller.message);
  if (caller.kind === 'unauthenticated') return refuse(grpc.status.UNAUTHENTICATED, caller.message);
  if (caller.kind === 'permission-denied') return refuse(grpc.status.PERMISSION_DENIED, caller.message);
  const asked = caller.kind === 'node' ? { node: caller.node, identity: impersonated as SpiffeId } : { node: caller.pod.node, identity: caller.pod.identity };
  if (asked.identity === undefined) return refuse(grpc.status.PERMISSION_DENIED, `pod ${authenticated.caller.namespace}/${authenticated.caller.pod.name} has no identity of its own (no ServiceAccount, or a static pod)`);
  const identity = asked.identity;
  const ttl = request.validityDuration;
  if (ttl <= 0n || ttl > BigInt(Number.MAX_SAFE_INTEGER)) return refuse(grpc.status.INVALID_ARGUMENT, `validity_duration ${ttl} is not a positive number of seconds`);
  // The pod's own identity still passes the CA's node check: its pod runs on that node.
  const signed = await options.ca.sign(request.csr, { requestingNode: asked.node, identity, ttlSeconds: Number(ttl) });
  if (signed.ok) return { kind: 'issued', chain: signed.value, node: asked.node, identity };
  return refuse(statusOf(signed.error.reason), signed.error.message);
}

/** The grpc-js handler, with one log line per request. */
export function createCertificateHandler(options: CertificateServiceOptions): grpc.handleUnaryCall<IstioCertificateRequest, IstioCertificateResponse> {
  return (call, callback) => {
    const authorization = call.metadata.get('authorization')[0];
    const peer = call.getPeer();
    createCertificate(options, call.request, typeof authorization === 'string' ? authorization : undefined).then(
      (outcome) => {
        if (outcome.kind === 'refused') {
          options.log.warn({ peer, code: grpc.status[outcome.code] }, `refused a certificate request from ${peer}: ${outcome.message}`);
          callback({ code: outcome.code, details: outcome.message });
          return;
        }
        options.log.info({ peer, node: outcome.node, identity: outcome.identity }, `issued a certificate for ${outcome.identity} to node ${outcome.node}`);
        // Istio's shape: one PEM certificate per entry, leaf first, root last.
        callback(null, { $typeName: 'istio.v1.auth.IstioCertificateResponse', certChain: [...outcome.chain] });
      },
      (err: unknown) => {
        options.log.error({ err, peer }, `a certificate request from ${peer} failed: ${(err as Error).message}`);
        callback({ code: grpc.status.INTERNAL, details: 'the CA failed while handling the request; see its log' });
      },
    );
  };
}

function statusOf(reason: IdentityErrorReason): grpc.status {
  switch (reason) {
    case 'not-authorized':
      return grpc.status.PERMISSION_DENIED;
    case 'invalid-csr':
    case 'invalid-request':
    case 'invalid-identity':
      return grpc.status.INVALID_ARGUMENT;
    default:
      return grpc.status.INTERNAL;
  }
}

// Projected ServiceAccount tokens as the lab's kube-apiserver stand-in issues and reviews them: a JWT
// bound to a pod (and its node) for a list of audiences, with an expiry, and the TokenReview answer the
// real API server gives for one (authenticated, the audiences it matched, the pod and node as user
// extras). The lab signs with a key of its own (HS256); only the stand-in and the lab read it.

import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { EXTRA_NODE_NAME, EXTRA_POD_NAME, EXTRA_POD_UID } from '../ca/token-review.js';

/** The API server's own audience: what a token is for when the review names none (kube-apiserver's default). */
export const API_SERVER_AUDIENCE = 'https://kubernetes.default.svc.cluster.local';

export interface BoundToken {
  readonly namespace: string;
  readonly serviceAccount: string;
  /** The pod the token is bound to; undefined for a token bound to nothing (as a legacy Secret token). */
  readonly pod?: { readonly name: string; readonly uid: string };
  readonly node?: string;
  readonly audiences: readonly string[];
  readonly expiresAt: Date;
}

/** TokenReview's status, as authentication.k8s.io/v1 defines it. */
export interface TokenReviewStatus {
  readonly authenticated: boolean;
  readonly user?: { readonly username: string; readonly uid: string; readonly groups: readonly string[]; readonly extra: Readonly<Record<string, readonly string[]>> };
  readonly audiences?: readonly string[];
  readonly error?: string;
}

interface Claims {
  iss: string;
  sub: string;
  aud: string[];
  exp: number;
  iat: number;
  jti: string;
  'kubernetes.io': { namespace: string; serviceaccount: { name: string }; pod?: { name: string; uid: string }; node?: { name: string } };
}

const ISSUER = 'https://kubernetes.default.svc.cluster.local';

export function issueServiceAccountToken(key: Buffer, token: BoundToken, now: Date = new Date()): string {
  const claims: Claims = {
    iss: ISSUER,
    sub: `system:serviceaccount:${token.namespace}:${token.serviceAccount}`,
    aud: [...token.audiences],
    exp: Math.floor(token.expiresAt.getTime() / 1000),
    iat: Math.floor(now.getTime() / 1000),
    jti: randomUUID(),
    'kubernetes.io': {
      namespace: token.namespace,
      serviceaccount: { name: token.serviceAccount },
      ...(token.pod ? { pod: { ...token.pod } } : {}),
      ...(token.node ? { node: { name: token.node } } : {}),
    },
  };
  const head = `${base64url({ alg: 'HS256', typ: 'JWT' })}.${base64url(claims)}`;
  return `${head}.${sign(key, head)}`;
}

/**
 * The TokenReview answer for `token`, as kube-apiserver gives it: the signature, the expiry, the
 * audiences (those asked for, else the API server's own) and, for a token bound to a pod, that the pod
 * still exists with the same UID.
 */
export function reviewServiceAccountToken(
  key: Buffer,
  token: string,
  requestedAudiences: readonly string[],
  podExists: (namespace: string, name: string, uid: string) => boolean,
  now: Date = new Date(),
): TokenReviewStatus {
  const refused = (error: string): TokenReviewStatus => ({ authenticated: false, error: `[invalid bearer token, ${error}]` });
  const parts = token.split('.');
  if (parts.length !== 3) return refused('token is not a JWT');
  const expected = Buffer.from(sign(key, `${parts[0]}.${parts[1]}`));
  const given = Buffer.from(parts[2]!);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return refused('signature is invalid');
  let claims: Claims;
  try {
    claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as Claims;
  } catch {
    return refused('claims are not JSON');
  }
  if (claims.exp * 1000 <= now.getTime()) return refused('token has expired');
  const wanted = requestedAudiences.length > 0 ? requestedAudiences : [API_SERVER_AUDIENCE];
  const audiences = wanted.filter((audience) => claims.aud.includes(audience));
  if (audiences.length === 0) return refused('token audiences is invalid for the target audiences');
  const bound = claims['kubernetes.io'];
  if (bound.pod && !podExists(bound.namespace, bound.pod.name, bound.pod.uid)) {
    return refused(`pod ${bound.namespace}/${bound.pod.name} (uid ${bound.pod.uid}) the token is bound to no longer exists`);
  }
  const extra: Record<string, string[]> = {};
  if (bound.pod) {
    extra[EXTRA_POD_NAME] = [bound.pod.name];
    extra[EXTRA_POD_UID] = [bound.pod.uid];
  }
  if (bound.node) extra[EXTRA_NODE_NAME] = [bound.node.name];
  return {
    authenticated: true,
    user: {
      username: claims.sub,
      uid: claims.jti,
      groups: ['system:serviceaccounts', `system:serviceaccounts:${bound.namespace}`, 'system:authenticated'],
      extra,
    },
    audiences,
  };
}

function base64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function sign(key: Buffer, data: string): string {
  return createHmac('sha256', key).update(data).digest('base64url');
}

// Who is calling the CA: the bearer token of each request, reviewed by the Kubernetes API server
// (TokenReview) for the CA's audience, as istiod authenticates ztunnel. Only a token bound to a pod
// names a caller: its ServiceAccount, its pod (name and UID) and, where the API server says, its node.

import type { KubeApiClient } from '../sources/kubernetes/api-client.js';

/** The audience ztunnel's projected token is made for (its chart's `audience: istio-ca`). */
export const CA_AUDIENCE = 'istio-ca';

export const TOKEN_REVIEWS_PATH = '/apis/authentication.k8s.io/v1/tokenreviews';
/** The user extras kube-apiserver attaches to a token bound to a pod. */
export const EXTRA_POD_NAME = 'authentication.kubernetes.io/pod-name';
export const EXTRA_POD_UID = 'authentication.kubernetes.io/pod-uid';
export const EXTRA_NODE_NAME = 'authentication.kubernetes.io/node-name';
const SERVICE_ACCOUNT_USER = /^system:serviceaccount:([^:]+):([^:]+)$/;
// A projected token is about 1 KiB; a header far longer is not one, and is not sent on to the API server.
const MAX_TOKEN_LENGTH = 16 * 1024;

export interface Caller {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly pod: { readonly name: string; readonly uid: string };
  /** The node the API server says the pod was on when the token was issued (Kubernetes 1.30+). */
  readonly node?: string;
}

export type Authentication =
  | { readonly kind: 'authenticated'; readonly caller: Caller }
  /** The token is missing, malformed, expired, for another audience, or not bound to a pod. */
  | { readonly kind: 'unauthenticated'; readonly message: string }
  /** The API server could not be asked; the caller should retry. */
  | { readonly kind: 'unavailable'; readonly message: string };

export type TokenAuthenticator = (authorization: string | undefined) => Promise<Authentication>;

/** Reviews each request's `authorization: Bearer <token>` with the API server behind `client`. */
export function tokenReviewAuthenticator(client: KubeApiClient, audience: string = CA_AUDIENCE): TokenAuthenticator {
  return async (authorization) => {
    const refuse = (message: string): Authentication => ({ kind: 'unauthenticated', message });
    if (authorization === undefined) return refuse('no authorization metadata: send "authorization: Bearer <projected ServiceAccount token>"');
    const match = /^Bearer (\S+)$/.exec(authorization);
    if (!match) return refuse('the authorization metadata is not "Bearer <token>"');
    const token = match[1]!;
    if (token.length > MAX_TOKEN_LENGTH) return refuse(`the bearer token is ${token.length} characters long; a ServiceAccount token is far shorter`);
    const answer = await client.create(TOKEN_REVIEWS_PATH, {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenReview',
      spec: { token, audiences: [audience] },
    });
    if (!answer.ok) return { kind: 'unavailable', message: `cannot review the token with the API server at ${client.server}: ${answer.error.message}` };
    return callerOf(answer.value, audience);
  };
}

/** Reads a TokenReview answer; everything in it is checked, nothing assumed. */
export function callerOf(review: unknown, audience: string): Authentication {
  const refuse = (message: string): Authentication => ({ kind: 'unauthenticated', message });
  const status = field(review, 'status');
  if (field(status, 'authenticated') !== true) {
    const error = field(status, 'error');
    return refuse(`the API server did not authenticate the token${typeof error === 'string' && error !== '' ? `: ${error}` : ''}`);
  }
  // An API server that is not audience-aware would authenticate a token made for any audience: only
  // one that names ours back has checked it (TokenReview's documented contract).
  const audiences = field(status, 'audiences');
  if (!Array.isArray(audiences) || !audiences.includes(audience)) {
    return refuse(`the token is not for audience ${audience} (the API server matched ${JSON.stringify(audiences ?? [])}); mount a token projected with audience ${audience}`);
  }
  const user = field(status, 'user');
  const username = field(user, 'username');
  const account = typeof username === 'string' ? SERVICE_ACCOUNT_USER.exec(username) : null;
  if (!account) return refuse(`the token belongs to ${JSON.stringify(username)}, not to a ServiceAccount`);
  const extra = field(user, 'extra');
  const podName = single(field(extra, EXTRA_POD_NAME));
  const podUid = single(field(extra, EXTRA_POD_UID));
  if (podName === undefined || podUid === undefined) {
    return refuse(`the token of ${account[1]}/${account[2]} is not bound to a pod; use a projected ServiceAccount token (serviceAccountToken volume), not a Secret's`);
  }
  const node = single(field(extra, EXTRA_NODE_NAME));
  return {
    kind: 'authenticated',
    caller: { namespace: account[1]!, serviceAccount: account[2]!, pod: { name: podName, uid: podUid }, ...(node !== undefined ? { node } : {}) },
  };
}

function field(value: unknown, name: string): unknown {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>)[name] : undefined;
}

function single(value: unknown): string | undefined {
  return Array.isArray(value) && value.length === 1 && typeof value[0] === 'string' && value[0] !== '' ? value[0] : undefined;
}

// Which node an authenticated caller speaks for (istiod's node authorization for ztunnel): only the
// node agents' ServiceAccount may ask on behalf of pods, and its token must be bound to a pod that
// still exists, with that UID and ServiceAccount, scheduled on a node. That node is the caller's; the
// identities it may obtain are those of the pods there (checked per request by the signing CA).

import type { Caller } from './token-review.js';
import type { IndexedPod } from './pod-index.js';

/** A ServiceAccount as `namespace/name`. */
export interface ServiceAccountName {
  readonly namespace: string;
  readonly name: string;
}

export interface PodLookup {
  readonly synced: boolean;
  pod(namespace: string, name: string): IndexedPod | undefined;
}

export type CallerNode =
  | { readonly kind: 'node'; readonly node: string }
  /** The token names a pod that is gone or differs: a stale or forged binding. */
  | { readonly kind: 'unauthenticated'; readonly message: string }
  /** A valid caller that may not ask for other identities. */
  | { readonly kind: 'permission-denied'; readonly message: string }
  /** The CA has not seen the cluster's pods yet; the caller should retry. */
  | { readonly kind: 'unavailable'; readonly message: string };

export function parseServiceAccountName(text: string): ServiceAccountName | undefined {
  const match = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-.a-z0-9]*[a-z0-9])?)$/.exec(text);
  return match ? { namespace: match[1]!, name: match[3]! } : undefined;
}

export function nodeOfCaller(caller: Caller, trustedNodeAccounts: readonly ServiceAccountName[], pods: PodLookup): CallerNode {
  const account = `${caller.namespace}/${caller.serviceAccount}`;
  if (!trustedNodeAccounts.some((t) => t.namespace === caller.namespace && t.name === caller.serviceAccount)) {
    const trusted = trustedNodeAccounts.map((t) => `${t.namespace}/${t.name}`).join(', ');
    return { kind: 'permission-denied', message: `ServiceAccount ${account} may not ask for certificates on behalf of pods; only the node agents' (${trusted}) may` };
  }
  const bound = podOfCaller(caller, pods);
  return bound.kind === 'pod' ? { kind: 'node', node: bound.pod.node } : bound;
}

export type CallerPod = { readonly kind: 'pod'; readonly pod: IndexedPod } | Exclude<CallerNode, { kind: 'node' }>;

/**
 * The running pod a token is bound to, scheduled on a node: who asks for its own identity (a workload
 * that is not captured, such as an east-west gateway, as workloads ask istiod), and where a node
 * agent's token comes from.
 */
export function podOfCaller(caller: Caller, pods: PodLookup): CallerPod {
  const account = `${caller.namespace}/${caller.serviceAccount}`;
  if (!pods.synced) return { kind: 'unavailable', message: 'the CA has not listed the cluster\'s pods yet; retry shortly' };
  const where = `pod ${caller.namespace}/${caller.pod.name}`;
  const pod = pods.pod(caller.namespace, caller.pod.name);
  if (!pod) return { kind: 'unauthenticated', message: `the token is bound to ${where}, which does not exist` };
  if (pod.uid !== caller.pod.uid) return { kind: 'unauthenticated', message: `the token is bound to ${where} with uid ${caller.pod.uid}, but that pod now has uid ${pod.uid}` };
  if (pod.serviceAccount !== caller.serviceAccount) {
    return { kind: 'unauthenticated', message: `the token is for ServiceAccount ${account}, but ${where} runs as ${pod.serviceAccount}` };
  }
  if (pod.node === '') return { kind: 'permission-denied', message: `${where} is not scheduled on a node` };
  if (caller.node !== undefined && caller.node !== pod.node) {
    return { kind: 'unauthenticated', message: `the token was issued on node ${caller.node}, but ${where} is on ${pod.node}` };
  }
  return { kind: 'pod', pod };
}

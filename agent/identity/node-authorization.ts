// Which identities a node may obtain: those of enrolled pods scheduled on it. This is istiod's rule for
// a node agent that asks on behalf of its pods ("impersonation"), so a compromised node cannot mint
// certificates for workloads it does not run.

import type { MeshSnapshot, SpiffeId } from '../state/model.js';
import { type IdentityResult, fail, ok } from './errors.js';

/** Consulted on every signing request; the agent answers it from the mesh snapshot in force. */
export type IdentitiesOnNode = (node: string) => ReadonlySet<SpiffeId>;

/** The identities of the enrolled workloads the snapshot places on `node`. */
export function enrolledIdentitiesOnNode(snapshot: MeshSnapshot | undefined, node: string): Set<SpiffeId> {
  const identities = new Set<SpiffeId>();
  for (const workload of snapshot?.workloads.values() ?? []) {
    if (workload.node === node && workload.enrollment.enrolled) identities.add(workload.identity);
  }
  return identities;
}

export function authorizeNode(identitiesOnNode: IdentitiesOnNode, node: string, identity: SpiffeId): IdentityResult<void> {
  if (identitiesOnNode(node).has(identity)) return ok(undefined);
  return fail('not-authorized', `node ${node} asked for ${identity} but no enrolled pod with that identity runs on ${node}`);
}

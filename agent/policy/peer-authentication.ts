// PeerAuthentication: which mTLS mode applies to a connection to a workload's port. Istio's order:
// a policy selecting the workload (its port-level setting first), then the namespace's policy, then
// the mesh-wide policy in the root namespace; UNSET defers to the next; PERMISSIVE when none decides.

import type { MtlsMode, PeerAuthenticationObject } from '../config/istio-security.js';
import { matchesLabels } from '../state/build.js';
import type { MeshSnapshot, Workload } from '../state/model.js';
import { ROOT_NAMESPACE } from './authorization.js';

export type EffectiveMtlsMode = Exclude<MtlsMode, 'UNSET'>;

export interface MtlsDecision {
  readonly mode: EffectiveMtlsMode;
  /** `namespace/name` of the policy that decided, or undefined for the default. */
  readonly policy?: string;
}

export function effectiveMtlsMode(snapshot: MeshSnapshot, workload: Workload, port: number): MtlsDecision {
  const policies = snapshot.istio.peerAuthentications;
  // When several policies share a level Istio uses the oldest; configuration order stands in for age.
  const workloadLevel = policies.find(
    (p) => p.metadata.namespace === workload.namespace && p.spec.selector !== undefined && matchesLabels(p.spec.selector.matchLabels, workload.labels),
  );
  const namespaceLevel = policies.find((p) => p.metadata.namespace === workload.namespace && p.spec.selector === undefined);
  const meshLevel = policies.find((p) => p.metadata.namespace === ROOT_NAMESPACE && p.spec.selector === undefined);

  const candidates: [MtlsMode | undefined, PeerAuthenticationObject | undefined][] = [
    [workloadLevel?.spec.portLevelMtls.find((p) => p.port === port)?.mode, workloadLevel],
    [workloadLevel?.spec.mtls.mode, workloadLevel],
    [namespaceLevel?.spec.mtls.mode, namespaceLevel],
    [meshLevel?.spec.mtls.mode, meshLevel],
  ];
  for (const [mode, policy] of candidates) {
    if (mode !== undefined && mode !== 'UNSET' && policy) return { mode, policy: `${policy.metadata.namespace}/${policy.metadata.name}` };
  }
  return { mode: 'PERMISSIVE' };
}

/** Whether a plaintext connection (no peer certificate) may reach the workload's port. */
export function acceptsPlaintext(decision: MtlsDecision): boolean {
  return decision.mode !== 'STRICT';
}

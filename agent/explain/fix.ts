// The smallest configuration change that would let a denied connection or request through, named by the
// object and field to edit, so that an operator can act on `ambit explain`'s answer directly.

import type { SpiffeId } from '../state/model.js';
import type { AdmissionDenial, AdmissionQuery } from './admission.js';
import { byObject } from './explanation.js';

export function fixFor(denial: AdmissionDenial, query: AdmissionQuery): string {
  switch (denial.kind) {
    case 'strict': {
      const where = denial.policy ? `PeerAuthentication ${denial.policy}` : 'the PeerAuthentication in force';
      return `the source sends plaintext: enroll it in the mesh (label its namespace or pod istio.io/dataplane-mode=ambient) so it connects over HBONE, or add portLevelMtls: {${denial.port}: {mode: PERMISSIVE}} to ${where} for ${denial.workload.key}`;
    }
    case 'denied': {
      const { object, from } = byObject(denial.policy);
      return `rule ${denial.rule} of ${object} (${from}) denies it: remove that rule, or narrow it (e.g. spec.rules[${denial.rule}].from[].source.notPrincipals: ["${principalOf(query.sourceIdentity) ?? '…'}"])`;
    }
    case 'unknown-provider':
      return `AuthorizationPolicy ${denial.policy} (CUSTOM) names provider ${JSON.stringify(denial.provider)}: define it under extensionProviders (envoyExtAuthzHttp or envoyExtAuthzGrpc) in the mesh config (ConfigMap istio-system/istio, key mesh), or correct spec.provider.name`;
    case 'rate-limit-service': {
      const { object, from } = byObject(denial.limit);
      return `the rate limit service ${denial.service} of ${object} (${from}) has no ready endpoint and spec.global.failureMode is deny: make the service's pods ready, correct spec.global.service or port, or set spec.global.failureMode: allow`;
    }
    case 'not-allowed': {
      const who = query.sourceIdentity
        ? `from: [{source: {principals: ["${principalOf(query.sourceIdentity)}"]}}]`
        : `from: [{source: {ipBlocks: ["${query.sourceIp}"]}}] (the source has no identity: it is not in the mesh)`;
      const ops = [`ports: ["${query.destination.port}"]`];
      if (denial.http && query.http) ops.push(`methods: ["${query.http.method}"]`, `paths: ["${query.http.path.split('?')[0]}"]`);
      const rule = `{${who}, to: [{operation: {${ops.join(', ')}}}]}`;
      const target = denial.allows[0];
      if (!target) return `no ALLOW policy matches ${denial.workload.key}: add one with the rule ${rule}`;
      const { object, from } = byObject(target);
      return `no ALLOW rule matches: add to spec.rules of ${object} (${from}) the rule ${rule}`;
    }
  }
}

/** The identity as policies write it: without `spiffe://`. */
function principalOf(identity: SpiffeId | undefined): string | undefined {
  return identity?.slice('spiffe://'.length);
}

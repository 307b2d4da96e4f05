// The destination side of `ambit explain`: PeerAuthentication for the port, then every AuthorizationPolicy
// in scope in Istio's evaluation order (CUSTOM, DENY, ALLOW, AUDIT) with the rule that matched or why none
// did, then the rate limits (explain/rate-limit.ts). The verdict comes from the functions the data path calls (admitInbound,
// authorizeRequest); the per-policy and per-rule lines come from the same evaluator, asked about one
// policy and one rule at a time, so that what is shown cannot drift from what is enforced.

import type { AuthorizationPolicyObject, AuthorizationRule } from '../config/istio-security.js';
import { requestHeaders } from '../l7/request.js';
import { DEFAULT_PATH_NORMALIZATION, type PathNormalization, normalizeOriginForm } from '../l7/request-target.js';
import { type AuthorizationDecision, type ConnectionAttributes, authorizeConnection, policiesFor } from '../policy/authorization.js';
import { type HttpAuthorizationAttributes, RBAC_DENIED_BODY, RBAC_DENIED_STATUS, authorizeRequest, customPolicyFor, requestPolicies } from '../policy/http-authorization.js';
import { jwtRulesFor } from '../policy/request-authentication.js';
import { serviceOf } from '../l7/proxy/inbound-request.js';
import { acceptsPlaintext, effectiveMtlsMode } from '../policy/peer-authentication.js';
import type { MeshSnapshot, SpiffeId, Workload } from '../state/model.js';
import type { Address } from '../tunnel/destination.js';
import { admitInbound } from '../tunnel/inbound-admission.js';
import { type ExplainStep, byDefault, byMeshObject, byObject } from './explanation.js';
import { type RateLimitServiceDenial, explainRateLimits } from './rate-limit.js';

/** An HTTP request as `--http 'GET /path' -H 'k: v'` gives it. */
export interface ExplainHttpRequest {
  readonly method: string;
  /** As the client sends it; normalized here as the data path normalizes it. */
  readonly path: string;
  /** Host / :authority as the client sends it. */
  readonly authority: string;
  readonly headers: readonly (readonly [string, string])[];
}

/** What the destination agent is asked: the connection as it arrives at the pod, and the request on it. */
export interface AdmissionQuery {
  readonly sourceIp: string;
  /** The identity the source's certificate proves over HBONE; absent: plaintext. */
  readonly sourceIdentity?: SpiffeId;
  /** The pod's address and port. */
  readonly destination: Address;
  readonly http?: ExplainHttpRequest;
}

/** How a denied policy decision looks to the fix finder. */
export type AdmissionDenial =
  | { readonly kind: 'strict'; readonly policy?: string; readonly workload: Workload; readonly port: number }
  | { readonly kind: 'denied'; readonly policy: AuthorizationPolicyObject; readonly rule: number }
  | { readonly kind: 'not-allowed'; readonly allows: readonly AuthorizationPolicyObject[]; readonly workload: Workload; readonly http: boolean }
  | { readonly kind: 'unknown-provider'; readonly policy: string; readonly provider: string }
  | RateLimitServiceDenial;

export interface AdmissionResult {
  readonly steps: readonly ExplainStep[];
  readonly denial?: AdmissionDenial;
}

export function explainAdmission(snapshot: MeshSnapshot, query: AdmissionQuery, normalization: PathNormalization = DEFAULT_PATH_NORMALIZATION): AdmissionResult {
  const dst = query.destination;
  const workload = snapshot.workloadsByIp.get(dst.ip);
  if (!workload || !workload.enrollment.enrolled) {
    const what = workload ? `${workload.key} is not in the mesh (${workload.enrollment.reason})` : `${dst.ip} is no pod of the mesh`;
    return {
      steps: [{ step: 'authorization', outcome: 'not-in-mesh', decidedBy: workload ? byMeshObject('Pod', workload.key, workload.source) : byDefault('outside the mesh'), details: [`${what}: no agent admits or refuses traffic to it`] }],
    };
  }
  const node = workload.node ?? '';
  const admission = admitInbound(snapshot, { node, sourceIp: query.sourceIp, ...(query.sourceIdentity ? { sourceIdentity: query.sourceIdentity } : {}), destination: dst, httpPerRequest: true });
  const steps: ExplainStep[] = [];

  const mtls = effectiveMtlsMode(snapshot, workload, dst.port);
  const paObject = mtls.policy ? snapshot.istio.peerAuthentications.find((p) => `${p.metadata.namespace}/${p.metadata.name}` === mtls.policy) : undefined;
  const plaintext = query.sourceIdentity === undefined;
  const refused = plaintext && !acceptsPlaintext(mtls);
  steps.push({
    step: 'peer-authentication',
    outcome: mtls.mode,
    decidedBy: paObject ? byObject(paObject) : byDefault('no PeerAuthentication applies: PERMISSIVE'),
    node,
    details: [
      plaintext
        ? refused
          ? `plaintext to ${workload.key}:${dst.port} is refused (STRICT): the inbound listener 15006 closes the connection`
          : `plaintext to ${workload.key}:${dst.port} is admitted (${mtls.mode})`
        : `mTLS over HBONE from ${query.sourceIdentity}: admitted whatever the mode`,
    ],
    ...(refused ? { ends: 'deny' as const } : {}),
  });
  if (refused) return { steps, denial: { kind: 'strict', ...(mtls.policy ? { policy: mtls.policy } : {}), workload, port: dst.port } };
  if (!admission.ok && admission.status === 503) {
    steps.push({ step: 'authorization', outcome: 'no-route', decidedBy: byDefault('the agent'), node, details: [admission.reason], ends: 'unreachable' });
    return { steps };
  }

  const attrs: ConnectionAttributes = { ...(query.sourceIdentity ? { sourceIdentity: query.sourceIdentity } : {}), sourceIp: query.sourceIp, destination: workload, destinationIp: dst.ip, destinationPort: dst.port };
  const perRequest = admission.ok && admission.httpProtocol !== undefined;
  let decide: (s: MeshSnapshot) => AuthorizationDecision = (s) => authorizeConnection(s, attrs);
  let inScope = policiesFor(snapshot, workload);
  const details: string[] = [];
  let path = '';
  let service: string | undefined;
  let unknownProvider: { policy: string; provider: string } | undefined;
  if (perRequest) {
    const request = query.http ?? { method: 'GET', path: '/', authority: `${dst.ip}:${dst.port}`, headers: [] };
    const normalized = normalizeOriginForm(request.path, normalization);
    path = normalized.ok ? normalized.path : request.path;
    const headers = requestHeaders(request.headers.flat());
    // As the inbound request path builds them (inbound-request.ts): the Service the request is for, which targetRefs policies name.
    const requested = serviceOf(snapshot, workload, dst.port, request.authority);
    service = requested?.hostname;
    const http: HttpAuthorizationAttributes = { ...attrs, method: request.method, authority: request.authority, path, headers, ...(requested ? { service: requested } : {}) };
    decide = (s) => authorizeRequest(s, http);
    inScope = requestPolicies(snapshot, http);
    details.push(`port ${dst.port} speaks ${admission.httpProtocol}: each request is authorized; this one is ${request.method} ${path} (Host ${request.authority})${query.http ? '' : ', as none was given (--http)'}`);
    if (jwtRulesFor(snapshot, { destination: workload, ...(requested ? { service: requested } : {}) }).length > 0) {
      details.push('a RequestAuthentication applies: the agent verifies a JWT first (an invalid one is 401); explain does not verify tokens, so request.auth and requestPrincipals are judged as without one');
    }
    const custom = customPolicyFor(snapshot, http);
    if (custom) {
      const known = snapshot.istio.meshConfig.extAuthzProviders.has(custom.provider);
      if (!known) unknownProvider = custom;
      details.push(
        known
          ? `CUSTOM ${custom.policy} matches: the agent asks ext_authz provider ${custom.provider} before DENY and ALLOW; its answer is not asked here`
          : `CUSTOM ${custom.policy} matches and names provider ${JSON.stringify(custom.provider)}, which MeshConfig does not define: the agent denies the request (403)`,
      );
    }
  } else {
    details.push(`port ${dst.port} is TCP to the destination agent: the connection is authorized as a whole (L4 attributes only)`);
  }
  // The verdict: exactly the data path's call (admitInbound made the same authorizeConnection call for an L4 port).
  // request-guard.ts denies what a CUSTOM policy with an unknown provider matches, before DENY and ALLOW.
  const decision: AuthorizationDecision = unknownProvider ? { allowed: false, reason: 'denied', policy: unknownProvider.policy } : decide(snapshot);
  details.push(...policyLines(snapshot, inScope, decide));
  const decidingPolicy = decision.policy ? inScope.find((p) => `${p.metadata.namespace}/${p.metadata.name}` === decision.policy) : undefined;
  const allows = inScope.filter((p) => p.spec.action === 'ALLOW');
  if (decision.allowed) {
    steps.push({ step: 'authorization', outcome: 'allowed', decidedBy: decidingPolicy ? byObject(decidingPolicy) : byDefault(`no ALLOW policy selects ${workload.key}: allowed`), node, details });
  } else {
    const seen = perRequest ? `the client gets ${RBAC_DENIED_STATUS} "${RBAC_DENIED_BODY}"` : plaintext ? 'the connection is closed' : 'the CONNECT is answered 401 and the client\'s connection is closed';
    details.push(seen);
    const outcome = decision.reason === 'denied' ? 'denied' : 'not-allowed';
    const decidedBy = decidingPolicy ? byObject(decidingPolicy) : allows[0] ? byObject(allows[0]) : byDefault('AuthorizationPolicy');
    steps.push({ step: 'authorization', outcome, decidedBy, node, details, ends: 'deny' });
    const denial: AdmissionDenial = unknownProvider
      ? { kind: 'unknown-provider', ...unknownProvider }
      : decision.reason === 'denied' && decidingPolicy
        ? { kind: 'denied', policy: decidingPolicy, rule: firstMatchingRule(snapshot, decidingPolicy, decide) ?? 0 }
        : { kind: 'not-allowed', allows, workload, http: perRequest };
    return { steps, denial };
  }
  if (perRequest) {
    // As the inbound request's rate-limit phase asks (inbound-request.ts): the tunnel's source, the request, its Service.
    const request = query.http ?? { method: 'GET', path: '/', authority: '', headers: [] };
    const limits = explainRateLimits(
      snapshot,
      {
        destination: workload,
        port: dst.port,
        ...(query.sourceIdentity ? { sourceIdentity: query.sourceIdentity } : {}),
        method: request.method,
        path,
        headers: requestHeaders(request.headers.flat()),
        sourceIp: query.sourceIp,
        ...(service ? { service } : {}),
      },
      node,
    );
    steps.push(...limits.steps);
    if (limits.denial) return { steps, denial: limits.denial };
  }
  return { steps };
}

const ORDER: readonly AuthorizationPolicyObject['spec']['action'][] = ['CUSTOM', 'DENY', 'ALLOW', 'AUDIT'];

/** One line per policy in scope, in evaluation order, and under it each rule's result. */
function policyLines(snapshot: MeshSnapshot, policies: readonly AuthorizationPolicyObject[], decide: (s: MeshSnapshot) => AuthorizationDecision): string[] {
  if (policies.length === 0) return ['no AuthorizationPolicy selects this pod'];
  const lines: string[] = [];
  for (const action of ORDER) {
    for (const policy of policies.filter((p) => p.spec.action === action)) {
      const { object, from } = byObject(policy);
      const note = action === 'CUSTOM' ? ` (CUSTOM: a match sends the request to ext_authz provider ${policy.spec.provider ?? '?'}; requests only)` : action === 'AUDIT' ? ' (AUDIT marks a matching request as audited; it never decides)' : '';
      lines.push(`${action} ${object} (${from})${note}`);
      if (policy.spec.rules.length === 0) lines.push(`  no rules: ${action === 'ALLOW' ? 'matches nothing' : 'matches nothing'}`);
      policy.spec.rules.forEach((rule, i) => lines.push(`  rule ${i}: ${ruleResult(snapshot, policy, rule, decide)}`));
    }
  }
  return lines;
}

/** Whether one rule matches, asked of the enforcing evaluator with that rule alone; and if not, which part fails. */
function ruleResult(snapshot: MeshSnapshot, policy: AuthorizationPolicyObject, rule: AuthorizationRule, decide: (s: MeshSnapshot) => AuthorizationDecision): string {
  if (ruleMatches(snapshot, policy, rule, decide)) return 'matches';
  const parts: [string, AuthorizationRule][] = [
    ['from', { from: rule.from, to: [], when: [] }],
    ['to', { from: [], to: rule.to, when: [] }],
    ['when', { from: [], to: [], when: rule.when }],
  ];
  const failing = parts.filter(([, part]) => !ruleMatches(snapshot, policy, part, decide)).map(([name]) => name);
  return `does not match (${failing.length > 0 ? `${failing.join(', ')} ${failing.length === 1 ? 'does' : 'do'} not hold` : 'only together'})`;
}

function firstMatchingRule(snapshot: MeshSnapshot, policy: AuthorizationPolicyObject, decide: (s: MeshSnapshot) => AuthorizationDecision): number | undefined {
  const i = policy.spec.rules.findIndex((r) => ruleMatches(snapshot, policy, r, decide));
  return i < 0 ? undefined : i;
}

/**
 * The evaluator on a snapshot whose only policy is `policy` with `rule` alone. DENY keeps its action
 * (a match denies); the others are asked as ALLOW (a match allows), which is how ALLOW decides and how
 * AUDIT and CUSTOM would match if they decided.
 */
function ruleMatches(snapshot: MeshSnapshot, policy: AuthorizationPolicyObject, rule: AuthorizationRule, decide: (s: MeshSnapshot) => AuthorizationDecision): boolean {
  const action = policy.spec.action === 'DENY' ? 'DENY' : 'ALLOW';
  const alone: AuthorizationPolicyObject = { ...policy, spec: { ...policy.spec, action, rules: [rule] } };
  const decision = decide({ ...snapshot, istio: { ...snapshot.istio, authorizationPolicies: [alone] } });
  return action === 'DENY' ? !decision.allowed && decision.reason === 'denied' : decision.allowed && decision.policy !== undefined;
}

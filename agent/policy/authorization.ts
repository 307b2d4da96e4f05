// L4 AuthorizationPolicy: may this connection reach this workload? Istio's semantics as ztunnel
// enforces them: policies from the root namespace and the workload's namespace that select it; any
// matching DENY denies; if any ALLOW applies, one must match; AUDIT and CUSTOM do not decide here.
// Rules that need HTTP to match (methods, paths, hosts, request.*) cannot match a bare connection:
// an ALLOW rule with them never matches, and a DENY rule is enforced on its L4 part alone, so that
// not seeing HTTP never widens what a policy lets through. The same evaluator decides each HTTP request
// when it is given that request's matchers (agent/policy/http-authorization.ts).

import type { AuthorizationPolicyObject, AuthorizationRule, Condition, Operation, Source } from '../config/istio-security.js';
import { matchesLabels } from '../state/build.js';
import type { MeshSnapshot, SpiffeId, Workload } from '../state/model.js';
import { ipInBlock } from '../system/ip-block.js';

// ipBlocks, remoteIpBlocks and the ip conditions of both evaluators match through this one function.
export { ipInBlock };

/** Istio's default root namespace: its policies apply mesh-wide. */
export const ROOT_NAMESPACE = 'istio-system';

export interface ConnectionAttributes {
  /** The peer's SPIFFE identity, proven by its certificate; undefined for plaintext. */
  readonly sourceIdentity?: SpiffeId;
  readonly sourceIp: string;
  readonly destination: Workload;
  readonly destinationIp: string;
  readonly destinationPort: number;
}

export type AuthorizationDecision =
  | { readonly allowed: true; readonly policy?: string }
  | { readonly allowed: false; readonly reason: 'denied' | 'not-allowed'; readonly policy?: string };

/** The policies that select a workload: root-namespace ones and its own namespace's, by selector. */
export function policiesFor(snapshot: MeshSnapshot, workload: Workload): AuthorizationPolicyObject[] {
  return snapshot.istio.authorizationPolicies.filter((p) => {
    const ns = p.metadata.namespace;
    if (ns !== ROOT_NAMESPACE && ns !== workload.namespace) return false;
    // targetRefs policies attach to a Service's requests (agent/policy/policy-targets.ts), not to its pods' connections.
    if (p.spec.targetRefs.length > 0) return false;
    const selector = p.spec.selector?.matchLabels;
    return selector === undefined || matchesLabels(selector, workload.labels);
  });
}

/** The decision for a connection whose bytes the agent does not read as HTTP (ztunnel's L4 semantics). */
export function authorizeConnection(snapshot: MeshSnapshot, attrs: ConnectionAttributes): AuthorizationDecision {
  return evaluateAuthorization(snapshot, attrs, L4_ONLY);
}

/**
 * How the parts of a rule that need HTTP are matched. Without a request (L4_ONLY) none can be: an ALLOW
 * never matches on them and a DENY ignores them. A request's matchers decide them for real.
 */
export interface HttpRuleMatchers {
  /** hosts, notHosts, methods, notMethods, paths, notPaths of one operation (its ports are matched here). */
  operation(o: Operation, mode: Mode): boolean;
  /** requestPrincipals, remoteIpBlocks and their negations of one source (the rest is matched here). */
  source(s: Source, mode: Mode): boolean;
  /** A `when` condition on a key this module does not decide from the connection (request.*, remote.ip, ...). */
  condition(c: Condition, mode: Mode): boolean;
}

export const L4_ONLY: HttpRuleMatchers = {
  operation: (o, mode) => [o.hosts, o.notHosts, o.methods, o.notMethods, o.paths, o.notPaths].every((values) => httpOnly(values, mode)),
  source: (s, mode) => [s.requestPrincipals, s.notRequestPrincipals, s.remoteIpBlocks, s.notRemoteIpBlocks].every((values) => httpOnly(values, mode)),
  condition: (_c, mode) => mode === 'deny',
};

/**
 * Istio's order: any matching DENY denies; then, if any ALLOW selects the workload, one must match.
 * `policies` defaults to those selecting the workload; a request adds the ones targeting its Service.
 */
export function evaluateAuthorization(
  snapshot: MeshSnapshot,
  attrs: ConnectionAttributes,
  http: HttpRuleMatchers,
  policies: readonly AuthorizationPolicyObject[] = policiesFor(snapshot, attrs.destination),
): AuthorizationDecision {
  const denied = matchingPolicies(policies, 'DENY', attrs, http)[0];
  if (denied) return { allowed: false, reason: 'denied', policy: policyName(denied) };
  const allows = policies.filter((p) => p.spec.action === 'ALLOW');
  if (allows.length === 0) return { allowed: true };
  const match = matchingPolicies(allows, 'ALLOW', attrs, http)[0];
  return match ? { allowed: true, policy: policyName(match) } : { allowed: false, reason: 'not-allowed' };
}

export function policyName(p: AuthorizationPolicyObject): string {
  return `${p.metadata.namespace}/${p.metadata.name}`;
}

/**
 * The policies of one action whose rules match. ALLOW matches strictly (what cannot be seen fails);
 * DENY, CUSTOM and AUDIT match broadly (what cannot be seen is ignored), as each must not be escaped
 * by hiding an attribute: a CUSTOM check or an audit record is taken whenever the rule may apply.
 */
export function matchingPolicies(
  policies: readonly AuthorizationPolicyObject[],
  action: AuthorizationPolicyObject['spec']['action'],
  attrs: ConnectionAttributes,
  http: HttpRuleMatchers,
): AuthorizationPolicyObject[] {
  const mode: Mode = action === 'ALLOW' ? 'allow' : 'deny';
  return policies.filter((p) => p.spec.action === action && p.spec.rules.some((r) => ruleMatches(r, context(attrs, mode, p, http))));
}

/** Which action's rule is being matched: an attribute Ambit cannot see fails an ALLOW and is ignored by a DENY. */
export type Mode = 'allow' | 'deny';

/** What one rule is matched against: the connection, the policy's action and namespace, the peer. */
interface MatchContext {
  readonly attrs: ConnectionAttributes;
  readonly mode: Mode;
  readonly policyNamespace: string;
  readonly peer?: PeerIdentity;
  readonly http: HttpRuleMatchers;
}

function context(attrs: ConnectionAttributes, mode: Mode, policy: AuthorizationPolicyObject, http: HttpRuleMatchers): MatchContext {
  const peer = attrs.sourceIdentity ? parseIdentity(attrs.sourceIdentity) : undefined;
  return { attrs, mode, policyNamespace: policy.metadata.namespace, ...(peer ? { peer } : {}), http };
}

function ruleMatches(rule: AuthorizationRule, ctx: MatchContext): boolean {
  const from = rule.from.length === 0 || rule.from.some((s) => sourceMatches(s, ctx));
  const to = rule.to.length === 0 || rule.to.some((o) => operationMatches(o, ctx));
  return from && to && rule.when.every((c) => conditionMatches(c, ctx));
}

/** A field that only HTTP can satisfy: never true for ALLOW, ignored (true) for DENY. */
export function httpOnly(values: readonly string[], mode: Mode): boolean {
  return values.length === 0 || mode === 'deny';
}

/** All of `values` is required to contain a match (if any are given), and none of `notValues` may match. */
export function field(values: readonly string[], notValues: readonly string[], matches: (v: string) => boolean): boolean {
  return (values.length === 0 || values.some(matches)) && !notValues.some(matches);
}

function sourceMatches(s: Source, ctx: MatchContext): boolean {
  const { peer, mode } = ctx;
  return (
    field(s.principals, s.notPrincipals, (p) => peer !== undefined && wildcardMatch(p, peer.principal)) &&
    field(s.namespaces, s.notNamespaces, (n) => peer !== undefined && wildcardMatch(n, peer.namespace)) &&
    field(s.serviceAccounts, s.notServiceAccounts, (a) => peer !== undefined && serviceAccountMatches(a, peer, ctx.policyNamespace)) &&
    field(s.ipBlocks, s.notIpBlocks, (b) => ipInBlock(ctx.attrs.sourceIp, b)) &&
    ctx.http.source(s, mode)
  );
}

function operationMatches(o: Operation, ctx: MatchContext): boolean {
  return (
    field(o.ports.map(String), o.notPorts.map(String), (p) => Number(p) === ctx.attrs.destinationPort) && ctx.http.operation(o, ctx.mode)
  );
}

function conditionMatches(c: Condition, ctx: MatchContext): boolean {
  const { attrs, peer } = ctx;
  const test = (matches: (v: string) => boolean): boolean => field(c.values, c.notValues, matches);
  switch (c.key) {
    case 'source.ip':
      return test((v) => ipInBlock(attrs.sourceIp, v));
    case 'destination.ip':
      return test((v) => ipInBlock(attrs.destinationIp, v));
    case 'destination.port':
      return test((v) => Number(v) === attrs.destinationPort);
    case 'source.namespace':
      return test((v) => peer !== undefined && wildcardMatch(v, peer.namespace));
    case 'source.principal':
      return test((v) => peer !== undefined && wildcardMatch(v, peer.principal));
    case 'source.serviceAccount':
      return test((v) => peer !== undefined && serviceAccountMatches(v, peer, ctx.policyNamespace));
    default:
      // request.*, remote.ip, connection.sni and the like need HTTP (or TLS): the request's matchers decide.
      return ctx.http.condition(c, ctx.mode);
  }
}

interface PeerIdentity {
  /** The identity without `spiffe://`, as policies write it. */
  readonly principal: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

function parseIdentity(id: SpiffeId): PeerIdentity | undefined {
  const principal = id.slice('spiffe://'.length);
  const match = /^[^/]+\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(principal);
  return match ? { principal, namespace: match[1]!, serviceAccount: match[2]! } : undefined;
}

/** Istio's string match: exact, `*` (anything, but something), `*suffix`, or `prefix*`. */
export function wildcardMatch(pattern: string, value: string): boolean {
  if (pattern === '*') return value !== '';
  if (pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  if (pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  return pattern === value;
}

/** `namespace/name`, or a bare name, which means a service account of the policy's own namespace. */
function serviceAccountMatches(account: string, peer: PeerIdentity, policyNamespace: string): boolean {
  const [ns, name] = account.includes('/') ? account.split('/', 2) : [policyNamespace, account];
  return name === peer.serviceAccount && ns === peer.namespace;
}


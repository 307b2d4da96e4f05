// L7 AuthorizationPolicy: may this HTTP request reach this workload? The destination agent asks once per
// request, with the peer identity its HBONE connection proved. The rule structure, the source and L4
// matching and the DENY-then-ALLOW order are agent/policy/authorization.ts's; this module adds what
// only a request has (hosts, methods, paths, request.headers).
//
// Choices, where Istio leaves one or where Ambit differs (docs/http-authorization.md says the same):
// - The path it is given is already the normalized target the pod receives (agent/l7/request-target.ts,
//   applied where the proxy reads the request); matching ignores the query string.
// - Hosts match the Host / :authority as sent, port included, case-insensitively ("reviews" does not
//   match "reviews:9080"; write "reviews:*" for that), as Istio does since CVE-2021-39155.
// - A repeated header is never joined into one string (Istio's sidecars join with ","): each value is
//   matched on its own, and the condition takes the strict reading for the action: an ALLOW condition
//   holds only when every value satisfies it, a DENY condition when any value does. With one value
//   (or none) this is exactly Istio's result; with several, sending a header twice never helps a client.
// - requestPrincipals, notRequestPrincipals and request.auth.* match what RequestAuthentication proved
//   (agent/policy/request-authentication.ts): `iss/sub`, the audiences, `azp` and the claims (nested with
//   `[a][b]`; a list claim matches when any element does). Without a token none of them is present.
// - connection.sni needs TLS inspection Ambit does not do: as ztunnel does for what it cannot see, an
//   ALLOW rule with it never matches, a DENY rule is enforced without it. remote.ip and remoteIpBlocks
//   are the connection's source address (Istio's default of no trusted proxies).
// - Besides the policies that select the workload, those whose targetRefs name the request's Service
//   apply (agent/policy/policy-targets.ts). CUSTOM and AUDIT policies are matched here and acted on by
//   agent/policy/request-guard.ts.

import type { Condition, Operation, Source } from '../config/istio-security.js';
import type { RequestHeaders } from '../l7/request.js';
import { type AppProtocol, portProtocol, speaksHttp } from '../state/protocol.js';
import type { MeshService, MeshSnapshot, Workload } from '../state/model.js';
import type { AuthorizationPolicyObject } from '../config/istio-security.js';
import type { JwtClaims } from './jwt.js';
import { policiesTargeting } from './policy-targets.js';
import {
  type AuthorizationDecision,
  type ConnectionAttributes,
  type HttpRuleMatchers,
  type Mode,
  evaluateAuthorization,
  field,
  ipInBlock,
  matchingPolicies,
  policiesFor,
  policyName,
  wildcardMatch,
} from './authorization.js';

/** The body (and status) Envoy's RBAC filter answers a denied request with; clients and tests look for it. */
export const RBAC_DENIED_BODY = 'RBAC: access denied';
export const RBAC_DENIED_STATUS = 403;

/** One request as policy sees it: the connection's attributes plus what HTTP says. */
export interface HttpAuthorizationAttributes extends ConnectionAttributes {
  readonly method: string;
  /** Host / :authority as the client sent it, or an absolute-form target's authority (may carry a port). */
  readonly authority: string;
  /** The normalized path (l7/request-target.ts), query string allowed (it is ignored). */
  readonly path: string;
  readonly headers: RequestHeaders;
  /** The Service the request is for (l7/proxy/inbound-http.ts serviceOf), which targetRefs policies name. */
  readonly service?: MeshService;
  /** What a valid JWT proved; absent when the request carried none. */
  readonly auth?: RequestAuth;
}

/** A request's authenticated JWT, as policies read it (request.auth.*). */
export interface RequestAuth {
  /** `iss/sub`. */
  readonly principal: string;
  readonly audiences: readonly string[];
  /** The `azp` claim. */
  readonly presenter?: string;
  readonly claims: JwtClaims;
  /** Claims matched word by word (the rule's spaceDelimitedClaims, `scope` and `permission`). */
  readonly spaceDelimitedClaims?: readonly string[];
}

/** The policies in force for a request: those selecting the workload, then those targeting its Service. */
export function requestPolicies(snapshot: MeshSnapshot, attrs: HttpAuthorizationAttributes): AuthorizationPolicyObject[] {
  const targeted = snapshot.istio.authorizationPolicies.filter((p) => p.spec.targetRefs.length > 0);
  return [...policiesFor(snapshot, attrs.destination), ...policiesTargeting(snapshot, targeted, attrs.service)];
}

/** The decision for one request. DENY policies first (any match denies), then ALLOW (one must match). */
export function authorizeRequest(snapshot: MeshSnapshot, attrs: HttpAuthorizationAttributes, policies = requestPolicies(snapshot, attrs)): AuthorizationDecision {
  return evaluateAuthorization(snapshot, attrs, requestMatchers(attrs), policies);
}

/** The first CUSTOM policy whose rules match the request: its provider decides before DENY and ALLOW. */
export function customPolicyFor(
  snapshot: MeshSnapshot,
  attrs: HttpAuthorizationAttributes,
  policies = requestPolicies(snapshot, attrs),
): { readonly policy: string; readonly provider: string } | undefined {
  const match = matchingPolicies(policies, 'CUSTOM', attrs, requestMatchers(attrs))[0];
  return match ? { policy: policyName(match), provider: match.spec.provider ?? '' } : undefined;
}

/** The AUDIT policies whose rules match: the request is logged as audited by them, and decided as if they did not exist. */
export function auditingPolicies(snapshot: MeshSnapshot, attrs: HttpAuthorizationAttributes, policies = requestPolicies(snapshot, attrs)): string[] {
  return matchingPolicies(policies, 'AUDIT', attrs, requestMatchers(attrs)).map(policyName);
}

/** Envoy's response_code_details for a denial, which the request access log carries. */
export function denialDetails(decision: Extract<AuthorizationDecision, { allowed: false }>): string {
  return `rbac_access_denied_matched_policy[${decision.policy ?? 'none'}]`;
}

/** The answer to a denied request, as Envoy's RBAC filter sends it. */
export function deniedResponse(): { readonly status: 403; readonly headers: Readonly<Record<string, string>>; readonly body: string } {
  return { status: 403, headers: { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(RBAC_DENIED_BODY)) }, body: RBAC_DENIED_BODY };
}

function requestMatchers(attrs: HttpAuthorizationAttributes): HttpRuleMatchers {
  const auth = attrs.auth;
  const authority = attrs.authority.toLowerCase();
  const path = pathWithoutQuery(attrs.path);
  return {
    operation: (o: Operation) =>
      field(o.hosts, o.notHosts, (h) => wildcardMatch(h.toLowerCase(), authority)) &&
      field(o.methods, o.notMethods, (m) => wildcardMatch(m, attrs.method)) &&
      field(o.paths, o.notPaths, (p) => pathMatches(p, path)),
    source: (s: Source) =>
      field(s.requestPrincipals, s.notRequestPrincipals, (p) => auth !== undefined && wildcardMatch(p, auth.principal)) &&
      field(s.remoteIpBlocks, s.notRemoteIpBlocks, (b) => ipInBlock(attrs.sourceIp, b)),
    condition: (c: Condition, mode: Mode) => {
      const header = /^request\.headers\[(.+)\]$/.exec(c.key)?.[1];
      if (header !== undefined) return headerCondition(c, attrs.headers.get(header.toLowerCase()) ?? [], mode);
      if (c.key === 'remote.ip') return field(c.values, c.notValues, (v) => ipInBlock(attrs.sourceIp, v));
      const authValues = requestAuthValues(c.key, auth);
      if (authValues !== undefined) return field(c.values, c.notValues, (v) => authValues.some((a) => wildcardMatch(v, a)));
      // connection.sni, experimental.*: not seen by Ambit.
      return mode === 'deny';
    },
  };
}

/** The values a request.auth.* key has for this request ([] without a token); undefined for other keys. */
function requestAuthValues(key: string, auth: RequestAuth | undefined): readonly string[] | undefined {
  if (key === 'request.auth.principal') return auth ? [auth.principal] : [];
  if (key === 'request.auth.audiences') return auth?.audiences ?? [];
  if (key === 'request.auth.presenter') return auth?.presenter !== undefined ? [auth.presenter] : [];
  if (!key.startsWith('request.auth.claims[')) return undefined;
  // request.auth.claims[a][b]: the claim b inside the object claim a.
  const path = [...key.slice('request.auth.claims'.length).matchAll(/\[([^\]]*)\]/g)].map((m) => m[1]!);
  let value: unknown = auth?.claims;
  for (const name of path) value = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>)[name] : undefined;
  const words = auth?.spaceDelimitedClaims?.includes(path.join('.')) ?? false;
  const scalar = (v: unknown): string[] =>
    typeof v === 'string' ? (words ? v.split(/\s+/).filter((w) => w !== '') : [v]) : typeof v === 'number' || typeof v === 'boolean' ? [String(v)] : [];
  return Array.isArray(value) ? value.flatMap(scalar) : scalar(value);
}

/** Each value of the header on its own; the strict reading for the action (see the header comment). */
function headerCondition(c: Condition, values: readonly string[], mode: Mode): boolean {
  const satisfies = (v: string): boolean => (c.values.length === 0 || c.values.some((p) => headerValueMatches(p, v))) && !c.notValues.some((p) => headerValueMatches(p, v));
  if (mode === 'allow') return (c.values.length === 0 || values.length > 0) && values.every(satisfies);
  return values.some(satisfies) || (values.length === 0 && c.values.length === 0);
}

/** Istio's header values: `*` alone means present (even empty), else exact, `prefix*` or `*suffix`. */
function headerValueMatches(pattern: string, value: string): boolean {
  return pattern === '*' || wildcardMatch(pattern, value);
}

/**
 * Istio's path values: exact, `prefix*`, `*suffix`, `*`, and the path templates `{*}` (one segment)
 * and `{**}` (the rest of the path, at least one character), matched against the path without query.
 */
export function pathMatches(pattern: string, path: string): boolean {
  if (!pattern.includes('{*')) return wildcardMatch(pattern, path);
  const source = pattern
    .split(/(\{\*\*\}|\{\*\})/)
    .map((part) => (part === '{*}' ? '[^/]+' : part === '{**}' ? '.+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${source}$`).test(path);
}

function pathWithoutQuery(path: string): string {
  const end = path.search(/[?#]/);
  return end < 0 ? path : path.slice(0, end);
}

/**
 * The protocol of a workload's own port, as the destination agent must decide it: the Service port
 * that targets it (name or appProtocol), else the container port of that number by its name. An HTTP
 * port's connection is not authorized at CONNECT time; each of its requests is (authorizeRequest).
 */
export function inboundPortProtocol(snapshot: MeshSnapshot, workload: Workload, port: number): AppProtocol {
  for (const service of snapshot.services.values()) {
    const endpoint = service.endpoints.find((e) => e.workload === workload.key);
    if (!endpoint) continue;
    for (const p of service.ports) if (endpoint.ports.get(p.port) === port && speaksHttp(p.protocol)) return p.protocol;
  }
  for (const [name, number] of workload.namedPorts) {
    if (number !== port) continue;
    const protocol = portProtocol({ name, protocol: 'TCP' });
    if (speaksHttp(protocol)) return protocol;
  }
  return 'TCP';
}

// RequestAuthentication in the destination's agent: which JWT rules apply to a request (those selecting
// the workload, and those whose targetRefs name its Service), where its tokens are, whether each is
// valid. As Istio: a request with no token passes on unauthenticated (AuthorizationPolicy decides,
// e.g. with requestPrincipals); a request with a token that fails is refused with 401. A valid token's
// `iss/sub`, audiences and claims go to authorization, and the rule's header outputs to the pod.
//
// One choice beyond Envoy's: the headers a rule outputs (outputPayloadToHeader, outputClaimToHeaders)
// are removed from every request the rule applies to before they are set from a verified token, so a
// client can never send them itself.

import type { JwtRule } from '../config/parse-request-authentication.js';
import type { RequestHeaders } from '../l7/request.js';
import { matchesLabels } from '../state/build.js';
import type { MeshService, MeshSnapshot, Workload } from '../state/model.js';
import { ROOT_NAMESPACE } from './authorization.js';
import type { RequestAuth } from './http-authorization.js';
import type { JwksCache } from './jwks.js';
import { type JwtClaims, audiencesOf, decodeJwt, verifyJwt } from './jwt.js';
import { policiesTargeting } from './policy-targets.js';

/** Headers to change on the request to the pod. */
export interface HeaderEdits {
  readonly remove: readonly string[];
  readonly set: readonly (readonly [string, string])[];
}

export type AuthenticationOutcome =
  | { readonly kind: 'anonymous'; readonly edits: HeaderEdits }
  | { readonly kind: 'authenticated'; readonly auth: RequestAuth; readonly edits: HeaderEdits }
  | { readonly kind: 'rejected'; readonly message: string };

export interface AuthenticationRequest {
  readonly destination: Workload;
  readonly service?: MeshService;
  /** The target as sent (query string included: fromParams reads it). */
  readonly path: string;
  readonly headers: RequestHeaders;
}

/** Istio's token locations when a rule names none. */
const DEFAULT_HEADER = { name: 'authorization', prefix: 'Bearer ' };
const DEFAULT_PARAM = 'access_token';

/** The jwtRules in force for a request, in configuration order. */
export function jwtRulesFor(snapshot: MeshSnapshot, request: Pick<AuthenticationRequest, 'destination' | 'service'>): JwtRule[] {
  const all = snapshot.istio.requestAuthentications;
  const selecting = all.filter((p) => {
    if (p.spec.targetRefs.length > 0) return false;
    const ns = p.metadata.namespace;
    if (ns !== ROOT_NAMESPACE && ns !== request.destination.namespace) return false;
    const selector = p.spec.selector?.matchLabels;
    return selector === undefined || matchesLabels(selector, request.destination.labels);
  });
  const targeting = policiesTargeting(snapshot, all.filter((p) => p.spec.targetRefs.length > 0), request.service);
  return [...selecting, ...targeting].flatMap((p) => p.spec.jwtRules);
}

interface FoundToken {
  readonly token: string;
  /** The header it came in, when it came in one (removed unless forwardOriginalToken). */
  readonly header?: string;
}

/** Authenticates one request with the rules in force; `now` in seconds since the epoch. */
export async function authenticateRequest(snapshot: MeshSnapshot, request: AuthenticationRequest, jwks: JwksCache, now: number): Promise<AuthenticationOutcome> {
  const rules = jwtRulesFor(snapshot, request);
  if (rules.length === 0) return { kind: 'anonymous', edits: { remove: [], set: [] } };
  const outputs = rules.flatMap((r) => [...(r.outputPayloadToHeader ? [r.outputPayloadToHeader] : []), ...r.outputClaimToHeaders.map((c) => c.header)]);
  const remove = new Set(outputs);
  const set: [string, string][] = [];
  let auth: RequestAuth | undefined;
  const seen = new Set<string>();
  for (const rule of rules) {
    for (const found of tokensFor(rule, request)) {
      if (seen.has(found.token)) continue;
      seen.add(found.token);
      // The token names its issuer; the rule for that issuer verifies it (an issuer no rule has is refused).
      const decoded = decodeJwt(found.token);
      if (!decoded.ok) return { kind: 'rejected', message: decoded.message };
      const owner = rules.find((r) => r.issuer === decoded.claims['iss'] && tokensFor(r, request).some((t) => t.token === found.token));
      if (!owner) return { kind: 'rejected', message: 'Jwt issuer is not configured' };
      const keys = await jwks.keysFor(owner);
      if (!keys.ok) return { kind: 'rejected', message: keys.message };
      const verified = verifyJwt(found.token, keys.keys, { issuer: owner.issuer, audiences: owner.audiences, now });
      if (!verified.ok) return { kind: 'rejected', message: verified.message };
      if (!owner.forwardOriginalToken && found.header !== undefined) remove.add(found.header);
      if (owner.outputPayloadToHeader) set.push([owner.outputPayloadToHeader, verified.payloadSegment]);
      for (const { header, claim } of owner.outputClaimToHeaders) {
        const value = claimValue(verified.claims, claim);
        if (value !== undefined) set.push([header, value]);
      }
      auth ??= {
        principal: `${verified.issuer}/${verified.subject}`,
        audiences: audiencesOf(verified.claims),
        ...(typeof verified.claims['azp'] === 'string' ? { presenter: verified.claims['azp'] } : {}),
        claims: verified.claims,
        spaceDelimitedClaims: owner.spaceDelimitedClaims,
      };
    }
  }
  const edits = { remove: [...remove], set };
  return auth ? { kind: 'authenticated', auth, edits } : { kind: 'anonymous', edits };
}

/** Every token a rule's locations hold in this request. */
function tokensFor(rule: JwtRule, request: AuthenticationRequest): FoundToken[] {
  const explicit = rule.fromHeaders.length + rule.fromParams.length + rule.fromCookies.length > 0;
  const headers = explicit ? rule.fromHeaders : [DEFAULT_HEADER];
  const params = explicit ? rule.fromParams : [DEFAULT_PARAM];
  const out: FoundToken[] = [];
  for (const { name, prefix } of headers) {
    for (const value of request.headers.get(name) ?? []) {
      if (!value.startsWith(prefix)) continue;
      const token = value.slice(prefix.length).trim();
      if (token !== '') out.push({ token, header: name });
    }
  }
  const query = request.path.indexOf('?');
  if (params.length > 0 && query >= 0) {
    const search = new URLSearchParams(request.path.slice(query + 1).split('#')[0]);
    for (const param of params) for (const token of search.getAll(param)) if (token !== '') out.push({ token });
  }
  if (rule.fromCookies.length > 0) {
    const cookies = cookiesOf(request.headers.get('cookie') ?? []);
    for (const name of rule.fromCookies) for (const token of cookies.get(name) ?? []) if (token !== '') out.push({ token });
  }
  return out;
}

function cookiesOf(values: readonly string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const value of values) {
    for (const pair of value.split(';')) {
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const list = out.get(name) ?? [];
      list.push(pair.slice(eq + 1).trim());
      out.set(name, list);
    }
  }
  return out;
}

/** A claim copied to a header: strings, numbers and booleans (Istio's outputClaimToHeaders), `a.b` for nested ones. */
function claimValue(claims: JwtClaims, claim: string): string | undefined {
  let value: unknown = claims[claim];
  if (value === undefined && claim.includes('.')) {
    value = claims;
    for (const part of claim.split('.')) value = typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[part] : undefined;
  }
  const text = typeof value === 'string' ? value : typeof value === 'number' || typeof value === 'boolean' ? String(value) : undefined;
  // A claim is the issuer's text, but a header value with a line break or NUL would be refused by Node.
  return text !== undefined && !/[\r\n\0]/.test(text) ? text : undefined;
}

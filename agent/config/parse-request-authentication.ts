// RequestAuthentication (security.istio.io): the JWT rules a workload or a Service accepts, parsed with
// istiod's validation (an issuer per rule, a URL for jwksUri, header names and claim names), so that the
// authenticator (agent/policy/request-authentication.ts) only ever sees rules that were accepted.

import { readWorkloadSelector } from './istio-common.js';
import type { WorkloadSelector } from './istio-networking.js';
import { type PolicyTargetReference, readTargetRefs } from './istio-security.js';
import type { ObjectBase } from './kubernetes.js';
import type { Field, MapReader } from './yaml-reader.js';

/** Where a token may be: a header (with its prefix, e.g. "Bearer "), a query parameter, a cookie. */
export interface JwtHeaderLocation {
  readonly name: string;
  readonly prefix: string;
}

export interface JwtRule {
  readonly issuer: string;
  /** Empty: any audience. */
  readonly audiences: readonly string[];
  readonly jwksUri?: string;
  /** An inline JWKS (JSON text); used instead of jwksUri when both are written. */
  readonly jwks?: string;
  /** All three empty: Istio's defaults, `Authorization: Bearer <token>` then the `access_token` parameter. */
  readonly fromHeaders: readonly JwtHeaderLocation[];
  readonly fromParams: readonly string[];
  readonly fromCookies: readonly string[];
  readonly outputPayloadToHeader?: string;
  readonly forwardOriginalToken: boolean;
  readonly outputClaimToHeaders: readonly { readonly header: string; readonly claim: string }[];
  /** How long a jwksUri fetch may take, in ms (Istio's default 5 s). */
  readonly timeoutMs: number;
  /** Claims whose string value policies match word by word (`scope` and `permission` always; `a.b` for nested ones). */
  readonly spaceDelimitedClaims: readonly string[];
}

export interface RequestAuthenticationObject extends ObjectBase<'RequestAuthentication'> {
  readonly spec: {
    readonly selector?: WorkloadSelector;
    readonly targetRefs: readonly PolicyTargetReference[];
    readonly jwtRules: readonly JwtRule[];
  };
}

/** Istio splits these claims on whitespace whatever the rule says. */
export const DEFAULT_SPACE_DELIMITED_CLAIMS = ['scope', 'permission'];
/** Istio's default for jwtRules[].timeout. */
export const DEFAULT_JWKS_TIMEOUT_MS = 5000;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export function parseRequestAuthentication(root: MapReader, base: ObjectBase<'RequestAuthentication'>): RequestAuthenticationObject | undefined {
  const spec = root.map('spec');
  const selector = spec && readWorkloadSelector(spec, 'selector');
  const targetRefs = spec ? readTargetRefs(spec) : [];
  if (spec && selector && targetRefs.length > 0) root.ctx.error(spec.line, spec.path, 'expected only one of selector and targetRefs, got both');
  const jwtRules = (spec?.list('jwtRules') ?? []).flatMap((f) => parseJwtRule(f) ?? []);
  const issuers = new Set<string>();
  for (const rule of jwtRules) {
    // Two rules for one issuer would leave the token's rule ambiguous; istiod refuses it too.
    if (issuers.has(rule.issuer)) root.ctx.error(spec?.line ?? root.line, 'spec.jwtRules', `issuer ${JSON.stringify(rule.issuer)} is written twice`);
    issuers.add(rule.issuer);
  }
  return { ...base, spec: { ...(selector ? { selector } : {}), targetRefs, jwtRules } };
}

function parseJwtRule(field: Field): JwtRule | undefined {
  const m = field.map();
  if (!m) return undefined;
  const issuer = m.require('issuer')?.nonEmptyString();
  const audiences = m.strings('audiences', (item) => item.nonEmptyString());
  const uriField = m.get('jwksUri');
  const jwksUri = uriField?.nonEmptyString();
  if (jwksUri !== undefined && !isHttpUrl(jwksUri)) uriField?.fail(`expected an http or https URL, got ${JSON.stringify(jwksUri)}`);
  const jwksField = m.get('jwks');
  const jwks = jwksField?.nonEmptyString();
  // Istio's CRD: "only one of jwks or jwksUri can be set".
  if (jwks !== undefined && jwksUri !== undefined) jwksField?.fail('only one of jwks and jwksUri can be set, got both');
  const fromHeaders = m.maps('fromHeaders').flatMap((h) => {
    const nameField = h.require('name');
    const name = nameField?.nonEmptyString();
    if (name !== undefined && !HEADER_NAME.test(name)) return nameField?.fail(`expected an HTTP header name, got ${JSON.stringify(name)}`) ?? [];
    return name !== undefined ? [{ name: name.toLowerCase(), prefix: h.string('prefix') ?? '' }] : [];
  });
  const fromParams = m.strings('fromParams', (item) => item.nonEmptyString());
  const fromCookies = m.strings('fromCookies', (item) => item.nonEmptyString());
  const outputField = m.get('outputPayloadToHeader');
  const outputPayloadToHeader = outputField?.nonEmptyString();
  if (outputPayloadToHeader !== undefined && !HEADER_NAME.test(outputPayloadToHeader)) outputField?.fail(`expected an HTTP header name, got ${JSON.stringify(outputPayloadToHeader)}`);
  const outputClaimToHeaders = m.maps('outputClaimToHeaders').flatMap((c) => {
    const headerField = c.require('header');
    const header = headerField?.nonEmptyString();
    const claim = c.require('claim')?.nonEmptyString();
    if (header !== undefined && !HEADER_NAME.test(header)) return headerField?.fail(`expected an HTTP header name, got ${JSON.stringify(header)}`) ?? [];
    return header !== undefined && claim !== undefined ? [{ header: header.toLowerCase(), claim }] : [];
  });
  const forwardOriginalToken = m.bool('forwardOriginalToken') ?? false;
  const timeoutMs = m.duration('timeout', { min: 1 }) ?? DEFAULT_JWKS_TIMEOUT_MS;
  const spaceDelimitedClaims = m.strings('spaceDelimitedClaims', (item) => item.nonEmptyString());
  if (issuer === undefined) return undefined;
  return {
    issuer,
    audiences,
    ...(jwksUri !== undefined ? { jwksUri } : {}),
    ...(jwks !== undefined ? { jwks } : {}),
    fromHeaders,
    fromParams,
    fromCookies,
    ...(outputPayloadToHeader !== undefined ? { outputPayloadToHeader: outputPayloadToHeader.toLowerCase() } : {}),
    forwardOriginalToken,
    outputClaimToHeaders,
    timeoutMs,
    spaceDelimitedClaims: [...DEFAULT_SPACE_DELIMITED_CLAIMS, ...spaceDelimitedClaims],
  };
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

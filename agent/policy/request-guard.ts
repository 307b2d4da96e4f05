// Authenticate, then authorize, one inbound request: the single call the L7 inbound path makes. Istio's
// filter order on the destination: RequestAuthentication (an invalid token is 401), then CUSTOM (the
// external authorizer), then DENY and ALLOW (403 "RBAC: access denied"); AUDIT policies never decide,
// they mark the request, which is logged as audited. The outcome says what the client gets when refused,
// or what to change on the request to the pod (and on the response) when allowed.

import type { Logger } from '../telemetry/log.js';
import type { MeshSnapshot } from '../state/model.js';
import { checkExternally, type ExtAuthzRequest, type HeaderToSet, type ReadRequestBody } from './ext-authz.js';
import {
  type HttpAuthorizationAttributes,
  RBAC_DENIED_BODY,
  RBAC_DENIED_STATUS,
  auditingPolicies,
  authorizeRequest,
  customPolicyFor,
  denialDetails,
  requestPolicies,
} from './http-authorization.js';
import { JwksCache } from './jwks.js';
import { authenticateRequest } from './request-authentication.js';

export type RequestGuardOutcome =
  | {
      readonly kind: 'allow';
      /** Request headers to drop before the pod gets it (a token not forwarded, ext_authz removals). */
      readonly removeHeaders: readonly string[];
      readonly setHeaders: readonly HeaderToSet[];
      /** Headers the authorizer adds to the pod's response. */
      readonly responseHeaders: readonly HeaderToSet[];
      /** The AUDIT policies the request matched. */
      readonly audited: readonly string[];
    }
  | {
      readonly kind: 'deny';
      readonly status: number;
      readonly headers: readonly HeaderToSet[];
      readonly body: string;
      /** Envoy's response_code_details. */
      readonly details: string;
      /** The gRPC status a gRPC client gets (16 UNAUTHENTICATED, 7 PERMISSION_DENIED). */
      readonly grpcStatus: number;
    };

/** What the check needs beyond the policy attributes, for the external authorizer. */
export interface GuardedRequest extends HttpAuthorizationAttributes {
  readonly sourcePort?: number;
  readonly protocol: string;
  readonly requestId?: string;
  /** The body's first bytes, for a provider with includeRequestBodyInCheck; read only then. */
  readonly readBody?: ReadRequestBody;
}

export interface RequestGuardOptions {
  readonly log: Logger;
  readonly jwks?: JwksCache;
  /** Seconds since the epoch; tests move the clock. */
  readonly now?: () => number;
}

export class RequestGuard {
  readonly #log: Logger;
  readonly #jwks: JwksCache;
  readonly #now: () => number;

  constructor(options: RequestGuardOptions) {
    this.#log = options.log;
    this.#jwks = options.jwks ?? new JwksCache();
    this.#now = options.now ?? (() => Date.now() / 1000);
  }

  /** Never rejects: an unexpected failure denies the request (fail closed) and is logged. */
  async check(snapshot: MeshSnapshot, request: GuardedRequest): Promise<RequestGuardOutcome> {
    try {
      return await this.#check(snapshot, request);
    } catch (error) {
      this.#log.error({ err: (error as Error).message, path: request.path }, 'authenticating or authorizing a request failed; the request is denied');
      return rbacDenial('request_guard_error');
    }
  }

  async #check(snapshot: MeshSnapshot, request: GuardedRequest): Promise<RequestGuardOutcome> {
    // 1. RequestAuthentication.
    const authn = await authenticateRequest(snapshot, { destination: request.destination, ...(request.service ? { service: request.service } : {}), path: request.path, headers: request.headers }, this.#jwks, this.#now());
    if (authn.kind === 'rejected') {
      const challenge = `Bearer realm="http://${request.authority}${request.path.split('?')[0]}", error="invalid_token"`;
      return { kind: 'deny', status: 401, headers: [{ name: 'www-authenticate', value: challenge, append: false }], body: authn.message, details: `jwt_authn_access_denied{${authn.message.replace(/[{}\s]+/g, '_')}}`, grpcStatus: 16 };
    }
    const attrs: HttpAuthorizationAttributes = { ...request, ...(authn.kind === 'authenticated' ? { auth: authn.auth } : {}) };
    const removeHeaders = [...authn.edits.remove];
    const setHeaders: HeaderToSet[] = authn.edits.set.map(([name, value]) => ({ name, value, append: false }));
    const responseHeaders: HeaderToSet[] = [];

    // 2. CUSTOM: the external authorizer.
    // The policies in force for this request, gathered once for every action below.
    const policies = requestPolicies(snapshot, attrs);
    const custom = customPolicyFor(snapshot, attrs, policies);
    if (custom) {
      const provider = snapshot.istio.meshConfig.extAuthzProviders.get(custom.provider);
      if (!provider) {
        // istiod turns a CUSTOM policy with an unknown provider into a denial of what it matches: fail closed too.
        this.#log.warn({ policy: custom.policy, provider: custom.provider }, `AuthorizationPolicy ${custom.policy} names extension provider ${JSON.stringify(custom.provider)}, which MeshConfig (ConfigMap istio-system/istio, key mesh) does not define as envoyExtAuthzHttp or envoyExtAuthzGrpc: its requests are denied`);
        return rbacDenial(`ext_authz_provider_not_found[${custom.provider}]`);
      }
      const outcome = await checkExternally(snapshot, provider, extAuthzRequest(request), request.readBody);
      if (outcome.kind === 'denied') return { kind: 'deny', status: outcome.status, headers: outcome.headers, body: outcome.body, details: outcome.details, grpcStatus: outcome.grpcStatus };
      removeHeaders.push(...outcome.removeHeaders);
      setHeaders.push(...outcome.upstreamHeaders);
      responseHeaders.push(...outcome.responseHeaders);
    }

    // 3. DENY, then ALLOW.
    const decision = authorizeRequest(snapshot, attrs, policies);
    if (!decision.allowed) return rbacDenial(denialDetails(decision));

    // 4. AUDIT: allowed and marked.
    const audited = auditingPolicies(snapshot, attrs, policies);
    if (audited.length > 0) {
      this.#log.info({ audit: audited, method: request.method, authority: request.authority, path: request.path, source: request.sourceIdentity ?? request.sourceIp, principal: attrs.auth?.principal }, 'request audited by AuthorizationPolicy');
    }
    return { kind: 'allow', removeHeaders, setHeaders, responseHeaders, audited };
  }
}

function rbacDenial(details: string): RequestGuardOutcome {
  return { kind: 'deny', status: RBAC_DENIED_STATUS, headers: [], body: RBAC_DENIED_BODY, details, grpcStatus: 7 };
}

function extAuthzRequest(r: GuardedRequest): ExtAuthzRequest {
  return {
    method: r.method,
    path: r.path,
    authority: r.authority,
    headers: r.headers,
    protocol: r.protocol,
    ...(r.requestId !== undefined ? { requestId: r.requestId } : {}),
    source: { ip: r.sourceIp, ...(r.sourcePort !== undefined ? { port: r.sourcePort } : {}), ...(r.sourceIdentity !== undefined ? { identity: r.sourceIdentity } : {}) },
    destination: { ip: r.destinationIp, port: r.destinationPort, identity: r.destination.identity },
  };
}

/** Applies the allowed outcome's request changes to headers about to go to the pod. */
export function applyRequestEdits(headers: Map<string, string[]>, outcome: Extract<RequestGuardOutcome, { kind: 'allow' }>): void {
  for (const name of outcome.removeHeaders) headers.delete(name);
  for (const h of outcome.setHeaders) {
    if (h.append) headers.set(h.name, [...(headers.get(h.name) ?? []), h.value]);
    else headers.set(h.name, [h.value]);
  }
}

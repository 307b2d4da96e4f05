// CUSTOM AuthorizationPolicy: the request is checked by the external authorizer its provider names in
// MeshConfig (envoyExtAuthzHttp or envoyExtAuthzGrpc, agent/policy/ext-authz-http.ts and -grpc.ts). This
// module finds the authorizer and turns what happened into one outcome: allowed (with the headers to set
// on the request and on the response), denied (the authorizer's status, headers and body), or, when the
// authorizer could not answer, failOpen's allow or statusOnError's denial, as Envoy's ext_authz filter does.
// With includeRequestBodyInCheck the body's first maxRequestBytes go with the check (read through the
// caller, which holds them for the pod); a longer body is 413 unless allowPartialMessage cuts it.

import type { ExtAuthzProvider } from '../config/mesh-config.js';
import type { RequestHeaders } from '../l7/request.js';
import type { MeshSnapshot, SpiffeId } from '../state/model.js';
import { checkOverGrpc } from './ext-authz-grpc.js';
import { checkOverHttp } from './ext-authz-http.js';

/** The request as the authorizer is told about it. */
export interface ExtAuthzRequest {
  readonly method: string;
  /** The target as the pod will receive it, query included. */
  readonly path: string;
  readonly authority: string;
  readonly headers: RequestHeaders;
  readonly protocol: string;
  readonly requestId?: string;
  readonly source: { readonly ip: string; readonly port?: number; readonly identity?: SpiffeId };
  readonly destination: { readonly ip: string; readonly port: number; readonly identity: SpiffeId };
  /** Set with includeRequestBodyInCheck when the request has a body. */
  readonly body?: CheckedBody;
}

/** The body sent with the check: its first maxRequestBytes, and whether the body was longer. */
export interface CheckedBody {
  readonly bytes: Buffer;
  readonly partial: boolean;
}

/**
 * Reads the request body's first bytes for the check: more than `maxBytes` when the body is longer, so
 * that `truncated` can be told. Undefined when the body cannot be read (the client failed).
 */
export type ReadRequestBody = (maxBytes: number) => Promise<{ readonly bytes: Buffer; readonly truncated: boolean } | undefined>;

/** Envoy's header on the check saying whether the body sent is cut; the client's own is never passed on. */
export const PARTIAL_BODY_HEADER = 'x-envoy-auth-partial-body';

/** Where to reach an authorizer. */
export interface AuthorizerAddress {
  readonly host: string;
  readonly port: number;
}

/** What one check answered, before failOpen and statusOnError are applied. */
export type AuthorizerAnswer =
  | {
      readonly kind: 'ok';
      readonly upstreamHeaders: readonly HeaderToSet[];
      readonly removeHeaders: readonly string[];
      readonly responseHeaders: readonly HeaderToSet[];
    }
  | { readonly kind: 'denied'; readonly status: number; readonly headers: readonly HeaderToSet[]; readonly body: string }
  | { readonly kind: 'error'; readonly message: string };

export interface HeaderToSet {
  readonly name: string;
  readonly value: string;
  /** Added beside a header of the same name instead of replacing it. */
  readonly append: boolean;
}

export type ExtAuthzOutcome =
  | Extract<AuthorizerAnswer, { kind: 'ok' }>
  | {
      readonly kind: 'denied';
      readonly status: number;
      readonly headers: readonly HeaderToSet[];
      readonly body: string;
      readonly details: string;
      /** What a gRPC client gets: PERMISSION_DENIED for the authorizer's refusals, UNKNOWN for 413 as Envoy maps it. */
      readonly grpcStatus: number;
    };

/** Envoy's local reply when a body that must be buffered is larger than the buffer. */
const PAYLOAD_TOO_LARGE = { kind: 'denied', status: 413, headers: [], body: 'Payload Too Large', details: 'request_payload_too_large', grpcStatus: 2 } as const;

/**
 * Checks a request with a provider; never throws. `readBody` is called only when the provider sends
 * the body, so requests of other providers keep streaming to the pod.
 */
export async function checkExternally(snapshot: MeshSnapshot, provider: ExtAuthzProvider, withoutBody: ExtAuthzRequest, readBody?: ReadRequestBody): Promise<ExtAuthzOutcome> {
  const bodySettings = provider.includeRequestBodyInCheck;
  let request = withoutBody;
  if (bodySettings && readBody) {
    const read = await readBody(bodySettings.maxRequestBytes);
    if (!read) return { kind: 'denied', status: 400, headers: [], body: '', details: 'ext_authz_error{the_request_body_could_not_be_read}', grpcStatus: 13 };
    // Istio: the 413 takes precedence over failOpen; the authorizer is not asked.
    if (read.truncated && !bodySettings.allowPartialMessage) return PAYLOAD_TOO_LARGE;
    // A request without a body is checked without one, as Envoy does not buffer a request that ended with its headers.
    if (read.bytes.length > 0 || read.truncated) request = { ...withoutBody, body: { bytes: read.bytes, partial: read.truncated } };
  }
  const address = authorizerAddress(snapshot, provider);
  const answer: AuthorizerAnswer = !address
    ? { kind: 'error', message: `the provider's service ${provider.service} has no ready endpoint on port ${provider.port}` }
    : provider.kind === 'envoyExtAuthzHttp'
      ? await checkOverHttp(provider, address, request)
      : await checkOverGrpc(provider, address, request);
  if (answer.kind === 'ok') return answer;
  if (answer.kind === 'denied') return { ...answer, details: 'ext_authz_denied', grpcStatus: 7 };
  if (provider.failOpen) return { kind: 'ok', upstreamHeaders: [], removeHeaders: [], responseHeaders: [] };
  return { kind: 'denied', status: provider.statusOnError, headers: [], body: '', details: `ext_authz_error{${answer.message.replace(/[{}\s]+/g, '_')}}`, grpcStatus: 7 };
}

/**
 * The authorizer's address: a mesh Service's ready endpoint (`[<namespace>/]<hostname>`, the port its
 * Service port targets), else the service text itself as a host (an IP or a name the node resolves).
 * The agent calls it directly, not through a tunnel, as a waypoint would call an authorizer outside the mesh.
 */
export function authorizerAddress(snapshot: MeshSnapshot, provider: Pick<ExtAuthzProvider, 'service' | 'port'>): AuthorizerAddress | undefined {
  const host = provider.service.includes('/') ? provider.service.slice(provider.service.indexOf('/') + 1) : provider.service;
  const service = snapshot.servicesByHostname.get(host);
  if (!service) return { host, port: provider.port };
  for (const endpoint of service.endpoints) {
    const workload = snapshot.workloads.get(endpoint.workload);
    const target = endpoint.ports.get(provider.port);
    if (workload?.ready && target !== undefined) return { host: endpoint.ip, port: target };
  }
  return undefined;
}

/**
 * One value per header for the check: repeated headers joined with "," as HTTP allows. The client's
 * x-envoy-auth-partial-body is dropped; with a body the proxy's own says whether it is cut.
 */
export function checkHeaders(request: ExtAuthzRequest): Record<string, string> {
  const joined: Record<string, string> = {};
  for (const [name, values] of request.headers) if (name !== PARTIAL_BODY_HEADER) joined[name] = values.join(',');
  if (request.body) joined[PARTIAL_BODY_HEADER] = String(request.body.partial);
  return joined;
}

// CUSTOM AuthorizationPolicy: the request is checked by the external authorizer its provider names in
// MeshConfig (envoyExtAuthzHttp or envoyExtAuthzGrpc, agent/policy/ext-authz-http.ts and -grpc.ts). This
// module finds the authorizer and turns what happened into one outcome: allowed (with the headers to set
// on the request and on the response), denied (the authorizer's status, headers and body), or, when the
// authorizer could not answer, failOpen's allow or statusOnError's denial, as Envoy's ext_authz filter does.

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
}

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
  | { readonly kind: 'denied'; readonly status: number; readonly headers: readonly HeaderToSet[]; readonly body: string; readonly details: string };

/** Checks a request with a provider; never throws. */
export async function checkExternally(snapshot: MeshSnapshot, provider: ExtAuthzProvider, request: ExtAuthzRequest): Promise<ExtAuthzOutcome> {
  const address = authorizerAddress(snapshot, provider);
  const answer: AuthorizerAnswer = !address
    ? { kind: 'error', message: `the provider's service ${provider.service} has no ready endpoint on port ${provider.port}` }
    : provider.kind === 'envoyExtAuthzHttp'
      ? await checkOverHttp(provider, address, request)
      : await checkOverGrpc(provider, address, request);
  if (answer.kind === 'ok') return answer;
  if (answer.kind === 'denied') return { ...answer, details: 'ext_authz_denied' };
  if (provider.failOpen) return { kind: 'ok', upstreamHeaders: [], removeHeaders: [], responseHeaders: [] };
  return { kind: 'denied', status: provider.statusOnError, headers: [], body: '', details: `ext_authz_error{${answer.message.replace(/[{}\s]+/g, '_')}}` };
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

/** One value per header for the check: repeated headers joined with "," as HTTP allows. */
export function joinedHeaders(headers: RequestHeaders): Record<string, string> {
  return Object.fromEntries([...headers].map(([name, values]) => [name, values.join(',')]));
}

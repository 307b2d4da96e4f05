// The envoyExtAuthzGrpc check: envoy.service.auth.v3.Authorization/Check over gRPC (plaintext h2c, as
// a waypoint calls an authorizer outside the mesh) with the request's attributes; status OK allows with
// the ok_response's header changes, any other status denies with the denied_response (403 when it has
// none), and a gRPC failure (unreachable, deadline) is an error for failOpen and statusOnError to settle.
// A body sent with the check goes in http.body as text, or in http.raw_body as bytes with packAsBytes.

import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import type * as grpc from '@grpc/grpc-js';
import type { ExtAuthzGrpcProvider } from '../config/mesh-config.js';
import type { HeaderValueOption } from '../proto/envoy/config/core/v3/base_pb.js';
import { type Grpc, grpcStatusName, loadGrpc } from '../identity/grpc-runtime.js';
import { grpcMethodPath } from '../identity/istiod-channel.js';
import {
  Authorization,
  type CheckRequest,
  CheckRequestSchema,
  type CheckResponse,
  CheckResponseSchema,
} from '../proto/envoy/service/auth/v3/external_auth_pb.js';
import { type AuthorizerAddress, type AuthorizerAnswer, type ExtAuthzRequest, type HeaderToSet, checkHeaders } from './ext-authz.js';

export const CHECK_PATH = grpcMethodPath(Authorization.method.check);
export const encodeCheckRequest = (m: CheckRequest): Buffer => Buffer.from(toBinary(CheckRequestSchema, m));
export const decodeCheckRequest = (b: Buffer): CheckRequest => fromBinary(CheckRequestSchema, b);
export const encodeCheckResponse = (m: CheckResponse): Buffer => Buffer.from(toBinary(CheckResponseSchema, m));
export const decodeCheckResponse = (b: Buffer): CheckResponse => fromBinary(CheckResponseSchema, b);

/** envoy.service.auth.v3.Authorization for grpc-js (a server's addService, or the client below). */
export const AUTHORIZATION_SERVICE: grpc.ServiceDefinition = {
  Check: {
    path: CHECK_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: encodeCheckRequest,
    requestDeserialize: decodeCheckRequest,
    responseSerialize: encodeCheckResponse,
    responseDeserialize: decodeCheckResponse,
  },
};

// One channel per authorizer (or rate limit service) address, kept: a check must not pay a new HTTP/2
// connection each time.
const clients = new Map<string, grpc.Client>();
const MAX_CLIENTS = 64;

/** A client for calls to `address` and the grpc-js it came from, which loads with the first one. */
export type GrpcClientResult = { readonly ok: true; readonly client: grpc.Client; readonly grpc: Grpc } | { readonly ok: false; readonly message: string };

export async function clientFor(address: AuthorizerAddress): Promise<GrpcClientResult> {
  const loaded = await loadGrpc();
  if (!loaded.ok) return { ok: false, message: `cannot call ${address.host}:${address.port} over gRPC: ${loaded.message}` };
  const { grpc } = loaded;
  const key = `${address.host}:${address.port}`;
  let client = clients.get(key);
  if (!client) {
    if (clients.size >= MAX_CLIENTS) {
      const [oldest, old] = clients.entries().next().value as [string, grpc.Client];
      old.close();
      clients.delete(oldest);
    }
    const target = address.host.includes(':') ? `[${address.host}]:${address.port}` : key;
    client = new grpc.Client(target, grpc.credentials.createInsecure());
    clients.set(key, client);
  }
  return { ok: true, client, grpc };
}

export async function checkOverGrpc(provider: ExtAuthzGrpcProvider, address: AuthorizerAddress, request: ExtAuthzRequest): Promise<AuthorizerAnswer> {
  const channel = await clientFor(address);
  if (!channel.ok) return { kind: 'error', message: channel.message };
  const message = create(CheckRequestSchema, {
    attributes: {
      source: {
        address: { address: { case: 'socketAddress', value: { address: request.source.ip, portValue: request.source.port ?? 0 } } },
        principal: request.source.identity ?? '',
      },
      destination: {
        address: { address: { case: 'socketAddress', value: { address: request.destination.ip, portValue: request.destination.port } } },
        principal: request.destination.identity,
      },
      request: {
        http: {
          id: request.requestId ?? '',
          method: request.method,
          headers: { ...checkHeaders(request), ':authority': request.authority, ':method': request.method, ':path': request.path },
          path: request.path,
          host: request.authority,
          scheme: 'http',
          size: request.body ? BigInt(request.body.bytes.length) : -1n,
          protocol: request.protocol,
          ...bodyFields(provider, request),
        },
      },
    },
  });
  return new Promise((resolve) => {
    channel.client.makeUnaryRequest(
      CHECK_PATH,
      encodeCheckRequest,
      decodeCheckResponse,
      message,
      new channel.grpc.Metadata(),
      { deadline: Date.now() + provider.timeoutMs },
      (error, response) => {
        if (error || !response) return resolve({ kind: 'error', message: error ? `${grpcStatusName(error.code)}: ${error.details}` : 'no response' });
        resolve(answerOf(response));
      },
    );
  });
}

function bodyFields(provider: ExtAuthzGrpcProvider, request: ExtAuthzRequest): { body: string } | { rawBody: Uint8Array } | undefined {
  if (!request.body) return undefined;
  // Text that is not UTF-8 is mangled in the string field; packAsBytes exists for such bodies.
  return provider.includeRequestBodyInCheck?.packAsBytes ? { rawBody: request.body.bytes } : { body: request.body.bytes.toString('utf8') };
}

function answerOf(response: CheckResponse): AuthorizerAnswer {
  const http = response.httpResponse;
  if ((response.status?.code ?? 0) === 0) {
    const ok = http.case === 'okResponse' ? http.value : undefined;
    return {
      kind: 'ok',
      upstreamHeaders: headersOf(ok?.headers ?? []),
      removeHeaders: (ok?.headersToRemove ?? []).map((n) => n.toLowerCase()).filter((n) => !n.startsWith(':') && n !== 'host'),
      responseHeaders: headersOf(ok?.responseHeadersToAdd ?? []),
    };
  }
  const denied = http.case === 'deniedResponse' ? http.value : undefined;
  const code = denied?.status?.code ?? 0;
  return { kind: 'denied', status: code >= 200 && code <= 599 ? code : 403, headers: headersOf(denied?.headers ?? []), body: denied?.body ?? '' };
}

function headersOf(options: readonly HeaderValueOption[]): HeaderToSet[] {
  return options.flatMap((o) => {
    const name = o.header?.key.toLowerCase() ?? '';
    const value = o.header?.value ?? '';
    // A header Node would refuse to send (a bad name, a line break) is dropped rather than failing the request.
    if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name) || /[\r\n\0]/.test(value)) return [];
    return [{ name, value, append: o.append ?? false }];
  });
}

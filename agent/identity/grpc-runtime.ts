// grpc-js for the agent's gRPC clients (istiod's CA and xDS, ext_authz and rate limit services), loaded
// the first time one of them calls: an agent that uses none (--ca local, --source local or kubernetes,
// no gRPC authorizer) never loads its ~65 modules, which a restarted agent would otherwise pay for
// before carrying traffic again (docs/reliability.md, "Crashes"). Everything else imports it as a type.

import type * as GrpcJs from '@grpc/grpc-js';
import { messageOf } from './errors.js';

export type Grpc = typeof GrpcJs;

export type GrpcLoad = { readonly ok: true; readonly grpc: Grpc } | { readonly ok: false; readonly message: string };

let loading: Promise<GrpcLoad> | undefined;

/** grpc-js, imported once; a failure names the package and what to do, for the caller to prefix with its own purpose. */
export function loadGrpc(): Promise<GrpcLoad> {
  loading ??= import('@grpc/grpc-js').then(
    (grpc): GrpcLoad => ({ ok: true, grpc }),
    (err: unknown): GrpcLoad => ({ ok: false, message: `cannot load @grpc/grpc-js: ${messageOf(err)} (reinstall Ambit's dependencies with npm ci)` }),
  );
  return loading;
}

/** gRPC status codes (grpc/doc/statuscodes.md), so that reading a failed call's code needs no grpc-js. */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const STATUS_NAMES: readonly string[] = Object.keys(GrpcStatus);

/** UNAVAILABLE for 14; the number itself for a code outside the table. */
export function grpcStatusName(code: number): string {
  return STATUS_NAMES[code] ?? String(code);
}

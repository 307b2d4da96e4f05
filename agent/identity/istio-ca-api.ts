// Istio's certificate API on the wire, shared by the client (agent/identity/istio-ca-client.ts) and
// the server (`ambit ca`, agent/ca/): the gRPC method, its protobuf codecs, and the request metadata
// key a node agent sets to ask on a pod's behalf.

import { fromBinary, toBinary } from '@bufbuild/protobuf';
import type * as grpc from '@grpc/grpc-js';
import {
  type IstioCertificateRequest,
  type IstioCertificateResponse,
  IstioCertificateRequestSchema,
  IstioCertificateResponseSchema,
  IstioCertificateService,
} from '../proto/istio/v1/auth/ca_pb.js';
import { grpcMethodPath } from './istiod-channel.js';

export const CREATE_CERTIFICATE_PATH = grpcMethodPath(IstioCertificateService.method.createCertificate);

/** The request metadata key (in the request's Struct, not a gRPC header) naming the identity asked for. */
export const IMPERSONATED_IDENTITY = 'ImpersonatedIdentity';

export const encodeCertificateRequest = (message: IstioCertificateRequest): Buffer => Buffer.from(toBinary(IstioCertificateRequestSchema, message));
export const decodeCertificateRequest = (bytes: Buffer): IstioCertificateRequest => fromBinary(IstioCertificateRequestSchema, bytes);
export const encodeCertificateResponse = (message: IstioCertificateResponse): Buffer => Buffer.from(toBinary(IstioCertificateResponseSchema, message));
export const decodeCertificateResponse = (bytes: Buffer): IstioCertificateResponse => fromBinary(IstioCertificateResponseSchema, bytes);

/** IstioCertificateService for grpc-js's Server.addService; its one handler is named CreateCertificate. */
export const ISTIO_CERTIFICATE_SERVICE: grpc.ServiceDefinition = {
  CreateCertificate: {
    path: CREATE_CERTIFICATE_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: encodeCertificateRequest,
    requestDeserialize: decodeCertificateRequest,
    responseSerialize: encodeCertificateResponse,
    responseDeserialize: decodeCertificateResponse,
  },
};

// istiod's CA (IstioCertificateService.CreateCertificate over gRPC) as a CaClient: the certificate
// manager hands it a P-256 CSR for one SPIFFE id, and it asks istiod on the pod's behalf the way
// ztunnel does (ImpersonatedIdentity in the request's metadata Struct, the node's bearer token).

import { create } from '@bufbuild/protobuf';
import { IstioCertificateRequestSchema } from '../proto/istio/v1/auth/ca_pb.js';
import type { SpiffeId } from '../state/model.js';
import type { CaClient } from './ca-client.js';
import { type IdentityErrorReason, type IdentityResult, fail, ok } from './errors.js';
import { GrpcStatus } from './grpc-runtime.js';
import { CREATE_CERTIFICATE_PATH, IMPERSONATED_IDENTITY, decodeCertificateResponse, encodeCertificateRequest } from './istio-ca-api.js';
import { type IstiodConnectionOptions, DEFAULT_TOKEN_FILE, IstiodChannel, describeGrpcError } from './istiod-channel.js';

export { CREATE_CERTIFICATE_PATH, IMPERSONATED_IDENTITY };

export interface IstioCaClientOptions extends IstiodConnectionOptions {
  /**
   * Ask for each pod's identity on its behalf (istiod checks that the caller is a trusted node agent
   * and that a pod with that identity runs on its node). Default true, as ztunnel.
   */
  readonly impersonate?: boolean;
  /** How long one CreateCertificate may take. Default 10 s. */
  readonly timeoutMs?: number;
}

export class IstioCaClient implements CaClient {
  readonly #channel: IstiodChannel;
  readonly #impersonate: boolean;
  readonly #timeoutMs: number;

  constructor(options: IstioCaClientOptions) {
    this.#channel = new IstiodChannel({ ...options, tokenFile: options.tokenFile ?? DEFAULT_TOKEN_FILE });
    this.#impersonate = options.impersonate ?? true;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  async requestCertificate(csrPem: string, identity: SpiffeId, ttlSeconds: number): Promise<IdentityResult<readonly string[]>> {
    const where = `istiod's CA at ${this.#channel.address}`;
    const client = await this.#channel.client();
    if (!client.ok) return fail('ca-files', client.error.message, client.error.file);
    const metadata = await this.#channel.metadata();
    if (!metadata.ok) return fail('not-authorized', metadata.error.message, metadata.error.file);

    const request = create(IstioCertificateRequestSchema, {
      csr: csrPem,
      validityDuration: BigInt(Math.max(1, Math.round(ttlSeconds))),
      metadata: this.#impersonate ? { [IMPERSONATED_IDENTITY]: identity } : {},
    });
    let chain: string[];
    try {
      chain = await new Promise<string[]>((resolve, reject) => {
        client.value.makeUnaryRequest(
          CREATE_CERTIFICATE_PATH,
          encodeCertificateRequest,
          decodeCertificateResponse,
          request,
          metadata.value,
          { deadline: Date.now() + this.#timeoutMs },
          (err, response) => (err || !response ? reject(err ?? new Error('no response')) : resolve(response.certChain)),
        );
      });
    } catch (err) {
      const reason = reasonOf(err);
      // grpc-js would otherwise keep redialling a dead istiod about once a second, whatever our backoff:
      // a fresh channel at the next retry dials then and only then (and may reach another replica).
      if (reason === 'ca-unavailable') this.#channel.close();
      return fail(reason, `${where} did not issue a certificate for ${identity}: ${describeGrpcError(err, this.#channel.address)}`);
    }
    if (chain.length === 0) return fail('invalid-response', `${where} answered with an empty certificate chain for ${identity}`);
    // istiod sends one PEM certificate per entry; the certificate manager checks the chain itself.
    return ok(chain.map((pem) => (pem.endsWith('\n') ? pem : `${pem}\n`)));
  }

  close(): void {
    this.#channel.close();
  }
}

/** What a gRPC status means for the certificate manager: all are retried, but operators read the reason. */
function reasonOf(err: unknown): IdentityErrorReason {
  switch ((err as { code?: unknown }).code) {
    case GrpcStatus.UNAUTHENTICATED:
    case GrpcStatus.PERMISSION_DENIED:
      return 'not-authorized';
    case GrpcStatus.INVALID_ARGUMENT:
    case GrpcStatus.FAILED_PRECONDITION:
    case GrpcStatus.OUT_OF_RANGE:
      return 'invalid-request';
    default:
      return 'ca-unavailable';
  }
}

// `ambit ca` assembled: the mesh's signing key (the plugged-in `cacerts`), the cluster's pods, the API
// server's TokenReview, and Istio's certificate service over gRPC and TLS. It opens its port only once
// it has listed the pods, so a replica that is not ready refuses connections instead of requests.

import * as grpc from '@grpc/grpc-js';
import { EmbeddedCa } from '../identity/embedded-ca.js';
import { ISTIO_CERTIFICATE_SERVICE } from '../identity/istio-ca-api.js';
import type { KubeApiClient } from '../sources/kubernetes/api-client.js';
import type { Logger } from '../telemetry/log.js';
import { createCertificateHandler } from './certificate-service.js';
import type { ServiceAccountName } from './caller-node.js';
import { PodIndex } from './pod-index.js';
import { ServingCertificate } from './serving-certificate.js';
import { CA_AUDIENCE, tokenReviewAuthenticator } from './token-review.js';

export interface CaServerConfig {
  readonly host: string;
  /** 0: any free port (tests). */
  readonly port: number;
  /** The plugged-in CA in Istio's cacerts layout; every replica must sign with the same one. */
  readonly caDir: string;
  readonly trustDomain: string;
  /** DNS names and addresses the serving certificate is for. */
  readonly servingNames: readonly string[];
  readonly servingTtlSeconds: number;
  /** The ServiceAccounts whose pods may ask on behalf of the pods of their node (the agents'). */
  readonly trustedNodeAccounts: readonly ServiceAccountName[];
  /** The audience callers' tokens must be for. Default: istio-ca. */
  readonly audience?: string;
  /** Longest workload certificate lifetime granted. Default: the embedded CA's (90 days). */
  readonly maxTtlSeconds?: number;
}

// A CreateCertificate request is a CSR of under 1 KiB and a few metadata fields.
const MAX_REQUEST_BYTES = 64 * 1024;

export class CaServer {
  readonly port: number;
  readonly #server: grpc.Server;
  readonly #pods: PodIndex;
  readonly #serving: ServingCertificate;

  private constructor(port: number, server: grpc.Server, pods: PodIndex, serving: ServingCertificate) {
    this.port = port;
    this.#server = server;
    this.#pods = pods;
    this.#serving = serving;
  }

  /** Loads the CA, lists the pods, then listens; rejects with a message naming what to fix. */
  static async start(config: CaServerConfig, kube: KubeApiClient, log: Logger): Promise<CaServer> {
    const pods = new PodIndex(kube, config.trustDomain, log);
    const ca = await EmbeddedCa.open({
      stateDir: config.caDir,
      pluggedInDir: config.caDir,
      trustDomain: config.trustDomain,
      identitiesOnNode: (node) => pods.identitiesOnNode(node),
      ...(config.maxTtlSeconds !== undefined ? { maxTtlSeconds: config.maxTtlSeconds } : {}),
    });
    if (!ca.ok) throw new Error(`the CA's signing material: ${ca.error.message}`);
    const serving = await ServingCertificate.issue({ ca: ca.value, names: config.servingNames, ttlSeconds: config.servingTtlSeconds, log });
    if (!serving.ok) throw new Error(`the CA's serving certificate: ${serving.error.message}`);

    log.info({ server: kube.server }, `listing pods from ${kube.server} before serving`);
    await pods.start();

    const server = new grpc.Server({ 'grpc.max_receive_message_length': MAX_REQUEST_BYTES });
    server.addService(ISTIO_CERTIFICATE_SERVICE, {
      CreateCertificate: createCertificateHandler({
        authenticate: tokenReviewAuthenticator(kube, config.audience ?? CA_AUDIENCE),
        ca: ca.value,
        pods,
        trustedNodeAccounts: config.trustedNodeAccounts,
        log,
      }),
    });
    let port: number;
    try {
      port = await new Promise<number>((resolve, reject) =>
        server.bindAsync(`${config.host.includes(':') ? `[${config.host}]` : config.host}:${config.port}`, serving.value.credentials, (err, bound) => (err ? reject(err) : resolve(bound))),
      );
    } catch (err) {
      serving.value.stop();
      await pods.stop();
      throw new Error(`cannot listen on ${config.host}:${config.port}: ${(err as Error).message}`);
    }
    log.info({ port, names: config.servingNames, trusted: config.trustedNodeAccounts }, `serving IstioCertificateService on ${config.host}:${port}`);
    return new CaServer(port, server, pods, serving.value);
  }

  /** Lets calls in flight finish for up to `graceMs`, then cuts the rest. */
  async stop(graceMs = 5_000): Promise<void> {
    this.#serving.stop();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#server.forceShutdown();
        resolve();
      }, graceMs);
      this.#server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    await this.#pods.stop();
  }
}

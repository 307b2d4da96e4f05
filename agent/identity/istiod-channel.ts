// How the agent reaches istiod, for both the xDS stream and the CA (as ztunnel's identity/auth.rs and
// tls connector): one TLS channel to port 15012 trusting Istio's root from a file, and per-call gRPC
// metadata proving who we are (`authorization: Bearer <projected token>`, `clusterid`).

import { readFile } from 'node:fs/promises';
import type { DescMethod } from '@bufbuild/protobuf';
import type * as grpc from '@grpc/grpc-js';
import { messageOf } from './errors.js';
import { GrpcStatus, grpcStatusName, loadGrpc } from './grpc-runtime.js';

/** istiod's discovery and CA address inside a cluster (the ztunnel chart's XDS_ADDRESS and CA_ADDRESS). */
export const DEFAULT_ISTIOD_ADDRESS = 'istiod.istio-system.svc:15012';
/** Where the chart mounts the `istio-ca-root-cert` ConfigMap's root. */
export const DEFAULT_ROOT_CERT_FILE = '/var/run/secrets/istio/root-cert.pem';
/** Where the chart mounts the service-account token projected with audience `istio-ca`. */
export const DEFAULT_TOKEN_FILE = '/var/run/secrets/tokens/istio-token';

export interface IstiodConnectionOptions {
  /** host:port; default DEFAULT_ISTIOD_ADDRESS. */
  readonly address?: string;
  /** PEM root(s) that istiod's serving certificate chains to; default DEFAULT_ROOT_CERT_FILE. */
  readonly rootCertFile?: string;
  /** The bearer token, re-read for every call because kubelet rotates projected tokens. Undefined: none sent. */
  readonly tokenFile?: string;
  /** Sent as `clusterid`; istiod picks the cluster whose API server validates the token. */
  readonly clusterId?: string;
  /** The name istiod's certificate must carry, when it differs from the address's host (tests, IPs). */
  readonly tlsServerName?: string;
  /** Extra metadata on every call (ztunnel's XDS_HEADER_* / CA_HEADER_*). */
  readonly headers?: Readonly<Record<string, string>>;
}

/** Failures to set up a call, before anything reached istiod; `file` names what to fix. */
export interface IstiodSetupError {
  readonly message: string;
  readonly file?: string;
}

export type IstiodResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: IstiodSetupError };

/** Decode limit for istiod's answers: a large mesh's full workload state (ztunnel allows 200 MiB). */
const MAX_RECEIVE_BYTES = 200 * 1024 * 1024;

/**
 * A gRPC client to istiod, rebuilt when the root certificate file changes (Istio rotates its root by
 * updating the ConfigMap, which kubelet swaps in place).
 */
export class IstiodChannel {
  readonly address: string;
  readonly #options: IstiodConnectionOptions;
  #client: grpc.Client | undefined;
  #rootPem: string | undefined;

  constructor(options: IstiodConnectionOptions) {
    this.#options = options;
    this.address = options.address ?? DEFAULT_ISTIOD_ADDRESS;
  }

  /** The client for the current root; fails with a message naming the root file if it cannot be read. */
  async client(): Promise<IstiodResult<grpc.Client>> {
    const file = this.#options.rootCertFile ?? DEFAULT_ROOT_CERT_FILE;
    let rootPem: string;
    try {
      rootPem = await readFile(file, 'utf8');
    } catch (err) {
      return { ok: false, error: { file, message: `cannot read istiod's root certificate ${file}: ${messageOf(err)} (mount the istio-ca-root-cert ConfigMap there, or pass its path)` } };
    }
    if (!rootPem.includes('-----BEGIN CERTIFICATE-----')) {
      return { ok: false, error: { file, message: `istiod's root certificate file ${file} holds no PEM certificate` } };
    }
    if (this.#client && rootPem === this.#rootPem) return { ok: true, value: this.#client };
    const loaded = await loadGrpc();
    if (!loaded.ok) return { ok: false, error: { message: `cannot reach istiod at ${this.address}: ${loaded.message}` } };
    this.#client?.close();
    const channelOptions: grpc.ChannelOptions = {
      'grpc.max_receive_message_length': MAX_RECEIVE_BYTES,
      // Reconnection is ours (xDS backoff, certificate retries); keep grpc-js's own short.
      'grpc.initial_reconnect_backoff_ms': 10,
      'grpc.max_reconnect_backoff_ms': 1000,
    };
    const serverName = this.#options.tlsServerName;
    if (serverName !== undefined) {
      channelOptions['grpc.ssl_target_name_override'] = serverName;
      channelOptions['grpc.default_authority'] = serverName;
    }
    let credentials: grpc.ChannelCredentials;
    try {
      credentials = loaded.grpc.credentials.createSsl(Buffer.from(rootPem));
    } catch (err) {
      return { ok: false, error: { file, message: `istiod's root certificate ${file} is not usable: ${messageOf(err)}` } };
    }
    this.#client = new loaded.grpc.Client(this.address, credentials, channelOptions);
    this.#rootPem = rootPem;
    return { ok: true, value: this.#client };
  }

  /** The metadata every call carries: the bearer token (read now), cluster id and extra headers. */
  async metadata(): Promise<IstiodResult<grpc.Metadata>> {
    const loaded = await loadGrpc();
    if (!loaded.ok) return { ok: false, error: { message: `cannot call istiod at ${this.address}: ${loaded.message}` } };
    const metadata = new loaded.grpc.Metadata();
    for (const [key, value] of Object.entries(this.#options.headers ?? {})) metadata.set(key.toLowerCase(), value);
    if (this.#options.clusterId) metadata.set('clusterid', this.#options.clusterId);
    const tokenFile = this.#options.tokenFile;
    if (tokenFile !== undefined) {
      let token: string;
      try {
        token = (await readFile(tokenFile, 'utf8')).trim();
      } catch (err) {
        return {
          ok: false,
          error: { file: tokenFile, message: `cannot read the service-account token ${tokenFile}: ${messageOf(err)} (is the projected istio-token volume, audience istio-ca, mounted?)` },
        };
      }
      if (token === '') return { ok: false, error: { file: tokenFile, message: `the service-account token file ${tokenFile} is empty` } };
      metadata.set('authorization', `Bearer ${token}`);
    }
    return { ok: true, value: metadata };
  }

  close(): void {
    this.#client?.close();
    this.#client = undefined;
    this.#rootPem = undefined;
  }
}

/** A gRPC status as one line an operator can act on, with a hint for the usual causes. */
export function describeGrpcError(err: unknown, address: string): string {
  const status = err as Partial<grpc.StatusObject> & { message?: string };
  if (typeof status?.code !== 'number') return messageOf(err);
  const name = grpcStatusName(status.code);
  const details = status.details || status.message || '';
  const hint =
    status.code === GrpcStatus.UNAVAILABLE
      ? `; is istiod running at ${address}, does its certificate chain to the configured root, and does a NetworkPolicy allow port 15012?`
      : status.code === GrpcStatus.UNAUTHENTICATED
        ? '; istiod refused our token (check the token file, its audience istio-ca, and --cluster-id)'
        : status.code === GrpcStatus.DEADLINE_EXCEEDED
          ? `; istiod at ${address} did not answer in time`
          : '';
  return `${name}: ${details}${hint}`;
}

/** The HTTP/2 path of a gRPC method: `/<package>.<Service>/<Method>`. */
export function grpcMethodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

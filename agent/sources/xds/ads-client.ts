// The delta ADS stream to istiod, as ztunnel runs it: one bidirectional gRPC stream carrying a
// wildcard subscription per type, every response answered with an ACK or a NACK naming the rejected
// resources, and on any break a new stream after a backoff (10 ms doubling to 15 s, jittered) that
// tells istiod, per type, which resource versions the agent already holds.

import { create, toBinary } from '@bufbuild/protobuf';
import type * as grpc from '@grpc/grpc-js';
import { type IstiodConnectionOptions, IstiodChannel, describeGrpcError, grpcMethodPath } from '../../identity/istiod-channel.js';
import type { Node } from '../../proto/envoy/config/core/v3/base_pb.js';
import {
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  type Resource,
  AggregatedDiscoveryService,
  DeltaDiscoveryRequestSchema,
} from '../../proto/envoy/service/discovery/v3/discovery_pb.js';
import { StatusSchema } from '../../proto/google/rpc/status_pb.js';
import type { Logger } from '../../telemetry/log.js';
import { Backoff, type BackoffOptions } from '../backoff.js';
import { type DecodedResponse, MAX_RESPONSE_BYTES, decodeResponse } from './bounded-response.js';

export const DELTA_ADS_PATH = grpcMethodPath(AggregatedDiscoveryService.method.deltaAggregatedResources);

/** One resource the handler refused, and why; the NACK carries these. */
export interface RejectedResource {
  readonly name: string;
  readonly reason: string;
}

/**
 * Applies one response of its type. Resources not in `rejected` are taken as accepted: their versions
 * are what the next stream reports in initial_resource_versions.
 */
export type ResponseHandler = (response: { readonly resources: readonly Resource[]; readonly removed: readonly string[] }) => readonly RejectedResource[];

export interface DeltaAdsClientOptions {
  readonly connection: IstiodConnectionOptions;
  readonly node: Node;
  /** Type URL → what applies its responses. Subscribed in this order. */
  readonly handlers: ReadonlyMap<string, ResponseHandler>;
  /** Reconnect delays; default 10 ms doubling to 15 s, as ztunnel, with the sources' shared jitter. */
  readonly backoff?: Partial<BackoffOptions>;
  /** Responses larger than this are NACKed undecoded; default MAX_RESPONSE_BYTES. */
  readonly maxResponseBytes?: number;
  readonly log: Logger;
}

/** What the stream did, for the source (first sync) and for tests and metrics. */
export type AdsEvent =
  | { readonly type: 'connected'; readonly stream: number }
  | { readonly type: 'response'; readonly typeUrl: string; readonly nonce: string; readonly accepted: number; readonly removed: number; readonly rejected: readonly RejectedResource[] }
  | { readonly type: 'synced' }
  | { readonly type: 'disconnected'; readonly stream: number; readonly error: string; readonly retryInMs: number };

export type AdsListener = (event: AdsEvent) => void;

const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 10, maxMs: 15_000 };

type AdsCall = grpc.ClientDuplexStream<DeltaDiscoveryRequest, DecodedResponse>;

export class DeltaAdsClient {
  readonly #options: DeltaAdsClientOptions;
  readonly #channel: IstiodChannel;
  readonly #backoff: Backoff;
  /** Per type: name → version of every resource held, for initial_resource_versions. */
  readonly #known = new Map<string, Map<string, string>>();
  readonly #synced = new Set<string>();
  readonly #listeners = new Set<AdsListener>();
  #call: AdsCall | undefined;
  #stream = 0;
  #failures = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #started = false;
  #closed = false;

  constructor(options: DeltaAdsClientOptions) {
    this.#options = options;
    this.#channel = new IstiodChannel(options.connection);
    this.#backoff = new Backoff({ ...DEFAULT_BACKOFF, ...options.backoff });
    for (const typeUrl of options.handlers.keys()) this.#known.set(typeUrl, new Map());
  }

  get address(): string {
    return this.#channel.address;
  }

  /** True once every type has had its first response applied. */
  get synced(): boolean {
    return this.#synced.size === this.#options.handlers.size;
  }

  /** Opens the stream; reconnects by itself until close(). */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    void this.#connect();
  }

  subscribe(listener: AdsListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    this.#call?.cancel();
    this.#call = undefined;
    this.#channel.close();
    this.#listeners.clear();
  }

  async #connect(): Promise<void> {
    if (this.#closed) return;
    const stream = ++this.#stream;
    const client = await this.#channel.client();
    if (!client.ok) return this.#retry(stream, client.error.message);
    const metadata = await this.#channel.metadata();
    if (!metadata.ok) return this.#retry(stream, metadata.error.message);
    if (this.#closed) return;

    const maxBytes = this.#options.maxResponseBytes ?? MAX_RESPONSE_BYTES;
    const call = client.value.makeBidiStreamRequest(
      DELTA_ADS_PATH,
      (request: DeltaDiscoveryRequest) => Buffer.from(toBinary(DeltaDiscoveryRequestSchema, request)),
      // Decoded here rather than by grpc-js, which would end the stream on the first bad message.
      (bytes: Buffer): DecodedResponse => decodeResponse(bytes, maxBytes),
      metadata.value,
    );
    this.#call = call;
    let responded = false;
    let ended = false;
    const end = (error: string): void => {
      if (ended) return;
      ended = true;
      if (this.#call === call) this.#call = undefined;
      // A stream that got as far as a response was healthy: start the backoff over.
      if (responded) {
        this.#backoff.reset();
        this.#failures = 0;
      } else {
        // istiod unreachable: grpc-js would keep redialling it about once a second whatever our
        // backoff; a fresh channel at the next try dials then and only then.
        this.#channel.close();
      }
      this.#retry(stream, error);
    };
    call.on('data', (decoded: DecodedResponse) => {
      if (decoded.ok) {
        responded = true;
        this.#respond(call, decoded.response);
      } else if (decoded.typeUrl !== undefined && decoded.nonce !== undefined) {
        this.#refuse(call, decoded.typeUrl, decoded.nonce, decoded.reason);
      } else {
        // Without a nonce there is nothing to NACK: a new stream makes istiod send its state again.
        this.#options.log.error({ address: this.address, stream }, `istiod sent a response the agent cannot use: ${decoded.reason}; the last good state stays in force`);
        end(`unusable response: ${decoded.reason}`);
        call.cancel();
      }
    });
    call.on('error', (err: Error) => end(describeGrpcError(err, this.address)));
    call.on('status', (status: grpc.StatusObject) => end(status.code === 0 ? 'istiod ended the stream' : `${status.code}: ${status.details}`));
    call.on('end', () => end('istiod ended the stream'));

    this.#emit({ type: 'connected', stream });
    // Opened here means asked for: whether istiod is there shows in its first response or the stream's end.
    this.#options.log.debug({ address: this.address, stream }, `xDS stream ${stream} to ${this.address} opened`);
    for (const typeUrl of this.#options.handlers.keys()) {
      // Empty subscribe lists: a wildcard subscription. The versions let istiod skip what we hold.
      const initialResourceVersions = Object.fromEntries(this.#known.get(typeUrl) ?? []);
      call.write(create(DeltaDiscoveryRequestSchema, { node: this.#options.node, typeUrl, initialResourceVersions }));
    }
  }

  #retry(stream: number, error: string): void {
    if (this.#closed) return;
    this.#failures++;
    const retryInMs = Math.max(1, this.#backoff.next());
    // Each retry at debug: the source says an outage once, with the state it keeps serving.
    this.#options.log.debug({ address: this.address, stream, retryInMs, attempt: this.#failures }, `xDS stream to ${this.address} ended: ${error}; reconnecting in ${retryInMs} ms`);
    this.#emit({ type: 'disconnected', stream, error, retryInMs });
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => void this.#connect(), retryInMs);
  }

  /** Applies a response and answers it: ACK when every resource was taken, else NACK with the reasons. */
  #respond(call: AdsCall, response: DeltaDiscoveryResponse): void {
    const { typeUrl, nonce } = response;
    const handler = this.#options.handlers.get(typeUrl);
    let rejected: readonly RejectedResource[];
    if (!handler) {
      rejected = [{ name: '*', reason: `type ${typeUrl} was never subscribed to` }];
    } else {
      try {
        rejected = handler({ resources: response.resources, removed: response.removedResources });
      } catch (err) {
        // A bug in a handler must not take the stream down: refuse the whole response instead.
        rejected = [{ name: '*', reason: `applying the response failed: ${(err as Error).message}` }];
      }
      const known = this.#known.get(typeUrl)!;
      const refused = new Set(rejected.map((r) => r.name));
      if (!refused.has('*')) {
        for (const name of response.removedResources) known.delete(name);
        for (const resource of response.resources) if (!refused.has(resource.name)) known.set(resource.name, resource.version);
      }
    }
    this.#answer(call, typeUrl, nonce, rejected);
    const accepted = response.resources.length - rejected.filter((r) => r.name !== '*').length;
    this.#emit({ type: 'response', typeUrl, nonce, accepted, removed: response.removedResources.length, rejected });
    if (handler && !this.#synced.has(typeUrl)) {
      this.#synced.add(typeUrl);
      if (this.synced) this.#emit({ type: 'synced' });
    }
  }

  /** NACKs a response that was never decoded; nothing of it is applied or remembered. */
  #refuse(call: AdsCall, typeUrl: string, nonce: string, reason: string): void {
    const rejected = [{ name: '*', reason }];
    this.#answer(call, typeUrl, nonce, rejected);
    this.#emit({ type: 'response', typeUrl, nonce, accepted: 0, removed: 0, rejected });
  }

  /** ACK when nothing was rejected, else NACK with the reasons. */
  #answer(call: AdsCall, typeUrl: string, nonce: string, rejected: readonly RejectedResource[]): void {
    const answer = create(DeltaDiscoveryRequestSchema, { typeUrl, responseNonce: nonce });
    if (rejected.length > 0) {
      const message = rejected.map((r) => (r.name === '*' ? r.reason : `${r.name}: ${r.reason}`)).join('; ');
      answer.errorDetail = create(StatusSchema, { code: 3 /* INVALID_ARGUMENT */, message });
      this.#options.log.warn({ typeUrl, nonce, rejected: rejected.length }, `NACK ${shortType(typeUrl)} (nonce ${nonce}): ${message}`);
    }
    if (!call.writableEnded) call.write(answer);
  }

  #emit(event: AdsEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (err) {
        this.#options.log.error({ err }, `an xDS ${event.type} listener failed: ${(err as Error).message}`);
      }
    }
  }
}

/** `type.googleapis.com/istio.workload.Address` → `Address`, for log lines. */
export function shortType(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf('.') + 1);
}

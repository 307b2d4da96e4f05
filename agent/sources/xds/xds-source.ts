// xDS mode's source of state: istiod's workload API (Address and Authorization resources over delta
// ADS), kept as the last accepted version of every resource and swapped into the store as one
// snapshot per response. A resource that does not decode or check is NACKed and its previous version
// stays; nothing is published until both types have synced, so the agent never enforces workloads
// without their policies.

import { type DescMessage, type MessageShape, fromBinary } from '@bufbuild/protobuf';
import { formatDiagnostic } from '../../config/diagnostics.js';
import type { IstiodConnectionOptions } from '../../identity/istiod-channel.js';
import type { Resource } from '../../proto/envoy/service/discovery/v3/discovery_pb.js';
import { AuthorizationSchema } from '../../proto/istio/security/authorization_pb.js';
import { AddressSchema } from '../../proto/istio/workload/workload_pb.js';
import type { WorkloadStore } from '../../state/store.js';
import type { Logger } from '../../telemetry/log.js';
import type { LoadOutcome } from '../local-files.js';
import type { BackoffOptions } from '../backoff.js';
import type { MeshSource } from '../source.js';
import { type AdsEvent, type RejectedResource, type ResponseHandler, DeltaAdsClient, shortType } from './ads-client.js';
import { type XdsNodeInfo, xdsNode } from './node.js';
import { type XdsAddress, translateAddress } from './translate-address.js';
import { type XdsAuthorization, translateAuthorization } from './translate-authorization.js';
import type { Translated } from './translated.js';
import { buildXdsSnapshot } from './xds-snapshot.js';

export const ADDRESS_TYPE_URL = 'type.googleapis.com/istio.workload.Address';
export const AUTHORIZATION_TYPE_URL = 'type.googleapis.com/istio.security.Authorization';

export interface XdsSourceOptions {
  /** istiod's address, root certificate, token and cluster id. */
  readonly connection: IstiodConnectionOptions;
  readonly node: XdsNodeInfo;
  readonly trustDomain: string;
  readonly clusterDomain: string;
  readonly backoff?: Partial<BackoffOptions>;
  /** Responses larger than this are NACKed undecoded (default: bounded-response.ts's MAX_RESPONSE_BYTES). */
  readonly maxResponseBytes?: number;
}

export class XdsSource implements MeshSource {
  readonly #options: XdsSourceOptions;
  readonly #store: WorkloadStore;
  readonly #log: Logger;
  readonly #client: DeltaAdsClient;
  readonly #addresses = new Map<string, XdsAddress>();
  readonly #authorizations = new Map<string, XdsAuthorization>();
  /** Resources refused since the last version of each was accepted; counted as errors in LoadOutcome. */
  readonly #refused = new Map<string, string>();
  /** Types that have had their first response. */
  readonly #seen = new Set<string>();
  /** Since when istiod has not answered, and the attempts since: an outage is logged when it starts and when it ends. */
  #outage: { readonly since: number; attempts: number } | undefined;
  #first: Promise<LoadOutcome> | undefined;
  #resolveFirst: ((outcome: LoadOutcome) => void) | undefined;
  #rejectFirst: ((err: Error) => void) | undefined;

  constructor(options: XdsSourceOptions, store: WorkloadStore, log: Logger) {
    this.#options = options;
    this.#store = store;
    this.#log = log.child({ source: 'xds' });
    const handlers = new Map<string, ResponseHandler>([
      [ADDRESS_TYPE_URL, (r) => this.#apply(ADDRESS_TYPE_URL, AddressSchema, translateAddress, this.#addresses, r)],
      [AUTHORIZATION_TYPE_URL, (r) => this.#apply(AUTHORIZATION_TYPE_URL, AuthorizationSchema, translateAuthorization, this.#authorizations, r)],
    ]);
    this.#client = new DeltaAdsClient({
      connection: options.connection,
      node: xdsNode(options.node),
      handlers,
      ...(options.backoff ? { backoff: options.backoff } : {}),
      ...(options.maxResponseBytes !== undefined ? { maxResponseBytes: options.maxResponseBytes } : {}),
      log: this.#log,
    });
    this.#client.subscribe((event) => this.#onEvent(event));
  }

  /**
   * Connects to istiod and resolves once both types have synced and the first snapshot is in the
   * store. While istiod is unreachable it keeps retrying (the agent stays not ready); it rejects only
   * if the source is closed first.
   */
  load(): Promise<LoadOutcome> {
    if (!this.#first) {
      this.#first = new Promise<LoadOutcome>((resolve, reject) => {
        this.#resolveFirst = resolve;
        this.#rejectFirst = reject;
      });
      this.#client.start();
    }
    return this.#first;
  }

  /** Changes flow from the stream as soon as load() has synced; nothing more to start. */
  async watch(): Promise<void> {
    await this.load();
  }

  /** Events of the underlying stream (connections, ACK/NACK, sync), for diagnostics and tests. */
  subscribe(listener: (event: AdsEvent) => void): () => void {
    return this.#client.subscribe(listener);
  }

  close(): void {
    this.#client.close();
    this.#rejectFirst?.(new Error('the xDS source was closed before istiod sent the initial state'));
    this.#resolveFirst = undefined;
    this.#rejectFirst = undefined;
  }

  #apply<S extends DescMessage, T>(
    typeUrl: string,
    schema: S,
    translate: (message: MessageShape<S>) => Translated<T>,
    held: Map<string, T>,
    response: { readonly resources: readonly Resource[]; readonly removed: readonly string[] },
  ): RejectedResource[] {
    const rejected: RejectedResource[] = [];
    for (const name of response.removed) {
      held.delete(name);
      this.#refused.delete(`${typeUrl}|${name}`);
    }
    for (const resource of response.resources) {
      const decoded = decode(typeUrl, schema, resource);
      const translated = decoded.ok ? translate(decoded.value) : decoded;
      const key = `${typeUrl}|${resource.name}`;
      if (translated.ok) {
        held.set(resource.name, translated.value);
        this.#refused.delete(key);
      } else {
        rejected.push({ name: resource.name || '(unnamed)', reason: translated.reason });
        this.#refused.set(key, translated.reason);
        const kept = held.has(resource.name) ? '; its previous version stays in force' : '';
        this.#log.error({ typeUrl, resource: resource.name, version: resource.version }, `istiod sent an unusable ${shortType(typeUrl)} ${resource.name}: ${translated.reason}${kept}`);
      }
    }
    // Before both types have had their first response, a snapshot would hold workloads without their policies.
    this.#seen.add(typeUrl);
    if (this.#seen.size === 2) this.#publish();
    return rejected;
  }

  #onEvent(event: AdsEvent): void {
    if (event.type === 'disconnected') return this.#disconnected(event);
    if (event.type === 'response') this.#answered();
    if (event.type !== 'synced' || !this.#resolveFirst) return;
    const snapshot = this.#store.current;
    if (!snapshot) return;
    const warnings = snapshot.diagnostics.filter((d) => d.severity === 'warning').length;
    this.#resolveFirst({ snapshot, errors: this.#refused.size + snapshot.diagnostics.length - warnings, warnings });
    this.#resolveFirst = undefined;
    this.#rejectFirst = undefined;
  }

  /** One warning per outage, saying what stays in force; the stream's own retries go to debug. */
  #disconnected(event: Extract<AdsEvent, { type: 'disconnected' }>): void {
    if (this.#outage) {
      this.#outage.attempts++;
      return;
    }
    this.#outage = { since: Date.now(), attempts: 1 };
    const address = this.#client.address;
    const version = this.#store.current?.version;
    const serving = version === undefined ? 'no state from istiod yet, so the agent is not ready' : `serving xDS state version ${version}, the last good state`;
    this.#log.warn({ address, error: event.error, retryInMs: event.retryInMs }, `xDS stream to ${address} ended: ${event.error}; ${serving}; reconnecting with backoff until istiod answers`);
  }

  #answered(): void {
    const outage = this.#outage;
    if (!outage) return;
    this.#outage = undefined;
    const seconds = ((Date.now() - outage.since) / 1000).toFixed(1);
    this.#log.info({ address: this.#client.address, attempts: outage.attempts }, `istiod at ${this.#client.address} answered again after ${seconds} s and ${outage.attempts} failed attempts; its changes apply from now on`);
  }

  #publish(): void {
    const { snapshot, dryRun } = buildXdsSnapshot(this.#addresses, this.#authorizations, {
      version: (this.#store.current?.version ?? 0) + 1,
      trustDomain: this.#options.trustDomain,
      clusterDomain: this.#options.clusterDomain,
      node: { name: this.#options.node.nodeName, ip: this.#options.node.ip },
    });
    for (const d of snapshot.diagnostics) this.#log[d.severity === 'error' ? 'error' : 'warn'](formatDiagnostic(d));
    this.#store.replace(snapshot);
    this.#log.info(
      { version: snapshot.version, workloads: snapshot.workloads.size, services: snapshot.services.size, policies: snapshot.istio.authorizationPolicies.length, dryRun },
      `xDS state version ${snapshot.version} in force: ${snapshot.workloads.size} workloads, ${snapshot.services.size} services, ` +
        `${snapshot.istio.authorizationPolicies.length} authorization policies` +
        (dryRun > 0 ? ` (${dryRun} dry-run, not enforced)` : '') +
        (this.#refused.size > 0 ? `; ${this.#refused.size} resources refused (see above; last good versions kept)` : ''),
    );
  }
}

/** The Any inside a Resource, decoded as `schema`; any mismatch is a reason to refuse it. */
function decode<S extends DescMessage>(typeUrl: string, schema: S, resource: Resource): Translated<MessageShape<S>> {
  if (resource.name === '') return { ok: false, reason: 'the resource has no name' };
  const any = resource.resource;
  if (!any) return { ok: false, reason: 'the resource has no body' };
  if (any.typeUrl !== typeUrl) return { ok: false, reason: `the resource is a ${any.typeUrl || '(untyped)'}, not a ${typeUrl}` };
  try {
    return { ok: true, value: fromBinary(schema, any.value) };
  } catch (err) {
    return { ok: false, reason: `cannot decode ${shortType(typeUrl)}: ${(err as Error).message}` };
  }
}

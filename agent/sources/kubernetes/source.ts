// Kubernetes mode's source of state: every object the agent reads, listed and watched cluster-wide
// (the agent enrolls only its own node's pods, but routes to endpoints on every node). Each object
// goes through the same validation as a local YAML document (agent/config parseConfigFile) and the
// same resolution (resolveConfig: an object rejected now keeps its last good version), then into the
// same buildSnapshot; so the same objects give the same snapshot whatever the source.
//
// Objects are ordered by kind, then creation time, then namespace/name before resolution: where two
// objects conflict (a pod IP or cluster IP claimed twice), the older one wins, as Istio decides.

import { type ConfigDiagnostic, formatDiagnostic } from '../../config/diagnostics.js';
import { MAX_NESTING_DEPTH, jsonNestingDepth, tooDeep } from '../../config/input-limits.js';
import { type FileParseResult, type ResolvedConfig, parseConfigFile, resolveConfig, unreadableFile } from '../../config/load.js';
import type { MeshObject } from '../../config/objects.js';
import { buildSnapshot } from '../../state/build.js';
import type { OwnCluster } from '../../state/clusters.js';
import type { WorkloadStore } from '../../state/store.js';
import type { Logger } from '../../telemetry/log.js';
import type { BackoffOptions } from '../backoff.js';
import type { LoadOutcome } from '../local-files.js';
import type { ApiError, KubeApiClient, RawObject } from './api-client.js';
import { Reflector, type ReflectorHandler, type ReflectorOptions } from './reflector.js';
import { RemoteClusters } from './remote-clusters.js';
import { WATCHED_RESOURCES, type WatchedResource, collectionPath } from './resources.js';
import { RouteStatusWriter } from './route-status.js';

export interface KubernetesSourceOptions {
  readonly client: KubeApiClient;
  readonly trustDomain: string;
  readonly clusterDomain: string;
  /** How long to gather events before building a new snapshot (a rollout changes many pods at once). */
  readonly debounceMs?: number;
  readonly backoff?: BackoffOptions;
  readonly pageSize?: number;
  readonly watchTimeoutSeconds?: { readonly min: number; readonly max: number };
  readonly notServedRetryMs?: number;
  /** Write Gateway API routes' status.parents (default true); needs patch on <routes>/status. */
  readonly writeRouteStatus?: boolean;
  /** The agent's own cluster: its ID (remote secrets naming it are ignored) and configured network. */
  readonly cluster?: OwnCluster;
  /** Read the clusters that remote secrets name (default true; docs/multicluster.md). */
  readonly remoteClusters?: boolean;
  /** How long the first load waits for a remote cluster's first lists (default 10 s). */
  readonly remoteSyncTimeoutMs?: number;
}

interface Entry {
  readonly resource: WatchedResource;
  readonly created: string;
  readonly parsed: FileParseResult;
  /** The parsed result as text: an event that changes nothing the mesh reads does not rebuild. */
  readonly fingerprint: string;
}

const KIND_ORDER = new Map(WATCHED_RESOURCES.map((r, i) => [r.kind, i]));

export class KubernetesSource {
  readonly #options: KubernetesSourceOptions;
  readonly #store: WorkloadStore;
  readonly #log: Logger;
  readonly #reflectors: Reflector[];
  readonly #entries = new Map<string, Entry>();
  /** Resources whose last call failed, with why: an outage is logged when it starts and when it ends. */
  readonly #unreachable = new Map<string, string>();
  readonly #toldOnce = new Set<string>();
  #lastGood: ResolvedConfig | undefined;
  #reported = new Set<string>();
  #live = false;
  #dirty = false;
  #timer: NodeJS.Timeout | undefined;
  readonly #routeStatus: RouteStatusWriter | undefined;
  readonly #remotes: RemoteClusters | undefined;

  constructor(options: KubernetesSourceOptions, store: WorkloadStore, log: Logger) {
    this.#options = options;
    this.#store = store;
    this.#log = log;
    const reflectorOptions: ReflectorOptions = {
      backoff: options.backoff ?? { initialMs: 250, maxMs: 30_000 },
      pageSize: options.pageSize ?? 500,
      watchTimeoutSeconds: options.watchTimeoutSeconds ?? { min: 300, max: 600 },
      notServedRetryMs: options.notServedRetryMs ?? 60_000,
    };
    this.#routeStatus = options.writeRouteStatus === false ? undefined : new RouteStatusWriter(options.client, log);
    this.#reflectors = WATCHED_RESOURCES.map((r) => new Reflector(r, options.client, this.#handler, reflectorOptions));
    this.#remotes =
      options.remoteClusters === false
        ? undefined
        : new RemoteClusters(
            {
              client: options.client,
              ownCluster: options.cluster?.id ?? '',
              reflector: reflectorOptions,
              onChange: () => this.#changed(),
              ...(options.remoteSyncTimeoutMs !== undefined ? { syncTimeoutMs: options.remoteSyncTimeoutMs } : {}),
            },
            log,
          );
  }

  /**
   * Lists every resource, then builds and swaps in the first snapshot. While the API server cannot be
   * reached this keeps retrying (and logging why); the agent is not ready until it resolves.
   */
  async load(): Promise<LoadOutcome> {
    this.#log.info({ server: this.#options.client.server }, `listing ${WATCHED_RESOURCES.map((r) => r.plural).join(', ')} from ${this.#options.client.server}`);
    for (const reflector of this.#reflectors) reflector.start();
    await Promise.all([...this.#reflectors.map((r) => r.synced), this.#remotes?.load()]);
    return this.#rebuild();
  }

  /** Applies watch events from now on; events that arrived since `load()` apply at once. */
  async watch(): Promise<void> {
    this.#live = true;
    if (this.#dirty) this.#schedule();
  }

  async close(): Promise<void> {
    this.#live = false;
    clearTimeout(this.#timer);
    await Promise.all([...this.#reflectors.map((r) => r.stop()), this.#remotes?.close()]);
    await this.#routeStatus?.settled();
  }

  /** Resolves once the clusters the remote secrets name now are being read, or stopped (for tests). */
  async remoteClustersSettled(): Promise<void> {
    await this.#remotes?.settled();
  }

  /** Resolves once every route status write started so far has finished (for tests). */
  async statusWritten(): Promise<void> {
    await this.#routeStatus?.settled();
  }

  readonly #handler: ReflectorHandler = {
    replace: (resource, items) => {
      const keep = new Set<string>();
      for (const item of items) {
        const key = this.#put(resource, item);
        if (key) keep.add(key);
      }
      for (const [key, entry] of this.#entries) {
        if (entry.resource === resource && !keep.has(key)) this.#delete(key);
      }
    },
    upsert: (resource, object) => void this.#put(resource, object),
    remove: (resource, object) => this.#delete(keyOf(resource, object)),
    failed: (resource, error, retryInMs) => this.#failed(resource, error, retryInMs),
    recovered: (resource) => {
      if (!this.#unreachable.delete(resource.plural)) return;
      if (this.#unreachable.size === 0) this.#log.info({ server: this.#options.client.server }, 'Kubernetes API server reachable again; watching for changes');
    },
    notServed: (resource, retryInMs) => {
      const versions = resource.versions.map((v) => collectionPath(resource, v)).join(', ');
      this.#once(`not-served:${resource.plural}`, 'info', `the API server serves no ${resource.kind} (${versions} answer 404: is ${resource.crd ?? 'its CRD'} installed?); none in force, looking again every ${Math.round(retryInMs / 1000)} s`);
    },
  };

  /** Parses one object as agent/config would a YAML document; returns its key, or undefined if unnamed. */
  #put(resource: WatchedResource, raw: RawObject): string | undefined {
    const key = keyOf(resource, raw);
    if (key === undefined) return undefined;
    const { managedFields: _managed, ...metadata } = raw.metadata ?? {};
    const object = { ...raw, metadata };
    const location = locationOf(resource, raw);
    // Measured before JSON.stringify and the YAML composer, which recurse and cannot survive a bomb.
    const parsed = jsonNestingDepth(object) > MAX_NESTING_DEPTH ? unreadableFile(location, tooDeep(location, 1)) : parseConfigFile(JSON.stringify(object), location);
    const fingerprint = JSON.stringify([parsed.objects, parsed.rejected, parsed.diagnostics], jsonable);
    // Route status is compared with every version the server sends, status-only changes included.
    const refusal = parsed.diagnostics.find((d) => d.severity === 'error');
    this.#routeStatus?.observe(resource, object, refusal ? formatDiagnostic(refusal) : undefined);
    if (this.#entries.get(key)?.fingerprint === fingerprint) return key;
    const created = typeof metadata['creationTimestamp'] === 'string' ? metadata['creationTimestamp'] : '';
    this.#entries.set(key, { resource, created, parsed: withResourceVersion(parsed, metadata['resourceVersion']), fingerprint });
    this.#changed();
    return key;
  }

  #delete(key: string | undefined): void {
    if (key !== undefined) this.#routeStatus?.forget(key);
    if (key !== undefined && this.#entries.delete(key)) this.#changed();
  }

  #changed(): void {
    this.#dirty = true;
    if (this.#live) this.#schedule();
  }

  #schedule(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      try {
        this.#rebuild();
      } catch (err) {
        this.#log.error({ err }, `building the configuration from the API server failed: ${(err as Error).message}; the last good state stays in force`);
      }
    }, this.#options.debounceMs ?? 100);
  }

  #rebuild(): LoadOutcome {
    this.#dirty = false;
    const entries = [...this.#entries.values()].sort(
      (a, b) => KIND_ORDER.get(a.resource.kind)! - KIND_ORDER.get(b.resource.kind)! || a.created.localeCompare(b.created) || a.parsed.file.localeCompare(b.parsed.file),
    );
    const resolved = resolveConfig(
      entries.map((e) => e.parsed),
      this.#lastGood,
    );
    this.#lastGood = resolved;
    const snapshot = buildSnapshot(resolved.objects, {
      version: (this.#store.current?.version ?? 0) + 1,
      trustDomain: this.#options.trustDomain,
      clusterDomain: this.#options.clusterDomain,
      ...(this.#options.cluster ? { cluster: this.#options.cluster } : {}),
      remoteClusters: this.#remotes?.objects() ?? [],
    });
    const diagnostics = [...resolved.diagnostics, ...snapshot.diagnostics];
    const errors = diagnostics.filter((d) => d.severity === 'error').length;
    this.#report(diagnostics);
    this.#store.replace(snapshot);
    this.#routeStatus?.reconcile(snapshot);
    this.#log.info(
      { version: snapshot.version, workloads: snapshot.workloads.size, services: snapshot.services.size, errors },
      `configuration version ${snapshot.version} in force: ${snapshot.workloads.size} workloads, ${snapshot.services.size} services` +
        (errors > 0 ? `, ${errors} objects rejected (last good versions kept)` : ''),
    );
    return { snapshot, errors, warnings: diagnostics.length - errors };
  }

  /** Logs each problem once, when it appears, rather than again on every rebuild while it lasts. */
  #report(diagnostics: readonly ConfigDiagnostic[]): void {
    const now = new Set<string>();
    for (const d of diagnostics) {
      const text = formatDiagnostic(d);
      now.add(text);
      if (this.#reported.has(text)) continue;
      this.#log[d.severity === 'error' ? 'error' : 'warn']({ object: d.object, field: d.field }, text);
    }
    this.#reported = now;
  }

  #failed(resource: WatchedResource, error: ApiError, retryInMs: number): void {
    const first = this.#unreachable.size === 0;
    const repeated = this.#unreachable.get(resource.plural) === error.message;
    this.#unreachable.set(resource.plural, error.message);
    const version = this.#store.current?.version;
    const serving = version === undefined ? 'no configuration yet; the agent is not ready' : `serving configuration version ${version}, the last good state`;
    const message = `Kubernetes API server: ${error.message}; ${serving}; retrying ${resource.plural} in ${retryInMs} ms`;
    // One warning per outage and per new kind of failure; the retries of the same failure go to debug.
    if (first || !repeated) this.#log.warn({ resource: resource.plural, status: error.status, retryInMs }, message);
    else this.#log.debug({ resource: resource.plural, status: error.status, retryInMs }, message);
  }

  #once(key: string, level: 'info' | 'warn', message: string): void {
    if (this.#toldOnce.has(key)) return;
    this.#toldOnce.add(key);
    this.#log[level]({}, message);
  }
}

function keyOf(resource: WatchedResource, object: RawObject): string | undefined {
  const name = object.metadata?.name;
  if (typeof name !== 'string' || name === '') return undefined;
  return `${resource.kind}/${object.metadata?.namespace ?? ''}/${name}`;
}

/** Where an object came from, in the place a file name goes in every config message. */
function locationOf(resource: WatchedResource, object: RawObject): string {
  const ns = object.metadata?.namespace;
  const base = collectionPath(resource, object.apiVersion?.split('/').pop() ?? resource.versions[0]!);
  const path = ns && resource.namespace === undefined ? base.replace(new RegExp(`/${resource.plural}$`), `/namespaces/${ns}/${resource.plural}`) : base;
  return `kube-apiserver:${path}/${object.metadata?.name ?? ''}`;
}

/**
 * The objects cite the resourceVersion they were read at (ambit explain shows it). Added after the
 * fingerprint, so that a new version that changes nothing the agent reads (a status heartbeat) does not
 * rebuild the snapshot: the version cited is the one whose content is in force.
 */
function withResourceVersion(parsed: FileParseResult, resourceVersion: unknown): FileParseResult {
  if (typeof resourceVersion !== 'string' || resourceVersion === '') return parsed;
  return { ...parsed, objects: parsed.objects.map((o) => ({ ...o, source: { ...o.source, resourceVersion } }) as MeshObject) };
}

/** JSON.stringify replacer for what parsed objects hold besides plain data. */
function jsonable(_key: string, value: unknown): unknown {
  if (value instanceof Map) return [...value.entries()];
  if (value instanceof Set) return [...value];
  if (value instanceof RegExp) return value.toString();
  return value;
}

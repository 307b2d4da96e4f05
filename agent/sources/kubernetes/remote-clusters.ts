// Kubernetes mode's other clusters, found as istiod finds them (docs/multicluster.md): Secrets labelled
// `istio/multiCluster=true` in istio-system, each data key a cluster ID and its value a kubeconfig for
// that cluster. Each such cluster gets its own reflectors for the kinds a remote cluster contributes
// (Nodes, Namespaces, Pods, Services, Gateways); a key or Secret removed stops them. Istio's rules: the
// own cluster's ID is ignored, and an ID another Secret already serves stays with that one.

import { createHash } from 'node:crypto';
import { parseConfigFile } from '../../config/load.js';
import type { MeshObject } from '../../config/objects.js';
import { type RemoteClusterObjects, SYSTEM_NAMESPACE } from '../../state/clusters.js';
import type { Logger } from '../../telemetry/log.js';
import { KubeApiClient, type RawObject } from './api-client.js';
import { connectionFromKubeconfigText } from './connection.js';
import { Reflector, type ReflectorHandler, type ReflectorOptions } from './reflector.js';
import { WATCHED_RESOURCES, type WatchedResource, collectionPath } from './resources.js';

export const REMOTE_SECRET_LABEL = 'istio/multiCluster';

/** The remote secrets: only those labelled, and only in istio-system (a Role there grants them). */
export const REMOTE_SECRETS: WatchedResource = {
  kind: 'Secret',
  group: '',
  versions: ['v1'],
  plural: 'secrets',
  namespace: SYSTEM_NAMESPACE,
  labelSelector: `${REMOTE_SECRET_LABEL}=true`,
};

/** What a remote cluster contributes; its configuration (policies, routes) is its own primary's. */
const REMOTE_KINDS: readonly WatchedResource['kind'][] = ['Node', 'Namespace', 'Pod', 'Service', 'Gateway'];
export const REMOTE_CLUSTER_RESOURCES: readonly WatchedResource[] = WATCHED_RESOURCES.filter((r) => REMOTE_KINDS.includes(r.kind));

export interface RemoteClustersOptions {
  /** The own cluster's API server, where the remote secrets are. */
  readonly client: KubeApiClient;
  readonly ownCluster: string;
  readonly reflector: ReflectorOptions;
  /** Called whenever a remote cluster's objects change, or a cluster comes or goes. */
  readonly onChange: () => void;
  /** How long `load` waits for a newly found cluster's first lists before going on without them. */
  readonly syncTimeoutMs?: number;
}

/** One remote cluster being read: its reflectors and the objects they hold. */
class RemoteCluster {
  readonly #entries = new Map<string, readonly MeshObject[]>();
  readonly #reflectors: Reflector[];
  readonly synced: Promise<void>;
  /** Every resource has been listed once. */
  isSynced = false;

  constructor(
    readonly id: string,
    readonly secret: string,
    readonly fingerprint: string,
    client: KubeApiClient,
    options: RemoteClustersOptions,
    log: Logger,
  ) {
    const told = new Set<string>();
    const handler: ReflectorHandler = {
      replace: (resource, items) => {
        for (const key of [...this.#entries.keys()]) if (key.startsWith(`${resource.kind}/`)) this.#entries.delete(key);
        for (const item of items) this.#put(resource, item);
        options.onChange();
      },
      upsert: (resource, object) => {
        this.#put(resource, object);
        options.onChange();
      },
      remove: (resource, object) => {
        if (this.#entries.delete(entryKey(resource, object))) options.onChange();
      },
      failed: (resource, error, retryInMs) => {
        const text = `remote cluster ${id} (secret ${secret}): ${error.message}; its last known ${resource.plural} stay in force; retrying in ${retryInMs} ms`;
        // One warning per kind of failure while it lasts; its retries go to debug.
        const key = `${resource.plural}: ${error.message}`;
        if (told.has(key)) return log.debug({ cluster: id }, text);
        told.add(key);
        log.warn({ cluster: id, resource: resource.plural }, text);
      },
      recovered: (resource) => {
        if (told.size > 0) log.info({ cluster: id, resource: resource.plural }, `remote cluster ${id} reachable again`);
        told.clear();
      },
      notServed: () => undefined,
    };
    this.#reflectors = REMOTE_CLUSTER_RESOURCES.map((r) => new Reflector(r, client, handler, options.reflector));
    for (const r of this.#reflectors) r.start();
    this.synced = Promise.all(this.#reflectors.map((r) => r.synced)).then(() => {
      this.isSynced = true;
    });
  }

  objects(): MeshObject[] {
    return [...this.#entries.values()].flat();
  }

  async stop(): Promise<void> {
    await Promise.all(this.#reflectors.map((r) => r.stop()));
  }

  #put(resource: WatchedResource, raw: RawObject): void {
    const { managedFields: _managed, ...metadata } = raw.metadata ?? {};
    const location = `kube-apiserver(${this.id}):${collectionPath(resource, resource.versions[0]!)}/${raw.metadata?.name ?? ''}`;
    // An object agent/config rejects is left out, as the own cluster's would be on first sight.
    this.#entries.set(entryKey(resource, raw), parseConfigFile(JSON.stringify({ ...raw, metadata }), location).objects);
  }
}

export class RemoteClusters {
  readonly #options: RemoteClustersOptions;
  readonly #log: Logger;
  readonly #secrets: Reflector;
  /** Secret namespace/name → its clusters (ID → kubeconfig text). */
  readonly #declared = new Map<string, ReadonlyMap<string, string>>();
  readonly #running = new Map<string, RemoteCluster>();
  /** Clusters whose kubeconfig changed: the old reader serves until the new one has listed everything. */
  readonly #previous = new Map<string, RemoteCluster>();
  readonly #told = new Set<string>();
  #reconciling: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(options: RemoteClustersOptions, log: Logger) {
    this.#options = options;
    this.#log = log;
    this.#secrets = new Reflector(REMOTE_SECRETS, options.client, this.#handler, options.reflector);
  }

  /** Lists the remote secrets and waits for the clusters they name (each at most syncTimeoutMs). */
  async load(): Promise<void> {
    this.#secrets.start();
    await this.#secrets.synced;
    await this.#reconciling;
    const timeout = this.#options.syncTimeoutMs ?? 10_000;
    await Promise.all(
      [...this.#running.values()].map(async (cluster) => {
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), timeout)));
        const outcome = await Promise.race([cluster.synced.then(() => 'synced' as const), late]);
        clearTimeout(timer);
        if (outcome !== 'late') return;
        const message = `remote cluster ${cluster.id} (secret ${cluster.secret}) has not answered in ${timeout} ms; going on without its objects until it does`;
        this.#log.warn({ cluster: cluster.id }, message);
      }),
    );
  }

  /** Every cluster being read, in ID order, with the objects known from it so far. */
  objects(): RemoteClusterObjects[] {
    const ids = [...new Set([...this.#running.keys(), ...this.#previous.keys()])].sort();
    return ids.map((id) => {
      const current = this.#running.get(id);
      const serving = current?.isSynced || !this.#previous.has(id) ? current! : this.#previous.get(id)!;
      return { id, objects: serving.objects() };
    });
  }

  /** Resolves once the clusters the secrets name now have been started or stopped (for tests). */
  settled(): Promise<void> {
    return this.#reconciling;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#secrets.stop();
    await this.#reconciling;
    await Promise.all([...this.#running.values(), ...this.#previous.values()].map((c) => c.stop()));
    this.#running.clear();
    this.#previous.clear();
  }

  readonly #handler: ReflectorHandler = {
    replace: (_resource, items) => {
      this.#declared.clear();
      for (const item of items) this.#declare(item);
      this.#reconcile();
    },
    upsert: (_resource, object) => {
      this.#declare(object);
      this.#reconcile();
    },
    remove: (_resource, object) => {
      this.#declared.delete(secretKey(object));
      this.#reconcile();
    },
    failed: (_resource, error) => {
      const forbidden = error.status === 403;
      const text = forbidden
        ? `cannot read remote secrets in ${SYSTEM_NAMESPACE} (403 Forbidden): this agent sees only its own cluster; ` +
          `grant get, list and watch on secrets in ${SYSTEM_NAMESPACE} to join the clusters they name`
        : `remote secrets in ${SYSTEM_NAMESPACE}: ${error.message}; the clusters read so far stay in force`;
      if (this.#told.has(text)) return;
      this.#told.add(text);
      this.#log[forbidden ? 'info' : 'warn']({ resource: 'secrets' }, text);
    },
    recovered: () => this.#told.clear(),
    notServed: () => undefined,
  };

  #declare(secret: RawObject): void {
    const data = (secret as { data?: unknown }).data;
    const clusters = new Map<string, string>();
    if (typeof data === 'object' && data !== null) {
      for (const [id, value] of Object.entries(data)) if (typeof value === 'string') clusters.set(id, Buffer.from(value, 'base64').toString('utf8'));
    }
    this.#declared.set(secretKey(secret), clusters);
  }

  /** Starts, restarts and stops clusters to match the secrets; one pass at a time, in order. */
  #reconcile(): void {
    this.#reconcileWith(() => this.#apply());
  }

  async #apply(): Promise<void> {
    if (this.#closed) return;
    const wanted = new Map<string, { secret: string; kubeconfig: string }>();
    const secrets = [...this.#declared].sort(([a], [b]) => a.localeCompare(b));
    // A cluster keeps the secret it came from while that secret still names it (Istio: first one wins).
    for (const [id, cluster] of this.#running) {
      const kubeconfig = this.#declared.get(cluster.secret)?.get(id);
      if (kubeconfig !== undefined) wanted.set(id, { secret: cluster.secret, kubeconfig });
    }
    for (const [secret, clusters] of secrets) {
      for (const [id, kubeconfig] of clusters) {
        if (id === this.#options.ownCluster) {
          this.#tell(`own:${secret}`, `secret ${secret} names cluster ${id}, this agent's own; that key is ignored`);
          continue;
        }
        const holder = wanted.get(id);
        if (holder && holder.secret !== secret) {
          this.#tell(`dup:${secret}:${id}`, `secret ${secret} names cluster ${id}, which secret ${holder.secret} already serves; that key is ignored`);
          continue;
        }
        wanted.set(id, { secret, kubeconfig });
      }
    }
    let changed = false;
    for (const [id, cluster] of [...this.#running]) {
      const want = wanted.get(id);
      if (want && fingerprint(want.kubeconfig) === cluster.fingerprint) continue;
      this.#running.delete(id);
      changed = true;
      if (want) {
        // A new kubeconfig (rotated credentials): the old reader serves until the new one has synced, as istiod does.
        if (cluster.isSynced || !this.#previous.has(id)) await this.#retire(id, cluster);
        else await cluster.stop();
        continue;
      }
      await cluster.stop();
      await this.#retire(id, undefined);
      this.#log.info({ cluster: id }, `remote cluster ${id} removed (secret ${cluster.secret}); its workloads and services leave the mesh`);
    }
    for (const [id, want] of wanted) {
      if (this.#running.has(id) || this.#closed) continue;
      const connection = await connectionFromKubeconfigText(want.kubeconfig, `the kubeconfig of cluster ${id} in secret ${want.secret}`);
      if (typeof connection === 'string') {
        this.#tell(`bad:${want.secret}:${id}:${fingerprint(want.kubeconfig)}`, `remote cluster ${id}: ${connection}; it is not read until the secret is fixed`);
        continue;
      }
      const cluster = new RemoteCluster(id, want.secret, fingerprint(want.kubeconfig), new KubeApiClient(connection), this.#options, this.#log);
      this.#running.set(id, cluster);
      changed = true;
      if (this.#previous.has(id)) {
        const timeout = this.#options.syncTimeoutMs ?? 10_000;
        const late = new Promise<void>((resolve) => setTimeout(resolve, timeout).unref());
        void Promise.race([cluster.synced, late]).then(() => this.#reconcileWith(() => this.#retireIfCurrent(id, cluster)));
      }
      this.#log.info({ cluster: id, server: connection.server }, `reading remote cluster ${id} at ${connection.server} (secret ${want.secret})`);
    }
    if (changed) this.#options.onChange();
  }

  /** Replaces the reader kept for `id` while a new one syncs (undefined: none), stopping the one it held. */
  async #retire(id: string, keep: RemoteCluster | undefined): Promise<void> {
    const old = this.#previous.get(id);
    if (keep) this.#previous.set(id, keep);
    else this.#previous.delete(id);
    if (old && old !== keep) await old.stop();
  }

  /** The new reader of `id` has synced (or timed out): the old one stops, unless another change came first. */
  async #retireIfCurrent(id: string, current: RemoteCluster): Promise<void> {
    if (this.#running.get(id) !== current || !this.#previous.has(id)) return;
    await this.#retire(id, undefined);
    this.#options.onChange();
  }

  #reconcileWith(step: () => Promise<void>): void {
    this.#reconciling = this.#reconciling.then(step).catch((err: unknown) => this.#log.error({ err }, `remote clusters: ${(err as Error).message}`));
  }

  #tell(key: string, message: string): void {
    if (this.#told.has(key)) return;
    this.#told.add(key);
    this.#log.warn({}, message);
  }
}

function secretKey(object: RawObject): string {
  return `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
}

function entryKey(resource: WatchedResource, object: RawObject): string {
  return `${resource.kind}/${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
}

function fingerprint(kubeconfig: string): string {
  return createHash('sha256').update(kubeconfig).digest('hex');
}

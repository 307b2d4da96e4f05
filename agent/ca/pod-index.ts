// Every pod of the cluster as the CA's node authorization needs it (istiod's pod informer with its
// node+ServiceAccount index): which pod a caller's token is bound to, and which identities run on a
// node. Kept by the same reflector the Kubernetes source uses (list, then watch; pods only).

import type { SpiffeId } from '../state/model.js';
import { formatSpiffeId } from '../identity/spiffe.js';
import type { RawObject } from '../sources/kubernetes/api-client.js';
import type { KubeApiClient } from '../sources/kubernetes/api-client.js';
import { Reflector } from '../sources/kubernetes/reflector.js';
import { WATCHED_RESOURCES } from '../sources/kubernetes/resources.js';
import type { Logger } from '../telemetry/log.js';

export interface IndexedPod {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  /** spec.nodeName; empty while the pod is not scheduled. */
  readonly node: string;
  readonly serviceAccount: string;
  /**
   * The SPIFFE id of its ServiceAccount; undefined when the names cannot form one, or when the pod
   * names no ServiceAccount: the API server gives every pod one except mirror pods (static pods a
   * kubelet creates, which NodeRestriction forbids to name one), and a node must never mint
   * `<namespace>/default` by writing a static pod.
   */
  readonly identity: SpiffeId | undefined;
  /** Succeeded or Failed: its containers are gone, so its node has no business with its identity. */
  readonly finished: boolean;
}

const POD_RESOURCE = WATCHED_RESOURCES.find((r) => r.kind === 'Pod')!;
/** What the kubelet marks its mirror pods (the API server's view of a static pod) with. */
const MIRROR_ANNOTATION = 'kubernetes.io/config.mirror';

export class PodIndex {
  readonly #pods = new Map<string, IndexedPod>();
  /** node → identity → how many running pods there have it. */
  readonly #byNode = new Map<string, Map<SpiffeId, number>>();
  readonly #reflector: Reflector;
  readonly #trustDomain: string;
  #synced = false;

  constructor(client: KubeApiClient, trustDomain: string, log: Logger) {
    this.#trustDomain = trustDomain;
    this.#reflector = new Reflector(
      POD_RESOURCE,
      client,
      {
        replace: (_resource, items) => {
          this.#pods.clear();
          this.#byNode.clear();
          for (const item of items) this.#upsert(item);
        },
        upsert: (_resource, object) => this.#upsert(object),
        remove: (_resource, object) => this.#remove(keyOf(object)),
        failed: (_resource, error, retryInMs) =>
          log.warn({ retryInMs }, `listing or watching pods failed: ${error.message}; the CA decides with the pods it last saw, retrying in ${retryInMs} ms`),
        recovered: () => log.info('pods are in sync with the API server again'),
        notServed: () => log.error('the API server serves no pods; the CA refuses every request until it does'),
      },
      { backoff: { initialMs: 250, maxMs: 30_000 }, pageSize: 500, watchTimeoutSeconds: { min: 300, max: 600 }, notServedRetryMs: 60_000 },
    );
    void this.#reflector.synced.then(() => (this.#synced = true));
  }

  /** Starts listing and watching; resolves once the first list is in (the CA answers only after). */
  start(): Promise<void> {
    this.#reflector.start();
    return this.#reflector.synced;
  }

  /** Until the first list is in, no refusal can be trusted: "no such pod" may just be "not seen yet". */
  get synced(): boolean {
    return this.#synced;
  }

  pod(namespace: string, name: string): IndexedPod | undefined {
    return this.#pods.get(`${namespace}/${name}`);
  }

  /** The identities of the pods scheduled on `node` that have not finished. */
  identitiesOnNode(node: string): ReadonlySet<SpiffeId> {
    return new Set(this.#byNode.get(node)?.keys() ?? []);
  }

  stop(): Promise<void> {
    return this.#reflector.stop();
  }

  #upsert(object: RawObject): void {
    const key = keyOf(object);
    this.#remove(key);
    const spec = record(object['spec']);
    const status = record(object['status']);
    const namespace = object.metadata?.namespace ?? '';
    const serviceAccount = str(spec['serviceAccountName']);
    const mirror = str(record(object.metadata?.['annotations'])[MIRROR_ANNOTATION]) !== '';
    const identity = serviceAccount === '' || mirror ? undefined : formatSpiffeId({ trustDomain: this.#trustDomain, namespace, serviceAccount });
    const phase = str(status['phase']);
    const pod: IndexedPod = {
      namespace,
      name: object.metadata?.name ?? '',
      uid: str(object.metadata?.['uid']),
      node: str(spec['nodeName']),
      serviceAccount,
      identity: identity?.ok ? identity.value : undefined,
      finished: phase === 'Succeeded' || phase === 'Failed',
    };
    this.#pods.set(key, pod);
    this.#count(pod, 1);
  }

  #remove(key: string): void {
    const pod = this.#pods.get(key);
    if (!pod) return;
    this.#pods.delete(key);
    this.#count(pod, -1);
  }

  #count(pod: IndexedPod, delta: 1 | -1): void {
    if (pod.node === '' || pod.identity === undefined || pod.finished) return;
    let identities = this.#byNode.get(pod.node);
    if (!identities) this.#byNode.set(pod.node, (identities = new Map()));
    const count = (identities.get(pod.identity) ?? 0) + delta;
    if (count > 0) identities.set(pod.identity, count);
    else identities.delete(pod.identity);
    if (identities.size === 0) this.#byNode.delete(pod.node);
  }
}

function keyOf(object: RawObject): string {
  return `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
}

function record(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function str(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

// Keeps one resource in step with the API server the way client-go's reflector does: list (page by
// page) to learn every object and a resourceVersion, watch from that resourceVersion, and on the
// watch's end either watch on from the last version seen (the server closed it: normal) or list again
// (410 Gone: the history we needed was compacted). Errors are retried after a bounded, jittered
// backoff. Nothing is dropped while the API server is away: the objects last seen stay where they are
// until a list says otherwise.

import { Backoff, type BackoffOptions, sleep } from '../backoff.js';
import type { ApiError, KubeApiClient, RawObject } from './api-client.js';
import { type WatchedResource, apiVersionOf, collectionPath } from './resources.js';

/** What a reflector tells its owner; calls come in the order the API server's events did. */
export interface ReflectorHandler {
  /** Every object of the resource now (after a list): anything not in `items` is gone. */
  replace(resource: WatchedResource, items: readonly RawObject[]): void;
  upsert(resource: WatchedResource, object: RawObject): void;
  remove(resource: WatchedResource, object: RawObject): void;
  /** A call failed; the reflector tries again in `retryInMs`. */
  failed(resource: WatchedResource, error: ApiError, retryInMs: number): void;
  /** A list succeeded, or a watch delivered events, after `failed`. */
  recovered(resource: WatchedResource): void;
  /** No version of the resource is served (its CRD is not installed): it counts as empty. */
  notServed(resource: WatchedResource, retryInMs: number): void;
}

export interface ReflectorOptions {
  readonly backoff: BackoffOptions;
  /** Items per list page. */
  readonly pageSize: number;
  /** The server ends each watch after a random time in this range (seconds), as client-go asks. */
  readonly watchTimeoutSeconds: { readonly min: number; readonly max: number };
  /** How often to look again for a resource that is not served. */
  readonly notServedRetryMs: number;
}

/** A watch that ends this soon without delivering anything is treated as a failure (no hot loop). */
const MIN_HEALTHY_WATCH_MS = 1000;

export class Reflector {
  readonly resource: WatchedResource;
  /** Settles once the first list succeeded (or the resource turned out not to be served). */
  readonly synced: Promise<void>;
  readonly #client: KubeApiClient;
  readonly #handler: ReflectorHandler;
  readonly #options: ReflectorOptions;
  readonly #backoff: Backoff;
  readonly #stop = new AbortController();
  #markSynced!: () => void;
  #failing = false;
  #closeWatch: (() => void) | undefined;
  #running: Promise<void> | undefined;

  constructor(resource: WatchedResource, client: KubeApiClient, handler: ReflectorHandler, options: ReflectorOptions) {
    this.resource = resource;
    this.#client = client;
    this.#handler = handler;
    this.#options = options;
    this.#backoff = new Backoff(options.backoff);
    this.synced = new Promise((resolve) => (this.#markSynced = resolve));
  }

  start(): void {
    this.#running ??= this.#run();
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    this.#closeWatch?.();
    await this.#running;
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    let resourceVersion = '';
    let version = this.resource.versions[0]!;
    while (!signal.aborted) {
      if (resourceVersion === '') {
        const listed = await this.#listAll();
        if (signal.aborted) return;
        if (listed.kind === 'failed') {
          await this.#fail(listed.error);
          continue;
        }
        if (listed.kind === 'not-served') {
          this.#handler.replace(this.resource, []);
          this.#markSynced();
          this.#handler.notServed(this.resource, this.#options.notServedRetryMs);
          await sleep(this.#options.notServedRetryMs, signal);
          continue;
        }
        version = listed.version;
        this.#handler.replace(this.resource, listed.items.map((o) => this.#typed(o, version)));
        resourceVersion = listed.resourceVersion;
        this.#succeeded();
        this.#markSynced();
      }

      const started = Date.now();
      let delivered = false;
      let expired = false;
      let errorEvent: ApiError | undefined;
      const { min, max } = this.#options.watchTimeoutSeconds;
      const watch = this.#client.watch(
        collectionPath(this.resource, version),
        // Reachable again as soon as the watch is accepted; the backoff resets only once it proves healthy.
        { resourceVersion, timeoutSeconds: Math.round(min + Math.random() * (max - min)), ...this.#selector, onOpen: () => this.#reachable() },
        (event) => {
          if (event.type === 'ERROR') {
            if (event.error.status === 410) expired = true;
            else errorEvent = event.error;
            return;
          }
          if (event.type === 'BOOKMARK') {
            resourceVersion = event.resourceVersion;
            return;
          }
          const object = this.#typed(event.object, version);
          if (event.type === 'DELETED') this.#handler.remove(this.resource, object);
          else this.#handler.upsert(this.resource, object);
          resourceVersion = object.metadata?.resourceVersion ?? resourceVersion;
          if (!delivered) this.#succeeded();
          delivered = true;
        },
      );
      this.#closeWatch = watch.close;
      const end = await watch.ended;
      this.#closeWatch = undefined;
      if (signal.aborted) return;
      if (expired || (!end.ok && (end.error.status === 410 || end.error.status === 404))) {
        // 410: the versions between ours and now were compacted away; only a fresh list is complete.
        // 404: the resource went away (its CRD was removed); the list finds out what is left.
        resourceVersion = '';
        continue;
      }
      const error = errorEvent ?? (!end.ok ? end.error : undefined);
      if (error) await this.#fail(error);
      else if (!delivered && Date.now() - started < MIN_HEALTHY_WATCH_MS) await this.#fail({ message: 'the API server ended the watch at once' });
      else this.#succeeded();
    }
  }

  /** Every page of the collection in the first version the server serves. */
  async #listAll(): Promise<
    | { kind: 'listed'; version: string; items: RawObject[]; resourceVersion: string }
    | { kind: 'not-served' }
    | { kind: 'failed'; error: ApiError }
  > {
    for (const version of this.resource.versions) {
      const items: RawObject[] = [];
      let continueToken: string | undefined;
      let resourceVersion = '';
      let notServed = false;
      do {
        const page = await this.#client.list(collectionPath(this.resource, version), { limit: this.#options.pageSize, ...(continueToken ? { continueToken } : {}), ...this.#selector });
        if (!page.ok) {
          if (page.error.status === 404 && items.length === 0) {
            notServed = true;
            break;
          }
          return { kind: 'failed', error: page.error };
        }
        items.push(...page.value.items);
        resourceVersion = page.value.resourceVersion;
        continueToken = page.value.continueToken;
      } while (continueToken !== undefined && !this.#stop.signal.aborted);
      if (!notServed) return { kind: 'listed', version, items, resourceVersion };
    }
    return { kind: 'not-served' };
  }

  get #selector(): { labelSelector?: string } {
    return this.resource.labelSelector !== undefined ? { labelSelector: this.resource.labelSelector } : {};
  }

  /** List items of built-in kinds come without kind and apiVersion; agent/config needs both. */
  #typed(object: RawObject, version: string): RawObject {
    return { ...object, apiVersion: object.apiVersion ?? apiVersionOf(this.resource, version), kind: object.kind ?? this.resource.kind };
  }

  async #fail(error: ApiError): Promise<void> {
    const delay = this.#backoff.next();
    this.#failing = true;
    this.#handler.failed(this.resource, error, delay);
    await sleep(delay, this.#stop.signal);
  }

  #succeeded(): void {
    this.#backoff.reset();
    this.#reachable();
  }

  #reachable(): void {
    if (!this.#failing) return;
    this.#failing = false;
    this.#handler.recovered(this.resource);
  }
}

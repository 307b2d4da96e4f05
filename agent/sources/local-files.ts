// Local mode's source of state: YAML files and directories on disk, loaded at start and reloaded when
// they change. A bad edit never costs the agent its state: agent/config keeps the last good version of
// every object that the edit broke, and the rest of the edit applies. Other clusters' sets
// (`--remote-config <cluster>=<path>`) load the same way, each apart, and join as remote clusters.

import { resolve } from 'node:path';
import { formatDiagnostic } from '../config/diagnostics.js';
import { type ParsedFiles, type ResolvedConfig, loadConfig } from '../config/load.js';
import { buildSnapshot } from '../state/build.js';
import type { OwnCluster } from '../state/clusters.js';
import type { MeshSnapshot } from '../state/model.js';
import type { WorkloadStore } from '../state/store.js';
import type { Logger } from '../telemetry/log.js';
import { type PathWatch, watchPaths } from './watch-paths.js';

export interface LocalFilesOptions {
  readonly paths: readonly string[];
  readonly trustDomain: string;
  readonly clusterDomain: string;
  /** How long to wait after the last change event before reloading (editors write in bursts). */
  readonly debounceMs?: number;
  /** The agent's own cluster, which `paths` describe. */
  readonly cluster?: OwnCluster;
  /** Other clusters' YAML sets (docs/multicluster.md). */
  readonly remotes?: readonly RemoteClusterPaths[];
}

/** One remote cluster's YAML: its ID and its files and directories. */
export interface RemoteClusterPaths {
  readonly cluster: string;
  readonly paths: readonly string[];
}

/** One set of files as loaded: the last good objects and each file's last parse. */
interface LoadedSet {
  readonly paths: readonly string[];
  lastGood: ResolvedConfig | undefined;
  readonly parsed: ParsedFiles;
}

/** What one load did, for logs and for the caller (`lab up` refuses to start on errors). */
export interface LoadOutcome {
  readonly snapshot: MeshSnapshot;
  readonly errors: number;
  readonly warnings: number;
}

export class LocalFileSource {
  readonly #options: LocalFilesOptions;
  readonly #store: WorkloadStore;
  readonly #log: Logger;
  /** Each set's last parse by file text: only the files an edit changed are parsed again. */
  readonly #own: LoadedSet;
  readonly #remotes: ReadonlyMap<string, LoadedSet>;
  #watch: PathWatch | undefined;
  #timer: NodeJS.Timeout | undefined;
  #loading: Promise<unknown> = Promise.resolve();

  constructor(options: LocalFilesOptions, store: WorkloadStore, log: Logger) {
    this.#options = options;
    this.#store = store;
    this.#log = log;
    const set = (paths: readonly string[]): LoadedSet => ({ paths: paths.map((p) => resolve(p)), lastGood: undefined, parsed: new Map() });
    this.#own = set(options.paths);
    this.#remotes = new Map((options.remotes ?? []).map((r) => [r.cluster, set(r.paths)]));
  }

  /** Loads every path once and swaps the result into the store. Never throws for bad YAML. */
  async load(): Promise<LoadOutcome> {
    const resolved = await loadSet(this.#own);
    const remotes = [];
    const remoteDiagnostics = [];
    for (const [cluster, set] of this.#remotes) {
      const loaded = await loadSet(set);
      remotes.push({ id: cluster, objects: loaded.objects });
      remoteDiagnostics.push(...loaded.diagnostics);
    }
    const snapshot = buildSnapshot(resolved.objects, {
      version: (this.#store.current?.version ?? 0) + 1,
      trustDomain: this.#options.trustDomain,
      clusterDomain: this.#options.clusterDomain,
      ...(this.#options.cluster ? { cluster: this.#options.cluster } : {}),
      remoteClusters: remotes,
    });
    const diagnostics = [...resolved.diagnostics, ...remoteDiagnostics, ...snapshot.diagnostics];
    let errors = 0;
    for (const d of diagnostics) {
      if (d.severity === 'error') errors++;
      this.#log[d.severity === 'error' ? 'error' : 'warn']({ file: d.location.file, line: d.location.line }, formatDiagnostic(d));
    }
    this.#store.replace(snapshot);
    this.#log.info(
      { version: snapshot.version, workloads: snapshot.workloads.size, services: snapshot.services.size, errors },
      `configuration version ${snapshot.version} in force: ${snapshot.workloads.size} workloads, ${snapshot.services.size} services` +
        (errors > 0 ? `, ${errors} errors (see above; last good versions kept)` : ''),
    );
    return { snapshot, errors, warnings: diagnostics.length - errors };
  }

  /** Reloads on every change under the configured paths until `close()`. */
  async watch(): Promise<void> {
    const paths = [this.#own, ...this.#remotes.values()].flatMap((set) => set.paths);
    this.#watch = await watchPaths(paths, () => this.#schedule(), this.#log);
  }

  close(): void {
    clearTimeout(this.#timer);
    this.#watch?.close();
    this.#watch = undefined;
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      // Reloads run one at a time, in order, so a slow read cannot apply an older state after a newer one.
      this.#loading = this.#loading.then(() => this.load()).catch((err: unknown) => {
        this.#log.error({ err }, `reloading configuration failed: ${(err as Error).message}; the last good state stays in force`);
      });
    }, this.#options.debounceMs ?? 150);
  }
}

async function loadSet(set: LoadedSet): Promise<ResolvedConfig> {
  const resolved = await loadConfig(set.paths, set.lastGood, set.parsed);
  set.lastGood = resolved;
  return resolved;
}

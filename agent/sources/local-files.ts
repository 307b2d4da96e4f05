// Local mode's source of state: YAML files and directories on disk, loaded at start and reloaded when
// they change. A bad edit never costs the agent its state: agent/config keeps the last good version of
// every object that the edit broke, and the rest of the edit applies.

import { resolve } from 'node:path';
import { formatDiagnostic } from '../config/diagnostics.js';
import { type ParsedFiles, type ResolvedConfig, loadConfig } from '../config/load.js';
import { buildSnapshot } from '../state/build.js';
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
  readonly #paths: readonly string[];
  #lastGood: ResolvedConfig | undefined;
  /** Each file's last parse by its text: only the files an edit changed are parsed again. */
  readonly #parsed: ParsedFiles = new Map();
  #watch: PathWatch | undefined;
  #timer: NodeJS.Timeout | undefined;
  #loading: Promise<unknown> = Promise.resolve();

  constructor(options: LocalFilesOptions, store: WorkloadStore, log: Logger) {
    this.#options = options;
    this.#store = store;
    this.#log = log;
    this.#paths = options.paths.map((p) => resolve(p));
  }

  /** Loads every path once and swaps the result into the store. Never throws for bad YAML. */
  async load(): Promise<LoadOutcome> {
    const resolved = await loadConfig(this.#paths, this.#lastGood, this.#parsed);
    this.#lastGood = resolved;
    const snapshot = buildSnapshot(resolved.objects, {
      version: (this.#store.current?.version ?? 0) + 1,
      trustDomain: this.#options.trustDomain,
      clusterDomain: this.#options.clusterDomain,
    });
    const diagnostics = [...resolved.diagnostics, ...snapshot.diagnostics];
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
    this.#watch = await watchPaths(this.#paths, () => this.#schedule(), this.#log);
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

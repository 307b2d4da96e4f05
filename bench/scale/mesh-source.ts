// One source of mesh state measured alone in its own process (forked by bench/scale-mesh.bench.ts, so
// its RSS is the agent side's only): time from start to the first full snapshot, the resident and heap
// memory that snapshot holds, and the time from one changed pod to the snapshot that has it.

import { writeFile } from 'node:fs/promises';
import { pino } from 'pino';
import { KubeApiClient } from '../../agent/sources/kubernetes/api-client.js';
import { loadApiConnection } from '../../agent/sources/kubernetes/connection.js';
import { KubernetesSource } from '../../agent/sources/kubernetes/source.js';
import { LocalFileSource } from '../../agent/sources/local-files.js';
import { XdsSource, type XdsSourceOptions } from '../../agent/sources/xds/xds-source.js';
import type { MeshSnapshot } from '../../agent/state/model.js';
import { WorkloadStore } from '../../agent/state/store.js';

export type SourceJob =
  | { readonly mode: 'local'; readonly paths: readonly string[]; readonly changeFile: string; readonly changeText: string }
  | { readonly mode: 'kubernetes'; readonly kubeconfig: string }
  | { readonly mode: 'xds'; readonly options: XdsSourceOptions };

export type SourceReport =
  | { readonly event: 'ready'; readonly firstReadyMs: number; readonly workloads: number; readonly services: number; readonly rssMiB: number; readonly heapMiB: number }
  | { readonly event: 'changed'; readonly changeMs: number; readonly rssMiB: number }
  | { readonly event: 'failed'; readonly error: string };

const CHANGED_ACCOUNT = 'changed';
const send = (r: SourceReport): void => void process.send!(r);
const mib = (n: number): number => Math.round(n / 2 ** 20);
const gc = (): void => (globalThis as { gc?: () => void }).gc?.();

const hasChange = (s: MeshSnapshot | undefined): boolean => {
  if (!s) return false;
  for (const w of s.workloads.values()) if (w.name === 'pod-0') return w.serviceAccount === CHANGED_ACCOUNT;
  return false;
};

function changed(store: WorkloadStore): Promise<void> {
  return new Promise((resolve) => {
    if (hasChange(store.current)) return resolve();
    const stop = store.subscribe((s) => {
      if (hasChange(s)) {
        stop();
        resolve();
      }
    });
  });
}

async function run(job: SourceJob): Promise<void> {
  const log = pino({ level: 'warn' });
  const store = new WorkloadStore();
  const started = performance.now();
  let source: { load(): Promise<unknown>; watch(): Promise<void> | void };
  if (job.mode === 'local') source = new LocalFileSource({ paths: job.paths, trustDomain: 'cluster.local', clusterDomain: 'cluster.local', debounceMs: 10 }, store, log);
  else if (job.mode === 'kubernetes') {
    const connection = await loadApiConnection({ kubeconfig: job.kubeconfig });
    if (typeof connection === 'string') throw new Error(connection);
    source = new KubernetesSource({ client: new KubeApiClient(connection), trustDomain: 'cluster.local', clusterDomain: 'cluster.local', debounceMs: 10 }, store, log);
  } else source = new XdsSource(job.options, store, log);
  await source.load();
  const firstReadyMs = performance.now() - started;
  await source.watch();
  gc();
  const snapshot = store.current!;
  send({ event: 'ready', firstReadyMs, workloads: snapshot.workloads.size, services: snapshot.services.size, rssMiB: mib(process.memoryUsage().rss), heapMiB: mib(process.memoryUsage().heapUsed) });
  // The change: pod-0 moves to another service account (a new identity), from the file or the parent.
  const go = job.mode === 'local' ? Promise.resolve() : new Promise<void>((resolve) => process.once('message', () => resolve()));
  await go;
  const from = performance.now();
  const seen = changed(store);
  if (job.mode === 'local') await writeFile(job.changeFile, job.changeText);
  await seen;
  send({ event: 'changed', changeMs: performance.now() - from, rssMiB: mib(process.memoryUsage().rss) });
}

process.once('message', (job: SourceJob) => {
  run(job).then(
    () => setTimeout(() => process.exit(0), 100),
    (err: Error) => {
      send({ event: 'failed', error: err.stack ?? err.message });
      setTimeout(() => process.exit(1), 100);
    },
  );
});

// Where an agent learns the mesh from, behind one small interface so that node-agent.ts does not care:
// local YAML files (`ambit run --source local`), the Kubernetes API server (`--source kubernetes`) or
// istiod's workload xDS (`--source xds`).
// Every source validates objects with agent/config and builds snapshots with agent/state/build.ts, so
// the same objects give the same snapshot whatever the source.

import { DEFAULT_ISTIOD_ADDRESS, type IstiodConnectionOptions } from '../identity/istiod-channel.js';
import type { OwnCluster } from '../state/clusters.js';
import type { WorkloadStore } from '../state/store.js';
import type { Logger } from '../telemetry/log.js';
import { KubeApiClient } from './kubernetes/api-client.js';
import { loadApiConnection } from './kubernetes/connection.js';
import { KubernetesSource } from './kubernetes/source.js';
import { type LoadOutcome, LocalFileSource, type RemoteClusterPaths } from './local-files.js';
import type { XdsNodeInfo } from './xds/node.js';
import { XdsSource } from './xds/xds-source.js';

export type { LoadOutcome } from './local-files.js';

export interface MeshSource {
  /** Learns the whole mesh once and swaps the first snapshot into the store. Never throws for bad objects. */
  load(): Promise<LoadOutcome>;
  /** Applies changes live until `close()`. */
  watch(): Promise<void>;
  close(): Promise<void> | void;
}

export type SourceChoice =
  | { readonly kind: 'local'; readonly paths: readonly string[]; readonly cluster?: OwnCluster; readonly remotes?: readonly RemoteClusterPaths[] }
  | { readonly kind: 'kubernetes'; readonly kubeconfig?: string; readonly cluster?: OwnCluster }
  | { readonly kind: 'xds'; readonly istiod: IstiodConnectionOptions; readonly node: XdsNodeInfo };

export interface SourceSettings {
  readonly trustDomain: string;
  readonly clusterDomain: string;
}

/** Builds the chosen source; rejects with an actionable message when it cannot (no Kubernetes credentials). */
export async function createMeshSource(choice: SourceChoice, settings: SourceSettings, store: WorkloadStore, log: Logger): Promise<MeshSource> {
  if (choice.kind === 'local') {
    return new LocalFileSource({ paths: choice.paths, ...settings, ...(choice.cluster ? { cluster: choice.cluster } : {}), ...(choice.remotes ? { remotes: choice.remotes } : {}) }, store, log);
  }
  if (choice.kind === 'xds') return new XdsSource({ connection: choice.istiod, node: choice.node, ...settings }, store, log);
  const connection = await loadApiConnection(choice.kubeconfig !== undefined ? { kubeconfig: choice.kubeconfig } : {});
  if (typeof connection === 'string') throw new Error(connection);
  return new KubernetesSource({ client: new KubeApiClient(connection), ...settings, ...(choice.cluster ? { cluster: choice.cluster } : {}) }, store, log);
}

/** Where the mesh comes from, for logs. */
export function describeSource(choice: SourceChoice): string {
  switch (choice.kind) {
    case 'local': {
      const remotes = (choice.remotes ?? []).map((r) => `; cluster ${r.cluster} from ${r.paths.join(', ')}`).join('');
      return `local files ${choice.paths.join(', ')}${remotes}`;
    }
    case 'kubernetes':
      return choice.kubeconfig !== undefined ? `the Kubernetes API server of ${choice.kubeconfig}` : 'the Kubernetes API server';
    case 'xds':
      return `istiod at ${choice.istiod.address ?? DEFAULT_ISTIOD_ADDRESS}`;
  }
}

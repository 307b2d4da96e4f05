// A KubernetesSource connected to the lab's API server stand-in through a kubeconfig written in `dir`,
// for the tests that check what one kind of object does once it comes from the API server.

import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import type { FakeApiServer } from '../../../agent/lab/kube-apiserver.js';
import { KubeApiClient } from '../../../agent/sources/kubernetes/api-client.js';
import { loadApiConnection } from '../../../agent/sources/kubernetes/connection.js';
import { KubernetesSource } from '../../../agent/sources/kubernetes/source.js';
import type { WorkloadStore } from '../../../agent/state/store.js';

export async function kubeSourceFor(server: FakeApiServer, store: WorkloadStore, dir: string): Promise<KubernetesSource> {
  const kubeconfig = join(dir, 'kubeconfig');
  await writeFile(
    kubeconfig,
    `apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: ${server.url}\n    insecure-skip-tls-verify: true\nusers:\n- name: agent\n  user: {}\ncontexts:\n- name: fake\n  context: {cluster: fake, user: agent}\ncurrent-context: fake\n`,
  );
  const connection = await loadApiConnection({ kubeconfig });
  if (typeof connection === 'string') assert.fail(connection);
  return new KubernetesSource(
    { client: new KubeApiClient(connection), trustDomain: 'cluster.local', clusterDomain: 'cluster.local', debounceMs: 10, backoff: { initialMs: 20, maxMs: 200 } },
    store,
    pino({ level: 'silent' }),
  );
}

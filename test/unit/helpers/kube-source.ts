// A KubernetesSource connected to the lab's API server stand-in through a kubeconfig written in `dir`,
// for the tests that check what one kind of object does once it comes from the API server; and the
// kubeconfig and connection it is built from, for the tests that build their own.

import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import type { FakeApiServer } from '../../../agent/lab/kube-apiserver.js';
import { KubeApiClient } from '../../../agent/sources/kubernetes/api-client.js';
import { type ApiConnection, type ConnectionChoice, loadApiConnection } from '../../../agent/sources/kubernetes/connection.js';
import { KubernetesSource } from '../../../agent/sources/kubernetes/source.js';
import type { WorkloadStore } from '../../../agent/state/store.js';

export async function kubeSourceFor(server: FakeApiServer, store: WorkloadStore, dir: string): Promise<KubernetesSource> {
  const connection = await connect({ kubeconfig: await writeKubeconfig(dir, server.url) });
  return new KubernetesSource(
    { client: new KubeApiClient(connection), trustDomain: 'cluster.local', clusterDomain: 'cluster.local', debounceMs: 10, backoff: { initialMs: 20, maxMs: 200 } },
    store,
    pino({ level: 'silent' }),
  );
}

let kubeconfigs = 0;

/**
 * Writes a kubeconfig for `serverUrl` to a new file in `dir` and returns its path: it trusts `ca` (PEM)
 * or, without one, skips verification, and sends `token` when there is one.
 */
export async function writeKubeconfig(dir: string, serverUrl: string, credentials: { readonly token?: string; readonly ca?: string } = {}): Promise<string> {
  const path = join(dir, `kubeconfig-${kubeconfigs++}`);
  const trust = credentials.ca ? `    certificate-authority-data: ${Buffer.from(credentials.ca).toString('base64')}\n` : '    insecure-skip-tls-verify: true\n';
  await writeFile(
    path,
    `apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: ${serverUrl}\n${trust}` +
      `users:\n- name: agent\n  user:\n${credentials.token ? `    token: ${credentials.token}\n` : '    {}\n'}` +
      `contexts:\n- name: fake\n  context: {cluster: fake, user: agent}\ncurrent-context: fake\n`,
  );
  return path;
}

/** The connection `choice` names; fails the test with the reason when there is none. */
export async function connect(choice: ConnectionChoice): Promise<ApiConnection> {
  const connection = await loadApiConnection(choice);
  if (typeof connection === 'string') assert.fail(connection);
  return connection;
}

// The promise that where the objects come from does not matter: the same objects give the same
// snapshot from the API server as from local files.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { parseAllDocuments } from 'yaml';
import { FakeApiServer } from '../../agent/lab/kube-apiserver.js';
import type { KubeObject } from '../../agent/lab/kube-resources.js';
import { LocalFileSource } from '../../agent/sources/local-files.js';
import type { MeshSnapshot } from '../../agent/state/model.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { authorizationPolicy, rateLimit, virtualService } from './helpers/kube-objects.js';
import { kubeSourceFor } from './helpers/kube-source.js';

const BOOKINFO = fileURLToPath(new URL('../../examples/bookinfo/bookinfo.yaml', import.meta.url));

let scratch: string;
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'ambit-kube-parity-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

test('the same objects give the same snapshot from the API server as from local files (bookinfo plus Istio objects and a RateLimit)', async () => {
  const meshDir = join(scratch, 'mesh');
  await mkdir(meshDir);
  const istio = [
    virtualService('bookinfo', 'web', { route: [{ destination: { host: 'reviews' } }], timeout: '5s' }),
    authorizationPolicy('bookinfo', 'allow'),
    { ...rateLimit('bookinfo', 'reviews', 20), spec: { targetRef: { kind: 'Service', name: 'reviews', port: 9080 }, tokenBucket: { maxTokens: 20, fillInterval: '1s' } } },
  ];
  const yamlText = (await readFile(BOOKINFO, 'utf8')) + istio.map((o) => `---\n${JSON.stringify(o)}\n`).join('');
  await writeFile(join(meshDir, 'mesh.yaml'), yamlText);
  const documents = parseAllDocuments(yamlText).map((d) => d.toJSON() as KubeObject | null).filter((d): d is KubeObject => d !== null);
  // The uid is the one field only the API server fills in; give local files the same to compare the rest.
  const server = new FakeApiServer();
  await server.start();
  for (const doc of documents) server.apply(doc);
  const source = await kubeSourceFor(server, new WorkloadStore(), scratch);
  try {
    const fromApi = (await source.load()).snapshot;
    const localStore = new WorkloadStore();
    const local = new LocalFileSource({ paths: [meshDir], trustDomain: 'cluster.local', clusterDomain: 'cluster.local' }, localStore, pino({ level: 'silent' }));
    const fromFiles = (await local.load()).snapshot;
    assert.ok(fromFiles.workloads.size >= 7);
    assert.deepEqual(comparable(fromApi), comparable(fromFiles));
  } finally {
    await source.close();
    await server.stop();
  }
});

/** A snapshot without what differs by origin alone: source locations, uids and Istio resources' apiVersion order. */
function comparable(s: MeshSnapshot): unknown {
  const strip = (value: unknown): unknown =>
    JSON.parse(
      JSON.stringify(value, (key, v: unknown) => {
        if (key === 'source' || key === 'uid' || key === 'diagnostics') return undefined;
        if (v instanceof Map) return Object.fromEntries([...v.entries()].sort(([a], [b]) => String(a).localeCompare(String(b))));
        if (v instanceof RegExp) return v.toString();
        return v;
      }),
    );
  const byName = <T extends { metadata: { namespace: string; name: string } }>(list: readonly T[]) =>
    [...list].sort((a, b) => `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace}/${b.metadata.name}`));
  return strip({
    nodes: s.nodes,
    namespaces: s.namespaces,
    workloads: s.workloads,
    services: s.services,
    virtualServices: byName(s.istio.virtualServices),
    destinationRules: byName(s.istio.destinationRules),
    authorizationPolicies: byName(s.istio.authorizationPolicies),
    peerAuthentications: byName(s.istio.peerAuthentications),
    rateLimits: byName(s.ambit.rateLimits),
    problems: s.diagnostics.map((d) => d.message).sort(),
  });
}

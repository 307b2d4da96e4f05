// How the agent reaches the API server: a kubeconfig with a CA and a bearer token over HTTPS, and the
// in-cluster service-account files (a token re-read for every request, as a projected token rotates);
// and the backoff its sources retry with.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { FakeApiServer } from '../../agent/lab/kube-apiserver.js';
import { Backoff } from '../../agent/sources/backoff.js';
import { KubeApiClient } from '../../agent/sources/kubernetes/api-client.js';
import { loadApiConnection } from '../../agent/sources/kubernetes/connection.js';
import { KubernetesSource } from '../../agent/sources/kubernetes/source.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { seedShop } from './helpers/kube-objects.js';
import { connect, writeKubeconfig } from './helpers/kube-source.js';

let scratch: string;
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'ambit-kube-connection-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

test('credentials: a kubeconfig with a CA and a bearer token over HTTPS, and in-cluster service-account files', { timeout: 30_000 }, async () => {
  const dir = join(scratch, 'tls');
  await mkdir(dir, { recursive: true });
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-subj', '/CN=kube-apiserver', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '1'], { stdio: 'ignore' });
  const tls = { key: await readFile(join(dir, 'key.pem'), 'utf8'), cert: await readFile(join(dir, 'cert.pem'), 'utf8') };
  const server = new FakeApiServer({ tls, token: 'secret-token' });
  await server.start();
  seedShop(server);
  try {
    const fromFile = await connect({ kubeconfig: await writeKubeconfig(scratch, server.url, { token: 'secret-token', ca: tls.cert }) });
    const listed = await new KubeApiClient(fromFile).list('/api/v1/pods', { limit: 10 });
    assert.ok(listed.ok, listed.ok ? '' : listed.error.message);
    assert.equal(listed.value.items.length, 2);

    const wrongToken = await connect({ kubeconfig: await writeKubeconfig(scratch, server.url, { token: 'nope', ca: tls.cert }) });
    const refused = await new KubeApiClient(wrongToken).list('/api/v1/pods', { limit: 10 });
    assert.ok(!refused.ok && refused.error.status === 401 && /token or client certificate was not accepted/.test(refused.error.message));

    // In a pod: KUBERNETES_SERVICE_HOST/PORT and the service-account token and CA files.
    const root = join(scratch, 'pod-root');
    const saDir = join(root, 'var/run/secrets/kubernetes.io/serviceaccount');
    await mkdir(saDir, { recursive: true });
    await writeFile(join(saDir, 'token'), 'secret-token');
    await writeFile(join(saDir, 'ca.crt'), tls.cert);
    await writeFile(join(saDir, 'namespace'), 'ambit-system');
    const saved = { host: process.env['KUBERNETES_SERVICE_HOST'], port: process.env['KUBERNETES_SERVICE_PORT'] };
    process.env['KUBERNETES_SERVICE_HOST'] = '127.0.0.1';
    process.env['KUBERNETES_SERVICE_PORT'] = new URL(server.url).port;
    try {
      const inCluster = await connect({ serviceAccountRoot: root });
      assert.equal(inCluster.server, `https://127.0.0.1:${new URL(server.url).port}`);
      // Asked once first: a refused token fails here, where a source would keep retrying.
      const listedInCluster = await new KubeApiClient(inCluster).list('/api/v1/pods', { limit: 10 });
      assert.ok(listedInCluster.ok, listedInCluster.ok ? '' : listedInCluster.error.message);
      const store = new WorkloadStore();
      const source = new KubernetesSource({ client: new KubeApiClient(inCluster), trustDomain: 'cluster.local', clusterDomain: 'cluster.local' }, store, pino({ level: 'silent' }));
      assert.equal((await source.load()).snapshot.workloads.size, 2);
      await source.close();
      // The token is read for every request, as a projected token rotates under the pod.
      await writeFile(join(saDir, 'token'), 'nope\n');
      const afterRotation = await new KubeApiClient(inCluster).list('/api/v1/pods', { limit: 10 });
      assert.ok(!afterRotation.ok && afterRotation.error.status === 401);
      await writeFile(join(saDir, 'token'), 'secret-token');
      // Without the service account's files, or without the port, it says what is missing.
      assert.match(String(await loadApiConnection({ serviceAccountRoot: join(scratch, 'no-pod-root') })), /cannot read the service account's files in .*no-pod-root/);
      delete process.env['KUBERNETES_SERVICE_PORT'];
      assert.match(String(await loadApiConnection({ serviceAccountRoot: root })), /needs both KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT/);
    } finally {
      for (const [k, v] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
    assert.ok(server.requests.every((r) => r.authorization === 'Bearer secret-token' || r.authorization === 'Bearer nope'));

    const missing = await loadApiConnection({ kubeconfig: join(scratch, 'no-such-kubeconfig') });
    assert.match(String(missing), /^cannot load .*no-such-kubeconfig/);
  } finally {
    await server.stop();
  }
});

test('backoff: doubling from the initial delay, jittered within [d/2, d], capped', () => {
  const backoff = new Backoff({ initialMs: 100, maxMs: 1000 });
  const delays = Array.from({ length: 8 }, () => backoff.next());
  const ceilings = [100, 200, 400, 800, 1000, 1000, 1000, 1000];
  delays.forEach((d, i) => assert.ok(d >= ceilings[i]! / 2 && d <= ceilings[i]!, `delay ${i}: ${d} within [${ceilings[i]! / 2}, ${ceilings[i]}]`));
  backoff.reset();
  assert.ok(backoff.next() <= 100);
});

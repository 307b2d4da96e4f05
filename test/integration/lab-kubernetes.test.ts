// The bookinfo lab in Kubernetes mode (`ambit lab up --source kubernetes`): the agents learn the mesh
// only from the lab's kube-apiserver (list/watch over HTTPS with a token), and behave as in local mode:
// the same workloads and Services, pod-to-Service traffic through HBONE with both agents' records, and
// an AuthorizationPolicy added to the YAML reaches the agents through the API server's watch. Their
// certificates come from the lab's `ambit ca`, as in a cluster: never from a CA key of their own.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../agent/config/load.js';
import { buildSnapshot } from '../../agent/state/build.js';
import { AMBIT_MAIN, ambit, eventually, requireBuiltAmbit, requireRoot } from './helpers/lab-cli.js';
import { LabSession } from './helpers/lab-session.js';

const LAB = `tk${process.pid % 10000}`;
const BOOKINFO = fileURLToPath(new URL('../../examples/bookinfo/', import.meta.url));
// A copy, so that the test's edits never touch the example; the apps travel with it (commands are
// relative to the YAML's directory).
const dir = mkdtempSync(join(tmpdir(), 'ambit-lab-kube-'));
const yamlPath = join(dir, 'bookinfo.yaml');
const original = readFileSync(join(BOOKINFO, 'bookinfo.yaml'), 'utf8');
const session = new LabSession(LAB, yamlPath);

const CLIENT_ID = 'spiffe://cluster.local/ns/bookinfo/sa/client';
const DETAILS = '10.244.2.10';

before(async () => {
  requireRoot();
  requireBuiltAmbit();
  copyFileSync(join(BOOKINFO, 'bookinfo.yaml'), yamlPath);
  cpSync(join(BOOKINFO, 'apps'), join(dir, 'apps'), { recursive: true });
  const up = await ambit(['lab', 'up', '--lab', LAB, '--source', 'kubernetes', '--timeout', '120', yamlPath], 150_000);
  assert.equal(up.code, 0, `lab up --source kubernetes failed:\n${up.stdout}\n${up.stderr}`);
  assert.match(up.stdout, /is up: 2 nodes, 7 pods/);
});

after(async () => {
  await ambit(['lab', 'down', '--lab', LAB]);
  rmSync(dir, { recursive: true, force: true });
});

const curlFrom = (pod: string, url: string) => session.exec(pod, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '3', url], 15_000);

test('the agents read the lab\'s kube-apiserver, not the files, and know what local mode knows', async () => {
  for (const node of ['node-a', 'node-b']) {
    const log = await session.agentLog(node);
    assert.match(log, /"msg":"listing nodes, namespaces, .* from https:\/\/169\.254\.100\.1:6443"/);
    assert.match(log, /"source":"the Kubernetes API server of \/run\/ambit\/lab\/[^"]+\/kubeconfig"/);
    assert.doesNotMatch(log, /"source":"local files/);
  }
  const status = await ambit(['lab', 'status', '--lab', LAB]);
  assert.match(status.stdout, /^control-plane\/kube-apiserver\s+-\s+169\.254\.100\.1\s+running\s+yes/m);

  // What local mode would build from the same YAML: every workload and Service, with its endpoints.
  const config = await loadConfig([yamlPath]);
  const local = buildSnapshot(config.objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
  const expectedWorkloads = [...local.workloads.values()].map((w) => `${w.namespace} ${w.name} ${w.ips.join(',')} ${w.node}`).sort();
  const zcWorkloads = await session.exec('node/node-a', [process.execPath, AMBIT_MAIN, 'zc', 'workloads']);
  assert.equal(zcWorkloads.code, 0, zcWorkloads.stderr);
  const rows = zcWorkloads.stdout.trim().split('\n').slice(1).map((row) => row.split(/\s+/).slice(0, 4).join(' '));
  // The agents' own pods (ambit-system, hostNetwork, never enrolled) are in the API server, as in a cluster.
  assert.deepEqual(rows.filter((row) => row.startsWith('ambit-system ')).map((row) => row.split(' ')[1]).sort(), ['ambit-node-a', 'ambit-node-b']);
  const seenWorkloads = rows.filter((row) => !row.startsWith('ambit-system ')).sort();
  assert.deepEqual(seenWorkloads, expectedWorkloads);
  const zcServices = await session.exec('node/node-b', [process.execPath, AMBIT_MAIN, 'zc', 'services']);
  const expectedServices = [...local.services.values()].map((s) => `${s.namespace} ${s.name} ${s.vips.join(',')}`).sort();
  assert.deepEqual(zcServices.stdout.trim().split('\n').slice(1).map((row) => row.split(/\s+/).slice(0, 3).join(' ')).sort(), expectedServices);
  assert.match(zcServices.stdout, /^bookinfo\s+reviews\s+10\.96\.0\.22\s+None\s+3\/3$/m);
});

test('pod to Service across nodes crosses the HBONE tunnel, recorded by both agents', async () => {
  const r = await curlFrom('bookinfo/client', 'http://details:9080/details/0');
  assert.equal(r.stdout, '200', `client -> details: ${r.stdout} ${r.stderr}`);
  const client = `"src\\.workload":"client","src\\.namespace":"bookinfo","src\\.identity":"${CLIENT_ID}"`;
  // The destination agent accepted an HBONE stream for details' pod from a peer that proved the
  // client's identity.
  const inbound = new RegExp(`${client}.*"dst\\.hbone_addr":"${DETAILS}:9080","dst\\.workload":"details-v1".*"direction":"inbound".*"msg":"connection complete"`);
  await eventually('node-b\'s inbound HBONE record', async () => (inbound.test(await session.agentLog('node-b')) ? true : undefined), 5_000);
  // The source agent: a tunnelled connection record, or, as 9080 is an HTTP port, the request record
  // of its L7 proxy, which names the peer identity the tunnel's TLS proved.
  const outbound = new RegExp(
    `${client}.*("dst\\.hbone_addr":"${DETAILS}:9080","dst\\.workload":"details-v1".*"direction":"outbound".*"msg":"connection complete"|` +
      `"dst\\.workload":"details-v1","dst\\.namespace":"bookinfo","dst\\.identity":"spiffe://cluster\\.local/ns/bookinfo/sa/bookinfo-details","direction":"outbound".*"upstream_host":"${DETAILS}:9080".*"msg":"request complete")`,
  );
  await eventually('node-a\'s outbound record', async () => (outbound.test(await session.agentLog('node-a')) ? true : undefined), 5_000);
  const metrics = await session.exec('node/node-a', ['curl', '-s', 'http://127.0.0.1:15020/metrics']);
  assert.match(metrics.stdout, /^istio_(requests|tcp_connections_opened)_total\{reporter="source",source_workload="client",.*destination_principal="spiffe:\/\/cluster\.local\/ns\/bookinfo\/sa\/bookinfo-details",.*connection_security_policy="mutual_tls"\} [1-9]/m);
  // The whole application too: productpage (node-a) calls details and reviews (node-b).
  assert.equal((await curlFrom('bookinfo/client', 'http://productpage:9080/productpage')).stdout, '200');
});

test('the agents get their pods\' certificates from the lab\'s ambit ca, only for their own node\'s pods', async () => {
  const status = await ambit(['lab', 'status', '--lab', LAB]);
  assert.match(status.stdout, /^control-plane\/ambit-ca\s+-\s+169\.254\.100\.1:15012\s+running\s+yes/m);
  const ca = (await ambit(['lab', 'logs', '--lab', LAB, 'ambit-ca'])).stdout;
  // node-a runs client and productpage; details runs on node-b (bookinfo.yaml).
  assert.match(ca, new RegExp(`"msg":"issued a certificate for ${CLIENT_ID} to node node-a"`));
  assert.match(ca, /"msg":"issued a certificate for spiffe:\/\/cluster\.local\/ns\/bookinfo\/sa\/bookinfo-details to node node-b"/);
  assert.doesNotMatch(ca, /"msg":"refused a certificate request/, 'no agent asked for an identity it may not have');
  assert.doesNotMatch(ca, new RegExp(`issued a certificate for ${CLIENT_ID} to node node-b`));
  // The agents run without the CA's files: the key stays with ambit ca.
  const agents = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((line) => line.includes(' run --node ') && line.includes(`/run/ambit/lab/${LAB}/`));
  assert.ok(agents.length >= 2, `both agents found in ps: ${agents.length}`);
  for (const line of agents) {
    assert.doesNotMatch(line, /--ca-dir/);
    assert.match(line, /--ca istiod --ca-address 169\.254\.100\.1:15012/);
  }
});

test('an AuthorizationPolicy applied through the API server takes effect live, and so does its removal', async () => {
  const deny = `${original}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: details-deny-client, namespace: bookinfo }
spec:
  selector: { matchLabels: { app: details } }
  action: DENY
  rules: [{ from: [{ source: { principals: [cluster.local/ns/bookinfo/sa/client] } }] }]
`;
  await session.apply(deny, 'node-b');
  const apiServer = (await ambit(['lab', 'logs', '--lab', LAB, 'kube-apiserver'])).stdout;
  assert.match(apiServer, /"msg":"applied 1 change\(s\) from the YAML; resourceVersion \d+"/, 'the edit went through the API server');
  const denied = await curlFrom('bookinfo/client', 'http://details:9080/details/0');
  assert.notEqual(denied.stdout, '200', 'the client still reached details');
  await eventually('node-b to log the denial', async () =>
    /"src\.identity":"spiffe:\/\/cluster\.local\/ns\/bookinfo\/sa\/client".*"dst\.workload":"details-v1".*(denied by AuthorizationPolicy |rbac_access_denied_matched_policy\[)bookinfo\/details-deny-client/.test(await session.agentLog('node-b')) ? true : undefined,
  5_000);
  // Only the client is named: productpage still reaches details.
  assert.equal((await curlFrom('bookinfo/productpage-v1', 'http://details:9080/details/0')).stdout, '200');

  await session.apply(original, 'node-b');
  assert.equal((await curlFrom('bookinfo/client', 'http://details:9080/details/0')).stdout, '200');
});

test('an invalid object is refused by the agents with its API path, and the last good state stays', async () => {
  const bad = `${original}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: broken, namespace: bookinfo }
spec: { action: MAYBE }
`;
  await session.apply(bad, 'node-b');
  assert.match(await session.agentLog('node-b'), /kube-apiserver:\/apis\/security\.istio\.io\/v1\/namespaces\/bookinfo\/authorizationpolicies\/broken:\d+: AuthorizationPolicy bookinfo\/broken: spec\.action/);
  assert.equal((await curlFrom('bookinfo/client', 'http://details:9080/details/0')).stdout, '200');
  await session.apply(original, 'node-b');
});

test('down removes the API server with the rest of the lab', async () => {
  const down = await ambit(['lab', 'down', '--lab', LAB]);
  assert.equal(down.code, 0, down.stderr);
  assert.doesNotMatch(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }), new RegExp(`^ambit-${LAB}-`, 'm'));
  assert.doesNotMatch(execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }), new RegExp(`lab kube-apiserver --lab ${LAB}$`, 'm'));
  assert.equal(existsSync(`/run/ambit/lab/${LAB}`), false, 'the kubeconfig, token and key are removed');
});

// `ambit gateway` as its command assembles it (GatewayProcess): the mesh read from a YAML file, its own
// pod found there, its certificate from the mesh's plugged-in root, readiness on its status port. A
// client of the mesh reaches it with the gateway's identity; it answers a tunnel it may forward but
// cannot place with 503 (no endpoint on its network), a client its policy refuses with 401, each
// counted on its metrics port with its response flag, and readiness turns false while its own pod is
// gone from the configuration. On stop it drains: not ready, no new tunnel, open ones carried to their
// end, and no wait for the deadline once they ended.

import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { GatewayProcess } from '../../agent/gateway/gateway-process.js';
import { spiffeId } from '../../agent/state/model.js';
import { createLogger } from '../../agent/telemetry/log.js';
import { HbonePool } from '../../agent/tunnel/hbone/pool.js';
import { type TestEcho, type TestTrust, makeSharedCaDir, openTrust, startEcho } from '../fixtures/hbone/mesh.js';
import { tempDir } from '../fixtures/identity/test-ca.js';

const TD = 'cluster.local';
const GATEWAY_IP = '127.0.0.60';
const GATEWAY = spiffeId(TD, 'istio-system', 'eastwest');
const CLIENT = spiffeId(TD, 'shop', 'client');
const INTRUDER = spiffeId(TD, 'shop', 'intruder');
const HOSTNAME = 'reviews.shop.svc.cluster.local';
const RATINGS = 'ratings.shop.svc.cluster.local';
/** ratings' only pod; the gateway reaches it at its HBONE port, where a plain echo stands in for its node. */
const RATINGS_IP = '127.0.0.62';

const MESH = `apiVersion: v1
kind: Namespace
metadata: {name: istio-system}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Node
metadata: {name: b}
status: {addresses: [{type: InternalIP, address: 172.31.0.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: eastwest, namespace: istio-system, labels: {app: eastwest}}
spec: {nodeName: b, serviceAccountName: eastwest, containers: [{name: gateway}]}
status: {podIP: ${GATEWAY_IP}}
---
apiVersion: v1
kind: Pod
metadata: {name: ratings, namespace: shop, labels: {app: ratings}}
spec: {nodeName: b, serviceAccountName: ratings, containers: [{name: app, ports: [{containerPort: 9080}]}]}
status: {podIP: ${RATINGS_IP}}
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: shop}
spec: {clusterIP: 10.96.0.21, selector: {app: ratings}, ports: [{name: tcp, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {clusterIP: 10.96.0.20, selector: {app: reviews}, ports: [{name: tcp, port: 9080}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: eastwest-allow, namespace: istio-system}
spec:
  selector: {matchLabels: {app: eastwest}}
  rules:
  - from: [{source: {principals: ['${TD}/ns/shop/sa/client']}}]
`;

describe('ambit gateway, assembled', () => {
  let ca: Awaited<ReturnType<typeof makeSharedCaDir>>;
  let trust: TestTrust;
  let gateway: GatewayProcess;
  let pool: HbonePool;
  let config: string;
  let ratingsNode: TestEcho;

  before(async () => {
    ca = await makeSharedCaDir();
    // A fixed port: the gateway dials endpoints at 15008.
    ratingsNode = await startEcho(RATINGS_IP, 15008);
    // The clients' certificates chain to the same plugged-in root as the gateway's.
    trust = await openTrust(TD, [CLIENT, INTRUDER], ca.dir);
    const dir = await tempDir('gateway-process');
    config = join(dir, 'mesh.yaml');
    await writeFile(config, MESH);
    gateway = new GatewayProcess(
      {
        source: { kind: 'local', paths: [config] },
        trustDomain: TD,
        clusterDomain: 'cluster.local',
        clusterId: 'cluster2',
        pod: 'istio-system/eastwest',
        hbone: { host: GATEWAY_IP, port: 0 },
        readiness: { host: GATEWAY_IP, port: 0 },
        metrics: { host: GATEWAY_IP, port: 0 },
        drainMs: 100,
        engine: {},
        identity: { ca: 'embedded', stateDir: join(dir, 'state'), caDir: ca.dir, certTtlSeconds: 3600 },
      },
      createLogger('fatal'),
    );
    await gateway.start();
    pool = new HbonePool({ certificates: trust.certificates });
  });

  after(async () => {
    await pool?.close(100);
    await gateway?.stop();
    await ratingsNode?.close();
    await trust?.close();
    await ca?.close();
  });

  const connect = (identity: typeof CLIENT, hostname = HOSTNAME) =>
    pool.open({ source: { identity, ip: '127.0.0.1' }, destination: { ip: GATEWAY_IP, port: gateway.listening!.hbone.port }, expectedIdentities: [GATEWAY], authority: { hostname, port: 9080 } });

  it('is ready once it listens, with its own pod\'s identity from the mesh\'s root', async () => {
    const readiness = gateway.listening!.readiness;
    const answer = await fetch(`http://${GATEWAY_IP}:${readiness.port}/healthz/ready`);
    assert.equal(answer.status, 200);
    // The handshake proves the gateway's identity (the pool expects it); the Service has no endpoint here.
    const opened = await connect(CLIENT);
    assert.equal(opened.ok, false);
    if (opened.ok) return;
    assert.equal(opened.error.status, 503, opened.error.message);
  });

  it('refuses a client its AuthorizationPolicy does not allow, with 401', async () => {
    const opened = await connect(INTRUDER);
    assert.equal(opened.ok, false);
    if (opened.ok) return;
    assert.equal(opened.error.status, 401, opened.error.message);
  });

  it('counts each refusal on its metrics port with its response flag, as a gateway (reporter source)', async () => {
    const answer = await fetch(`http://${GATEWAY_IP}:${gateway.listening!.metrics.port}/metrics`);
    assert.equal(answer.status, 200);
    const failed = (await answer.text()).split('\n').filter((line) => line.startsWith('istio_tcp_connections_failed_total{'));
    const count = (principal: string, flag: string): number[] =>
      failed
        .filter((line) => line.includes('reporter="source"') && line.includes(`source_principal="${principal}"`) && line.includes(`destination_service="${HOSTNAME}"`))
        .filter((line) => line.includes(`response_flags="${flag}"`) && line.includes('connection_security_policy="mutual_tls"'))
        .map((line) => Number(line.split(' ').at(-1)));
    // The first test's 503 (no endpoint on this network) and the second's 401.
    assert.deepEqual(count(CLIENT, 'NO_ROUTE'), [1], failed.join('\n'));
    assert.deepEqual(count(INTRUDER, 'DENY'), [1], failed.join('\n'));
  });

  it('is not ready while its own pod is gone from the configuration, and ready again when it is back', async () => {
    const readiness = `http://${GATEWAY_IP}:${gateway.listening!.readiness.port}/healthz/ready`;
    await writeFile(config, MESH.replace(/---\napiVersion: v1\nkind: Pod\n[\s\S]*?(?=---)/, ''));
    const gone = await readinessUntil(readiness, 503);
    assert.match(gone, /own pod istio-system\/eastwest is not in the mesh configuration/);
    await writeFile(config, MESH);
    await readinessUntil(readiness, 200);
  });
  it('drains on stop: not ready, no new tunnel, the open one carried to its end, then done without waiting out the deadline', async () => {
    const readiness = `http://${GATEWAY_IP}:${gateway.listening!.readiness.port}/healthz/ready`;
    const opened = await connect(CLIENT, RATINGS);
    assert.ok(opened.ok, opened.ok ? '' : opened.error.message);
    const tunnel = opened.value;
    assert.equal(await echoed(tunnel, 'before the drain'), 'before the drain');
    const started = Date.now();
    const stopped = gateway.stop(20_000);
    const draining = await readinessUntil(readiness, 503);
    assert.match(draining, /draining/);
    const refused = await connect(CLIENT, RATINGS);
    assert.equal(refused.ok, false, 'a new tunnel was opened during the drain');
    assert.equal(await echoed(tunnel, 'during the drain'), 'during the drain');
    tunnel.end();
    await stopped;
    assert.ok(Date.now() - started < 10_000, `stop took ${Date.now() - started} ms: it waited out the deadline`);
    // The tunnel counted as closed cleanly, with what it carried each way.
    const closed = (await gateway.metrics.registry.getSingleMetric('istio_tcp_connections_closed_total')!.get()).values.filter((v) => v.labels['destination_service'] === RATINGS);
    assert.deepEqual(closed.map((v) => [v.labels['response_flags'], v.value]), [['-', 1]]);
  });
});

/** Writes `text` into the tunnel and resolves with as many bytes read back. */
function echoed(tunnel: Duplex, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (chunk: Buffer): void => {
      got += chunk.toString();
      if (got.length < text.length) return;
      tunnel.off('data', onData);
      tunnel.off('error', reject);
      resolve(got);
    };
    tunnel.on('data', onData);
    tunnel.once('error', reject);
    tunnel.write(text);
  });
}

/** Asks `url` until it answers `status` (the file watch and its debounce take a moment), at most 50 times. */
async function readinessUntil(url: string, status: number): Promise<string> {
  let last = '';
  for (let attempt = 0; attempt < 50; attempt++) {
    const answer = await fetch(url, { signal: AbortSignal.timeout(2000) });
    last = `${answer.status} ${await answer.text()}`;
    if (answer.status === status) return last;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`readiness never answered ${status}; last: ${last}`);
}

// /config_dump over HTTP from a real AdminServer: `certificates` in ztunnel's shape (the one istioctl's
// CertsDump reads: certChain = leaf and intermediates, rootCerts apart, base64 PEM, decimal serial,
// RFC 3339 seconds) from a real CA with an intermediate, and `workloadState` with the live connections.

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { AdminServer } from '../../agent/admin/admin-server.js';
import type { ConfigDump } from '../../agent/admin/config-dump.js';
import type { CaClient } from '../../agent/identity/ca-client.js';
import { WorkloadCertificateManager } from '../../agent/identity/certificate-manager.js';
import { EmbeddedCa } from '../../agent/identity/embedded-ca.js';
import { type IdentityResult, fail } from '../../agent/identity/errors.js';
import { parseConfigFile } from '../../agent/config/load.js';
import { buildSnapshot } from '../../agent/state/build.js';
import { type SpiffeId, spiffeId } from '../../agent/state/model.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { zcOutput } from '../../agent/cli/zc.js';
import { MeshMetrics } from '../../agent/telemetry/metrics.js';
import { ConnectionTelemetry } from '../../agent/telemetry/connections.js';
import { InboundHbone } from '../../agent/tunnel/inbound-hbone.js';
import { type LiveConnection, LiveConnections } from '../../agent/tunnel/live-connections.js';
import { closeServer, listen } from '../fixtures/hbone/mesh.js';
import { createServer, connect as tcpConnect } from 'node:net';
import { makePluggedInCa, tempDir } from '../fixtures/identity/test-ca.js';

const silent = pino({ level: 'silent' });
const TD = 'cluster.local';
const WEB = spiffeId(TD, 'shop', 'web');
const BROKEN = spiffeId(TD, 'shop', 'broken');
const PENDING = spiffeId(TD, 'shop', 'pending');

const MESH = `
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Pod
metadata: { name: web, namespace: shop, labels: { app: web } }
spec: { nodeName: node-a, serviceAccountName: web, containers: [{ name: c, command: [x] }] }
status: { phase: Running, podIP: 10.1.0.1 }
---
apiVersion: v1
kind: Pod
metadata: { name: db, namespace: shop, labels: { app: db } }
spec: { nodeName: node-a, serviceAccountName: db, containers: [{ name: c, command: [x] }] }
status: { phase: Running, podIP: 10.1.0.2 }
---
apiVersion: v1
kind: Pod
metadata: { name: far, namespace: shop, labels: { app: far } }
spec: { nodeName: node-b, containers: [{ name: c, command: [x] }] }
status: { phase: Running, podIP: 10.2.0.1 }
`;

const DB_SERVICE = `---
apiVersion: v1
kind: Service
metadata: { name: db, namespace: shop }
spec: { clusterIP: 10.96.0.20, selector: { app: db }, ports: [{ port: 5432 }] }
`;

function storeWithMesh(): WorkloadStore {
  const parsed = parseConfigFile(MESH, 'mesh.yaml');
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error'), []);
  const store = new WorkloadStore();
  store.replace(buildSnapshot(parsed.objects, { version: 1, trustDomain: TD, clusterDomain: 'cluster.local' }));
  return store;
}

/** The real CA, except that one identity is refused and another never answered. */
class PickyCa implements CaClient {
  constructor(private readonly inner: CaClient) {}
  requestCertificate(csrPem: string, identity: SpiffeId, ttlSeconds: number): Promise<IdentityResult<readonly string[]>> {
    if (identity === BROKEN) return Promise.resolve(fail('ca-unavailable', 'the test CA refuses shop/broken'));
    if (identity === PENDING) return new Promise(() => {});
    return this.inner.requestCertificate(csrPem, identity, ttlSeconds);
  }
}

async function dumpFrom(admin: AdminServer): Promise<ConfigDump> {
  const { port } = await admin.listen('127.0.0.1', 0);
  try {
    const response = await fetch(`http://127.0.0.1:${port}/config_dump`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'application/json');
    return (await response.json()) as ConfigDump;
  } finally {
    await admin.close();
  }
}

const RFC3339_SECONDS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

describe('/config_dump', () => {
  let dir: string;
  let manager: WorkloadCertificateManager;
  let rootPem: string;
  let intermediatePem: string;

  before(async () => {
    dir = await tempDir('admin-dump');
    const plugged = await makePluggedInCa(join(dir, 'cacerts'), { intermediate: true });
    rootPem = plugged.rootPem;
    intermediatePem = plugged.signingPem;
    const ca = await EmbeddedCa.open({ stateDir: dir, pluggedInDir: plugged.dir, trustDomain: TD, identitiesOnNode: () => new Set([WEB, BROKEN, PENDING]) });
    assert.ok(ca.ok, ca.ok ? '' : ca.error.message);
    manager = new WorkloadCertificateManager({ caClient: new PickyCa(ca.value.clientFor('node-a')), log: silent });
    assert.ok((await manager.fetch(WEB)).ok);
    assert.equal((await manager.fetch(BROKEN)).ok, false);
    void manager.fetch(PENDING);
  });
  after(async () => {
    manager.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('lists certificates as ztunnel does: sorted by identity, chain and roots apart, in istioctl field names', async () => {
    const store = storeWithMesh();
    const dump = await dumpFrom(new AdminServer({ store, node: 'node-a', log: silent, quit: () => {}, certificates: () => manager.status() }));

    assert.deepEqual(dump.certificates.map((c) => c.identity), [BROKEN, PENDING, WEB]);
    const [broken, pending, web] = dump.certificates;
    assert.deepEqual(broken, { identity: BROKEN, state: 'Unavailable: the test CA refuses shop/broken', certChain: [], rootCerts: [] });
    assert.deepEqual(pending, { identity: PENDING, state: 'Initializing', certChain: [], rootCerts: [] });

    assert.ok(web);
    assert.equal(web.state, 'Available');
    assert.deepEqual(Object.keys(web).sort(), ['certChain', 'identity', 'rootCerts', 'state']);
    const issued = manager.current(WEB)!;
    // Leaf then intermediate in the chain; the root only in rootCerts.
    const pems = (list: typeof web.certChain) => list.map((c) => Buffer.from(c.pem, 'base64').toString('utf8'));
    assert.deepEqual(pems(web.certChain).map(normalize), [issued.leafPem, intermediatePem].map(normalize));
    assert.deepEqual(pems(web.rootCerts).map(normalize), [rootPem].map(normalize));
    for (const cert of [...web.certChain, ...web.rootCerts]) {
      assert.deepEqual(Object.keys(cert).sort(), ['expirationTime', 'pem', 'serialNumber', 'validFrom']);
      const x509 = new X509Certificate(Buffer.from(cert.pem, 'base64'));
      assert.match(cert.serialNumber, /^\d+$/);
      assert.equal(BigInt(cert.serialNumber), BigInt(`0x${x509.serialNumber}`));
      assert.match(cert.validFrom, RFC3339_SECONDS);
      assert.match(cert.expirationTime, RFC3339_SECONDS);
      assert.equal(Date.parse(cert.validFrom), Date.parse(x509.validFrom));
      assert.equal(Date.parse(cert.expirationTime), Date.parse(x509.validTo));
    }
    assert.equal(BigInt(web.certChain[0]!.serialNumber), BigInt(`0x${issued.serialNumber}`));
  });

  it('groups live connections under the local workload in workloadState, keyed by uid', async () => {
    const store = storeWithMesh();
    const startedAt = new Date('2030-01-01T00:00:00Z');
    const live: LiveConnection[] = [
      { direction: 'outbound', src: '10.1.0.1:40000', dst: '10.2.0.1:8080', transport: 'hbone', srcIdentity: WEB, dstIdentity: spiffeId(TD, 'shop', 'default'), startedAt },
      { direction: 'inbound', src: '10.2.0.1:50000', dst: '10.1.0.2:5432', transport: 'plaintext', startedAt },
    ];
    const dump = await dumpFrom(new AdminServer({ store, node: 'node-a', log: silent, quit: () => {}, connections: () => live }));

    // Every enrolled pod of this node, each Up, even without connections; not the other node's pod.
    // Keyed by the pod's own uid, as ztunnel's in-pod handler (hand-written YAML: namespace/name stands in).
    assert.deepEqual(Object.keys(dump.workloadState).sort(), ['shop/db', 'shop/web']);
    const web = dump.workloadState['shop/web']!;
    const db = dump.workloadState['shop/db']!;
    assert.equal(web.state, 'Up');
    assert.deepEqual(web.info, { name: 'web', namespace: 'shop', trustDomain: TD, serviceAccount: 'web' });
    assert.deepEqual(web.connections, {
      inbound: [],
      outbound: [
        {
          src: '10.1.0.1:40000',
          originalDst: '10.2.0.1:8080',
          actualDst: '10.2.0.1:15008',
          protocol: 'HBONE',
          transport: 'hbone',
          srcIdentity: WEB,
          dstIdentity: spiffeId(TD, 'shop', 'default'),
          startedAt: '2030-01-01T00:00:00.000Z',
        },
      ],
    });
    assert.deepEqual(db.connections, {
      inbound: [{ src: '10.2.0.1:50000', originalDst: null, actualDst: '10.1.0.2:5432', protocol: 'TCP', transport: 'plaintext', startedAt: '2030-01-01T00:00:00.000Z' }],
      outbound: [],
    });
  });

  it("an inbound HBONE tunnel carries the Service the peer asked for (REMOTE TARGET), and a connection outlives its pod's place in the snapshot", async () => {
    const store = storeWithMesh();
    store.replace(buildSnapshot(parseConfigFile(`${MESH}${DB_SERVICE}`, 'mesh.yaml').objects, { version: 2, trustDomain: TD, clusterDomain: 'cluster.local' }));
    const live = new LiveConnections(store, silent);
    const pod = createServer((socket) => socket.pipe(socket));
    const port = await listen(pod, '127.0.0.1');
    const inbound = new InboundHbone({
      node: 'node-a',
      store,
      telemetry: new ConnectionTelemetry(new MeshMetrics('test'), silent),
      live,
      connectAsClient: () => new Promise((resolve) => { const s = tcpConnect(port, '127.0.0.1', () => resolve(s)); }),
    });
    const request = {
      peerIdentity: WEB,
      peerAddress: { ip: '10.2.0.1', port: 50000 },
      localAddress: { ip: '10.1.0.2', port: 15008 },
      localIdentity: spiffeId(TD, 'shop', 'db'),
      authority: { ip: '10.1.0.2', port: 5432 },
      headers: { forwarded: 'for="10.2.0.1";host=db.shop.svc.cluster.local' },
      signal: new AbortController().signal,
    } as Parameters<InboundHbone['handler']>[0];
    const decision = await inbound.handler(request);
    assert.ok(decision.kind === 'connected', decision.kind === 'refused' ? decision.reason : '');
    // What the HBONE server does at the tunnel's 200.
    decision.flow?.open(() => undefined);
    // An outbound connection of web, tracked as outbound.ts does, before web leaves the snapshot.
    const untrack = live.add({ direction: 'outbound', src: '10.1.0.1:40000', dst: '10.2.0.1:8080', transport: 'passthrough', startedAt: new Date() }, () => {});
    try {
      const served = async (): Promise<string> => {
        const admin = new AdminServer({ store, node: 'node-a', log: silent, quit: () => {}, connections: () => live.list() });
        const { port: adminPort } = await admin.listen('127.0.0.1', 0);
        try {
          return await (await fetch(`http://127.0.0.1:${adminPort}/config_dump`)).text();
        } finally {
          await admin.close();
        }
      };
      const body = await served();
      const db = (JSON.parse(body) as ConfigDump).workloadState['shop/db']!;
      assert.deepEqual(db.connections.inbound.map((c) => [c.src, c.originalDst, c.actualDst, c.protocol]), [['10.2.0.1:50000', 'db.shop.svc.cluster.local', '10.1.0.2:5432', 'HBONE']]);
      assert.match(zcOutput('connections', 'short', body), /^db\.shop +Inbound +db\.shop:5432 +far\.shop:50000 +db\.shop\.svc\.cluster\.local +HBONE$/m);

      // web's pod leaves; its connection drains on, still under web, in namespace shop.
      store.replace(buildSnapshot(parseConfigFile(`${MESH}${DB_SERVICE}`.replace(/---\napiVersion: v1\nkind: Pod\nmetadata: \{ name: web,[^]*?podIP: 10\.1\.0\.1 \}\n/, ''), 'mesh.yaml').objects, { version: 3, trustDomain: TD, clusterDomain: 'cluster.local' }));
      assert.equal(store.current?.workloads.has('shop/web'), false);
      const drained = (JSON.parse(await served()) as ConfigDump).workloadState['shop/web'];
      assert.deepEqual(drained?.info, { name: 'web', namespace: 'shop', trustDomain: TD, serviceAccount: 'web' });
      assert.deepEqual(drained?.connections.outbound.map((c) => c.src), ['10.1.0.1:40000']);
    } finally {
      untrack();
      decision.flow?.finish({ bytesSent: 0, bytesReceived: 0 });
      decision.upstream.destroy();
      live.close();
      await closeServer(pod);
    }
  });

  it('without a data path (--capture none): empty certificates, workloads with no connections', async () => {
    const store = storeWithMesh();
    const dump = await dumpFrom(new AdminServer({ store, node: 'node-a', log: silent, quit: () => {} }));
    assert.deepEqual(dump.certificates, []);
    assert.deepEqual(
      Object.values(dump.workloadState).map((w) => w.connections),
      [
        { inbound: [], outbound: [] },
        { inbound: [], outbound: [] },
      ],
    );
  });

  it('answers 500 and keeps serving when a provider throws', async () => {
    const store = storeWithMesh();
    const admin = new AdminServer({
      store,
      node: 'node-a',
      log: silent,
      quit: () => {},
      certificates: () => {
        throw new Error('boom');
      },
    });
    const { port } = await admin.listen('127.0.0.1', 0);
    try {
      const failed = await fetch(`http://127.0.0.1:${port}/config_dump`);
      assert.equal(failed.status, 500);
      assert.match(await failed.text(), /boom/);
      assert.equal((await fetch(`http://127.0.0.1:${port}/`)).status, 200);
    } finally {
      await admin.close();
    }
  });
});

function normalize(pem: string): string {
  return pem.trim().replace(/\r?\n/g, '\n');
}

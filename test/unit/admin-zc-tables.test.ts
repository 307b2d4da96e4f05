// `ambit zc certificates` and `ambit zc connections`: istioctl's tables from a config dump, checked
// cell by cell, and once end to end (the real `ambit` command against a real AdminServer).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { AdminServer } from '../../agent/admin/admin-server.js';
import type { ConfigDump, ConnectionDump } from '../../agent/admin/config-dump.js';
import { certificates, connections, renderTable } from '../../agent/cli/zc.js';
import { parseConfigFile } from '../../agent/config/load.js';
import { buildSnapshot } from '../../agent/state/build.js';
import type { SpiffeId } from '../../agent/state/model.js';
import { WorkloadStore } from '../../agent/state/store.js';

const NOW = new Date('2030-06-01T00:00:00Z');
const cert = (serialNumber: string, validFrom: string, expirationTime: string) => ({ pem: 'LS0t', serialNumber, validFrom, expirationTime });

function dump(parts: Partial<ConfigDump>): ConfigDump {
  return {
    version: 1,
    workloads: [],
    services: [],
    policies: [],
    certificates: [],
    workloadState: {},
    config: { node: 'node-a', trustDomain: 'cluster.local', clusterDomain: 'cluster.local' },
    ...parts,
  };
}

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';

describe('ambit zc certificates', () => {
  const certs = dump({
    certificates: [
      { identity: 'spiffe://cluster.local/ns/shop/sa/broken', state: 'Unavailable: the CA said no', certChain: [], rootCerts: [] },
      {
        identity: WEB,
        state: 'Available',
        certChain: [
          cert('271676055104741785552467469040731750696653685944', '2030-05-31T12:00:00Z', '2030-06-01T12:00:00Z'),
          cert('255', '2030-01-01T00:00:00Z', '2031-01-01T00:00:00Z'),
        ],
        // Already expired at NOW: VALID CERT false.
        rootCerts: [cert('1', '2020-01-01T00:00:00Z', '2030-01-01T00:00:00Z')],
      },
    ],
  });

  it("prints istioctl's columns, one row per certificate: Leaf, Intermediate, Root; hex serials; validity at now", () => {
    assert.deepEqual(certificates(certs, { now: NOW }), [
      ['CERTIFICATE NAME', 'TYPE', 'STATUS', 'VALID CERT', 'SERIAL NUMBER', 'NOT AFTER', 'NOT BEFORE'],
      ['spiffe://cluster.local/ns/shop/sa/broken', 'NA', 'Unavailable', 'false', 'NA', 'NA', 'NA'],
      [WEB, 'Leaf', 'Available', 'true', '2f96602a12c1e5a2b06ad9dd3251a705e7f004b8', '2030-06-01T12:00:00Z', '2030-05-31T12:00:00Z'],
      [WEB, 'Intermediate', 'Available', 'true', 'ff', '2031-01-01T00:00:00Z', '2030-01-01T00:00:00Z'],
      [WEB, 'Root', 'Available', 'false', '1', '2030-01-01T00:00:00Z', '2020-01-01T00:00:00Z'],
    ]);
  });

  it('says a leaf is not valid once it has expired', () => {
    const later = new Date('2030-06-02T00:00:00Z');
    const leaf = certificates(certs, { now: later }).find((row) => row[1] === 'Leaf');
    assert.equal(leaf?.[3], 'false');
  });

  it('renders aligned columns', () => {
    const text = renderTable(certificates(certs, { now: NOW }));
    const lines = text.trimEnd().split('\n');
    assert.equal(lines.length, 5);
    const typeColumn = lines[0]!.indexOf('TYPE');
    for (const line of lines.slice(1)) assert.match(line.slice(typeColumn), /^(NA|Leaf|Intermediate|Root)\s/);
  });
});

describe('ambit zc connections', () => {
  const hbone = (src: string, originalDst: string | null, actualDst: string, extra: Partial<ConnectionDump> = {}): ConnectionDump => ({
    src, originalDst, actualDst, protocol: 'HBONE', transport: 'hbone', startedAt: '2030-05-31T23:58:55.000Z', ...extra,
  });
  const conns = dump({
    workloads: [
      { uid: 'Kubernetes//Pod/shop/web', workloadIps: ['10.1.0.1'], name: 'web', namespace: 'shop' },
      { uid: 'Kubernetes//Pod/shop/db', workloadIps: ['10.1.0.2'], name: 'db', namespace: 'shop' },
    ] as unknown as ConfigDump['workloads'],
    services: [{ name: 'db', namespace: 'shop', hostname: 'db.shop.svc.cluster.local', vips: ['/10.96.0.20'] }] as unknown as ConfigDump['services'],
    workloadState: {
      'Kubernetes//Pod/shop/web': {
        state: 'Up',
        info: { name: 'web', namespace: 'shop', trustDomain: 'cluster.local', serviceAccount: 'web' },
        connections: { inbound: [], outbound: [hbone('10.1.0.1:40000', '10.96.0.20:5432', '10.1.0.2:15008', { dstIdentity: 'spiffe://cluster.local/ns/shop/sa/db' })] },
      },
      'Kubernetes//Pod/shop/db': {
        state: 'Up',
        info: { name: 'db', namespace: 'shop', trustDomain: 'cluster.local', serviceAccount: 'db' },
        connections: {
          inbound: [
            hbone('10.1.0.1:40000', null, '10.1.0.2:5432', { srcIdentity: WEB }),
            { src: '192.0.2.7:1234', originalDst: null, actualDst: '10.1.0.2:5432', protocol: 'TCP', transport: 'plaintext', startedAt: '2030-05-29T20:00:00.000Z' },
          ],
          outbound: [],
        },
      },
    },
  });

  it("prints istioctl's columns, workloads sorted, addresses named after their service or workload", () => {
    assert.deepEqual(connections(conns, { now: NOW }), [
      ['WORKLOAD', 'DIRECTION', 'LOCAL', 'REMOTE', 'REMOTE TARGET', 'PROTOCOL'],
      ['db.shop', 'Inbound', 'db.shop:5432', 'web.shop:40000', '', 'HBONE'],
      ['db.shop', 'Inbound', 'db.shop:5432', '192.0.2.7:1234', '', 'TCP'],
      ['web.shop', 'Outbound', 'web.shop:40000', 'db.shop:15008', 'db.shop.svc.cluster.local:5432', 'HBONE'],
    ]);
  });

  it('--direction and --raw filter rows and keep addresses as they are', () => {
    assert.deepEqual(connections(conns, { now: NOW, direction: 'outbound', raw: true }), [
      ['WORKLOAD', 'DIRECTION', 'LOCAL', 'REMOTE', 'REMOTE TARGET', 'PROTOCOL'],
      ['web.shop', 'Outbound', '10.1.0.1:40000', '10.1.0.2:15008', '10.96.0.20:5432', 'HBONE'],
    ]);
    assert.deepEqual(connections(conns, { now: NOW, direction: 'inbound' }).map((row) => row[1]), ['DIRECTION', 'Inbound', 'Inbound']);
  });

  it('-o wide adds the peer identity and the age', () => {
    const rows = connections(conns, { now: NOW, wide: true });
    assert.deepEqual(rows[0]!.slice(6), ['REMOTE IDENTITY', 'AGE']);
    assert.deepEqual(rows.slice(1).map((row) => row.slice(6)), [
      [WEB, '1m5s'],
      ['-', '2d4h'],
      ['spiffe://cluster.local/ns/shop/sa/db', '1m5s'],
    ]);
  });
});

describe('ambit zc, end to end', () => {
  it('fetches /config_dump from the admin server and prints the certificates and connections tables', async () => {
    const parsed = parseConfigFile(
      `apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Pod
metadata: { name: web, namespace: shop }
spec: { nodeName: node-a, serviceAccountName: web, containers: [{ name: c, command: [x] }] }
status: { phase: Running, podIP: 10.1.0.1 }
`,
      'mesh.yaml',
    );
    const store = new WorkloadStore();
    store.replace(buildSnapshot(parsed.objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' }));
    const admin = new AdminServer({
      store,
      node: 'node-a',
      log: pino({ level: 'silent' }),
      quit: () => {},
      certificates: () => [{ identity: WEB as SpiffeId, state: 'Initializing' }],
      connections: () => [{ direction: 'outbound', src: '10.1.0.1:40000', dst: '10.2.0.9:80', transport: 'passthrough', startedAt: new Date() }],
    });
    const { port } = await admin.listen('127.0.0.1', 0);
    try {
      const main = fileURLToPath(new URL('../../agent/cli/main.ts', import.meta.url));
      const run = (...args: string[]) => promisify(execFile)(process.execPath, ['--import', 'tsx', main, 'zc', ...args, '--admin-address', `127.0.0.1:${port}`]);
      const certs = await run('certs');
      assert.deepEqual(certs.stdout.trimEnd().split('\n').map((l) => l.split(/\s{2,}/)), [
        ['CERTIFICATE NAME', 'TYPE', 'STATUS', 'VALID CERT', 'SERIAL NUMBER', 'NOT AFTER', 'NOT BEFORE'],
        [WEB, 'NA', 'Initializing', 'false', 'NA', 'NA', 'NA'],
      ]);
      const cons = await run('connections');
      assert.deepEqual(cons.stdout.trimEnd().split('\n').map((l) => l.split(/\s{2,}/)), [
        ['WORKLOAD', 'DIRECTION', 'LOCAL', 'REMOTE', 'REMOTE TARGET', 'PROTOCOL'],
        ['web.shop', 'Outbound', 'web.shop:40000', '10.2.0.9:80', '10.2.0.9:80', 'TCP'],
      ]);
      const json = JSON.parse((await run('connections', '-o', 'json')).stdout) as Pick<ConfigDump, 'workloadState'>;
      assert.deepEqual(Object.keys(json), ['workloadState']);
    } finally {
      await admin.close();
    }
  });
});

// `ambit zc`: istioctl's tables and documents from a config dump, checked cell by cell and byte by byte
// against what istioctl's writers (istioctl/pkg/writer/ztunnel/configdump) print for the same dump,
// written by hand from their source, and once end to end (the real `ambit` command, a real AdminServer).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { AdminServer } from '../../agent/admin/admin-server.js';
import type { ConfigDump, ConnectionDump, PolicyDump, ServiceDump, WorkloadDump } from '../../agent/admin/config-dump.js';
import { buildInfo } from '../../agent/admin/build-info.js';
import { zcOutput } from '../../agent/cli/zc.js';
import { certificates, connections, policies, services, workloads } from '../../agent/cli/zc-tables.js';
import { parseConfigFile } from '../../agent/config/load.js';
import { buildSnapshot } from '../../agent/state/build.js';
import type { SpiffeId } from '../../agent/state/model.js';
import { WorkloadStore } from '../../agent/state/store.js';

const NOW = new Date('2030-06-01T00:00:00Z');
const cert = (serialNumber: string, validFrom: string, expirationTime: string) => ({ pem: 'LS0t', serialNumber, validFrom, expirationTime });

function dump(parts: Partial<ConfigDump>): ConfigDump {
  return {
    workloads: [],
    services: [],
    policies: [],
    version: buildInfo(),
    config: { node: 'node-a', trustDomain: 'cluster.local', clusterDomain: 'cluster.local' },
    certificates: [],
    workloadState: {},
    snapshotVersion: 1,
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

  it("calls the chain's last certificate Root when there are no separate roots, padded as istioctl's tabwriter (5)", () => {
    const legacy = dump({
      certificates: [{ identity: WEB, state: 'Available', certChain: [cert('255', '2030-01-01T00:00:00Z', '2031-01-01T00:00:00Z'), cert('1', '2020-01-01T00:00:00Z', '2040-01-01T00:00:00Z')], rootCerts: [] }],
    });
    const sp = (n: number): string => ' '.repeat(n);
    assert.equal(
      zcOutput('certificates', 'short', JSON.stringify(legacy), { now: NOW }),
      `CERTIFICATE NAME${sp(26)}TYPE${sp(5)}STATUS${sp(8)}VALID CERT${sp(5)}SERIAL NUMBER${sp(5)}NOT AFTER${sp(16)}NOT BEFORE\n` +
        `${WEB}${sp(5)}Leaf${sp(5)}Available${sp(5)}true${sp(11)}ff${sp(16)}2031-01-01T00:00:00Z${sp(5)}2030-01-01T00:00:00Z\n` +
        `${WEB}${sp(5)}Root${sp(5)}Available${sp(5)}true${sp(11)}1${sp(17)}2040-01-01T00:00:00Z${sp(5)}2020-01-01T00:00:00Z\n`,
    );
  });
});

describe('ambit zc workloads', () => {
  const wl = (namespace: string, name: string, node: string, ip: string): WorkloadDump => ({ namespace, name, node, workloadIps: [ip], protocol: 'HBONE' }) as unknown as WorkloadDump;
  it('sorts by namespace.name as one string, byte-wise, then node', () => {
    const d = dump({ workloads: [wl('app', 'z', 'node-a', '10.0.0.1'), wl('app', 'm', 'node-b', '10.0.0.2'), wl('app-2', 'a', 'node-a', '10.0.0.3'), wl('app', 'm', 'node-a', '10.0.0.4')] });
    // '-' (0x2d) sorts before '.' (0x2e): app-2.a comes before app.m, which a (namespace, name) order would not do.
    assert.deepEqual(workloads(d).slice(1).map((row) => `${row[0]}/${row[1]}@${row[3]}`), ['app-2/a@node-a', 'app/m@node-a', 'app/m@node-b', 'app/z@node-a']);
    assert.equal(
      zcOutput('workloads', 'short', JSON.stringify(d)),
      'NAMESPACE POD NAME ADDRESS  NODE   WAYPOINT PROTOCOL\n' +
        'app-2     a        10.0.0.3 node-a None     HBONE\n' +
        'app       m        10.0.0.4 node-a None     HBONE\n' +
        'app       m        10.0.0.2 node-b None     HBONE\n' +
        'app       z        10.0.0.1 node-a None     HBONE\n',
    );
  });
});

describe('ambit zc services and policies', () => {
  it('sorts services by namespace, name, hostname, and policies by namespace, name, each field byte-wise (PrintServiceSummary, PrintPolicySummary)', () => {
    const svc = (namespace: string, name: string, hostname: string): ServiceDump => ({ namespace, name, hostname, vips: [], ports: {}, endpoints: {}, subjectAltNames: [], ipFamilies: 'IPv4', canonical: true, visibility: 'Public' }) as unknown as ServiceDump;
    const pol = (namespace: string, name: string): PolicyDump => ({ namespace, name, action: 'Allow', scope: 'Namespace' }) as unknown as PolicyDump;
    // In the dump's own orders (hostname; namespace/name as one string), which are not istioctl's.
    const d = dump({
      services: [svc('shop-2', 'a', 'a.shop-2.svc.cluster.local'), svc('shop', 'b', 'b.example.com'), svc('shop', 'b', 'b.shop.svc.cluster.local'), svc('shop', 'Z', 'z.shop.svc.cluster.local')],
      policies: [pol('a-b', 'y'), pol('a', 'x'), pol('a', 'B')],
    });
    // 'shop' before 'shop-2' (a field, not "namespace.name": '-' would sort before '.'); 'Z' (0x5a) before 'b' (0x62).
    assert.deepEqual(services(d).slice(1).map((row) => `${row[0]}/${row[1]}`), ['shop/Z', 'shop/b', 'shop/b', 'shop-2/a']);
    assert.deepEqual(policies(d).slice(1).map((row) => `${row[0]}/${row[1]}`), ['a/B', 'a/x', 'a-b/y']);
    assert.equal(
      zcOutput('policies', 'short', JSON.stringify(d)),
      'NAMESPACE POLICY NAME ACTION SCOPE\n' + 'a         B           Allow  Namespace\n' + 'a         x           Allow  Namespace\n' + 'a-b       y           Allow  Namespace\n',
    );
    // Same namespace and name: by hostname.
    assert.deepEqual(zcOutput('services', 'json', JSON.stringify(d)).match(/"hostname": "[^"]+"/g), [
      '"hostname": "z.shop.svc.cluster.local"',
      '"hostname": "b.example.com"',
      '"hostname": "b.shop.svc.cluster.local"',
      '"hostname": "a.shop-2.svc.cluster.local"',
    ]);
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
            hbone('10.1.0.1:40000', 'db.shop.svc.cluster.local', '10.1.0.2:5432', { srcIdentity: WEB }),
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
      // REMOTE TARGET inbound: the Service the peer asked for, printed as the dump has it.
      ['db.shop', 'Inbound', 'db.shop:5432', 'web.shop:40000', 'db.shop.svc.cluster.local', 'HBONE'],
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
      assert.equal(
        certs.stdout,
        `CERTIFICATE NAME${' '.repeat(26)}TYPE     STATUS           VALID CERT     SERIAL NUMBER     NOT AFTER     NOT BEFORE\n` + `${WEB}     NA       Initializing     false          NA                NA            NA\n`,
      );
      const cons = await run('connections');
      assert.equal(
        cons.stdout,
        'WORKLOAD DIRECTION LOCAL          REMOTE      REMOTE TARGET PROTOCOL\n' + 'web.shop Outbound  web.shop:40000 10.2.0.9:80 10.2.0.9:80   TCP\n',
      );
      // -o json: istioctl's bare array of WorkloadState, its four connection fields only, four-space indent.
      const json = (await run('connections', '-o', 'json')).stdout;
      assert.equal(
        json,
        `[
    {
        "state": "Up",
        "connections": {
            "inbound": [],
            "outbound": [
                {
                    "src": "10.1.0.1:40000",
                    "originalDst": "10.2.0.9:80",
                    "actualDst": "10.2.0.9:80",
                    "protocol": "TCP"
                }
            ]
        },
        "info": {
            "name": "web",
            "namespace": "shop",
            "trustDomain": "cluster.local",
            "serviceAccount": "web"
        }
    }
]
`,
      );
    } finally {
      await admin.close();
    }
  });
});

describe('ambit zc -o json and -o yaml', () => {
  const service = {
    name: 'db',
    namespace: 'shop',
    hostname: 'db.shop.svc.cluster.local',
    vips: ['/10.96.0.20'],
    ports: { 99: 8099, 100: 8100 },
    endpoints: { 'Kubernetes//Pod/shop/db-0': { workloadUid: 'Kubernetes//Pod/shop/db-0', port: { 99: 8099, 100: 8100 }, status: 'Healthy' } },
    subjectAltNames: [],
    ipFamilies: 'IPv4',
    canonical: true,
    visibility: 'Public',
  } satisfies ServiceDump;
  const body = JSON.stringify(dump({ services: [service] }));

  it("-o json is istioctl's ZtunnelService: its fields in its order, Go map keys sorted as strings, no endpoint status", () => {
    assert.equal(
      zcOutput('services', 'json', body),
      `[
    {
        "name": "db",
        "namespace": "shop",
        "hostname": "db.shop.svc.cluster.local",
        "vips": [
            "/10.96.0.20"
        ],
        "ports": {
            "100": 8100,
            "99": 8099
        },
        "endpoints": {
            "Kubernetes//Pod/shop/db-0": {
                "workloadUid": "Kubernetes//Pod/shop/db-0",
                "service": "",
                "port": {
                    "100": 8100,
                    "99": 8099
                }
            }
        },
        "ipFamilies": "IPv4",
        "canonical": true,
        "visibility": "Public"
    }
]
`,
    );
  });

  it("-o yaml is go-yaml v2's: keys in its order (digit runs by value), sequences not indented, typed-looking strings quoted", () => {
    assert.equal(
      zcOutput('services', 'yaml', body),
      `- canonical: true
  endpoints:
    Kubernetes//Pod/shop/db-0:
      port:
        "99": 8099
        "100": 8100
      service: ""
      workloadUid: Kubernetes//Pod/shop/db-0
  hostname: db.shop.svc.cluster.local
  ipFamilies: IPv4
  name: db
  namespace: shop
  ports:
    "99": 8099
    "100": 8100
  vips:
  - /10.96.0.20
  visibility: Public

`,
    );
  });

  it('all -o json is the dump as the agent served it', () => {
    assert.equal(zcOutput('all', 'json', body), `${body}\n`);
  });
});

// /config_dump's workloads, services and policies, from YAML through a real AdminServer over HTTP, held
// to what ztunnel writes for the pods and policies istiod would send it (expectations written by hand
// from istiod's ambient builders and ztunnel's src/state/*.rs and src/rbac.rs).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { AdminServer } from '../../agent/admin/admin-server.js';
import type { ConfigDump } from '../../agent/admin/config-dump.js';
import { zcOutput } from '../../agent/cli/zc.js';
import { parseConfigFile } from '../../agent/config/load.js';
import { buildSnapshot } from '../../agent/state/build.js';
import { WorkloadStore } from '../../agent/state/store.js';

const silent = pino({ level: 'silent' });

const pod = (meta: string, spec: string, status: string): string => `---
apiVersion: v1
kind: Pod
metadata: { namespace: shop, ${meta} }
spec: { ${spec}, containers: [{ name: c, command: [x] }] }
status: { ${status} }
`;

const MESH = `apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { istio.io/dataplane-mode: ambient } }
${pod(
  'name: web-7d4b9c6f5-x2x9q, generateName: web-7d4b9c6f5-, labels: { app: web, pod-template-hash: 7d4b9c6f5 }, ownerReferences: [{ apiVersion: apps/v1, kind: ReplicaSet, name: web-7d4b9c6f5, uid: u1, controller: true }]',
  'nodeName: node-a, serviceAccountName: web',
  'phase: Running, podIP: 10.1.0.1',
)}${pod(
  'name: report-28474020-abcde, generateName: report-28474020-, ownerReferences: [{ apiVersion: batch/v1, kind: Job, name: report-28474020, uid: u2, controller: true }]',
  'nodeName: node-a',
  'phase: Running, podIP: 10.1.0.3',
)}${pod(
  'name: db-0, generateName: db-, labels: { app: db, service.istio.io/workload-name: database }, ownerReferences: [{ apiVersion: apps/v1, kind: StatefulSet, name: db, uid: u3, controller: true }]',
  'nodeName: node-a, serviceAccountName: db',
  'phase: Running, podIP: 10.1.0.2',
)}${pod('name: db-1, labels: { app: db, role: standby }', 'nodeName: node-b, serviceAccountName: db', "phase: Running, podIP: 10.2.0.2, conditions: [{ type: Ready, status: 'False' }]")}${pod(
  'name: solo, labels: { pod-template-hash: abc }, ownerReferences: [{ apiVersion: apps/v1, kind: ReplicaSet, name: solo-abc, uid: u4, controller: true }]',
  'nodeName: node-b',
  'phase: Running, podIP: 10.2.0.9',
)}${pod('name: pending, labels: { app: db }', 'nodeName: node-b', 'phase: Pending')}---
apiVersion: v1
kind: Service
metadata: { name: db, namespace: shop }
spec: { clusterIP: 10.96.0.20, selector: { app: db }, ports: [{ port: 5432 }] }
---
apiVersion: v1
kind: Service
metadata: { name: standby, namespace: shop }
spec: { clusterIP: 10.96.0.21, selector: { role: standby }, ports: [{ port: 5432, targetPort: 5433 }] }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: web-allow, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  rules:
  - from: [{ source: { principals: ['cluster.local/ns/shop/sa/*'], namespaces: [shop] } }]
    to: [{ operation: { ports: ['8080'] } }]
  - to: [{ operation: { methods: [GET] } }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-legacy, namespace: shop }
spec:
  action: DENY
  rules:
  - from: [{ source: { ipBlocks: [192.0.2.0/24, 203.0.113.7], serviceAccounts: [db, other/x] } }, { source: { notPrincipals: ['*'] } }]
    when: [{ key: destination.port, values: ['9090'] }, { key: 'request.headers[x-legacy]', values: ['1'] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: mesh-allow, namespace: istio-system }
spec: { rules: [{}] }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: mesh-web, namespace: istio-system }
spec:
  selector: { matchLabels: { app: web } }
  action: DENY
  rules: [{ to: [{ operation: { notPorts: ['22'] } }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: waypoint-only, namespace: shop }
spec: { targetRefs: [{ kind: Service, group: '', name: db }], rules: [{}] }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: audit, namespace: shop }
spec: { action: AUDIT, rules: [{}] }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ext, namespace: shop }
spec: { action: CUSTOM, provider: { name: opa }, rules: [{}] }
`;

async function served(): Promise<{ dump: ConfigDump; body: string }> {
  const parsed = parseConfigFile(MESH, 'mesh.yaml');
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error'), []);
  const store = new WorkloadStore();
  store.replace(buildSnapshot(parsed.objects, { version: 7, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' }));
  const admin = new AdminServer({ store, node: 'node-a', log: silent, quit: () => {} });
  const { port } = await admin.listen('127.0.0.1', 0);
  try {
    const body = await (await fetch(`http://127.0.0.1:${port}/config_dump`)).text();
    return { dump: JSON.parse(body) as ConfigDump, body };
  } finally {
    await admin.close();
  }
}

const uid = (name: string): string => `Kubernetes//Pod/shop/${name}`;

describe('/config_dump workloads', () => {
  it('lists pods with an address, sorted by uid, each with the workload name istiod derives', async () => {
    const { dump } = await served();
    assert.deepEqual(
      dump.workloads.map((w) => [w.name, w.workloadName, w.canonicalName]),
      [
        // The workload-name label wins over the StatefulSet; the app label names the canonical service.
        ['db-0', 'database', 'db'],
        // No generateName: no controller is looked at.
        ['db-1', 'db-1', 'db'],
        // A CronJob's Job: the timestamp is trimmed; without an app label the workload name is the canonical one.
        ['report-28474020-abcde', 'report', 'report'],
        ['solo', 'solo', 'solo'],
        // A Deployment's ReplicaSet: the pod-template-hash is trimmed.
        ['web-7d4b9c6f5-x2x9q', 'web', 'web'],
      ],
    );
  });

  it("writes ztunnel's fields in ztunnel's order, leaving out what ztunnel leaves out", async () => {
    const { dump } = await served();
    const web = dump.workloads.find((w) => w.name === 'web-7d4b9c6f5-x2x9q');
    const expected = {
      workloadIps: ['10.1.0.1'],
      protocol: 'HBONE',
      networkMode: 'Standard',
      uid: uid('web-7d4b9c6f5-x2x9q'),
      name: 'web-7d4b9c6f5-x2x9q',
      namespace: 'shop',
      trustDomain: 'cluster.local',
      serviceAccount: 'web',
      workloadName: 'web',
      workloadType: 'pod',
      canonicalName: 'web',
      canonicalRevision: 'latest',
      node: 'node-a',
      // Only the selector-bound policies that select it (root namespace and its own), sorted.
      authorizationPolicies: ['istio-system/mesh-web', 'shop/web-allow'],
      status: 'Healthy',
      clusterId: 'Kubernetes',
      capacity: 1,
    };
    assert.deepEqual(web, expected);
    assert.deepEqual(Object.keys(web!), Object.keys(expected));
    const standby = dump.workloads.find((w) => w.name === 'db-1');
    assert.equal(standby?.status, 'Unhealthy');
    assert.deepEqual(standby?.services, ['shop/db.shop.svc.cluster.local', 'shop/standby.shop.svc.cluster.local']);
    assert.equal('authorizationPolicies' in standby!, false);
  });

  it('version is the build information object, with ztunnel keys; the snapshot version has its own key', async () => {
    const { dump } = await served();
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    assert.deepEqual(Object.keys(dump.version), ['version', 'gitRevision', 'rustVersion', 'buildProfile', 'buildStatus', 'istioVersion', 'cryptoProvider', 'nodeVersion']);
    assert.equal(dump.version.version, pkg.version);
    assert.equal(dump.snapshotVersion, 7);
  });
});

describe('/config_dump services', () => {
  it('lists every selected workload as an endpoint with its ports and health', async () => {
    const { dump } = await served();
    assert.deepEqual(
      dump.services.map((s) => [s.hostname, s.endpoints]),
      [
        [
          'db.shop.svc.cluster.local',
          {
            [uid('db-0')]: { workloadUid: uid('db-0'), port: { 5432: 5432 }, status: 'Healthy' },
            [uid('db-1')]: { workloadUid: uid('db-1'), port: { 5432: 5432 }, status: 'Unhealthy' },
          },
        ],
        ['standby.shop.svc.cluster.local', { [uid('db-1')]: { workloadUid: uid('db-1'), port: { 5432: 5433 }, status: 'Unhealthy' } }],
      ],
    );
    const standby = dump.services[1]!;
    assert.deepEqual(Object.keys(standby), ['name', 'namespace', 'hostname', 'vips', 'ports', 'endpoints', 'subjectAltNames', 'ipFamilies', 'canonical', 'visibility']);
    assert.deepEqual(standby.vips, ['/10.96.0.21']);
  });

  it('ambit zc services counts the unready backend: 0/1, as istioctl shows for ztunnel', async () => {
    const { body } = await served();
    assert.equal(
      zcOutput('services', 'short', body),
      'NAMESPACE SERVICE NAME SERVICE VIP WAYPOINT ENDPOINTS\n' +
        'shop      db           10.96.0.20  None     1/2\n' +
        'shop      standby      10.96.0.21  None     0/1\n',
    );
  });
});

describe('/config_dump policies', () => {
  it('holds only what istiod sends a node proxy, sorted, with Allow/Deny and the rules converted as istiod does', async () => {
    const { dump } = await served();
    assert.deepEqual(dump.policies, [
      { name: 'mesh-allow', namespace: 'istio-system', scope: 'Global', action: 'Allow', rules: [[]], dryRun: false },
      { name: 'mesh-web', namespace: 'istio-system', scope: 'WorkloadSelector', action: 'Deny', rules: [[[{ notDestinationPorts: [22] }]]], dryRun: false },
      {
        name: 'deny-legacy',
        namespace: 'shop',
        scope: 'Namespace',
        action: 'Deny',
        rules: [
          [
            [
              {
                serviceAccounts: [
                  { namespace: 'shop', serviceAccount: 'db' },
                  { namespace: 'other', serviceAccount: 'x' },
                ],
                sourceIps: ['192.0.2.0/24', '203.0.113.7/32'],
              },
              { notPrincipals: [{ Presence: [] }] },
            ],
            [{ destinationPorts: [9090] }],
            // A DENY keeps a condition it cannot read as an empty match, which never matches.
            [{}],
          ],
        ],
        dryRun: false,
      },
      {
        name: 'web-allow',
        namespace: 'shop',
        scope: 'WorkloadSelector',
        action: 'Allow',
        // The rule on methods needs HTTP: an ALLOW drops it. Operations first, then sources.
        rules: [[[{ destinationPorts: [8080] }], [{ namespaces: [{ Exact: 'shop' }], principals: [{ Prefix: 'cluster.local/ns/shop/sa/' }] }]]],
        dryRun: false,
      },
    ]);
  });

  it('ambit zc policies prints the action and scope as the dump spells them', async () => {
    const { body } = await served();
    assert.equal(
      zcOutput('policies', 'short', body),
      'NAMESPACE    POLICY NAME ACTION SCOPE\n' +
        'istio-system mesh-allow  Allow  Global\n' +
        'istio-system mesh-web    Deny   WorkloadSelector\n' +
        'shop         deny-legacy Deny   Namespace\n' +
        'shop         web-allow   Allow  WorkloadSelector\n',
    );
  });
});

// Istio's TCP metrics as /metrics serves them (real prom-client text output) for the three outcomes a
// connection can have: allowed over mTLS, denied by policy, failed to connect; the label values follow
// ztunnel's rules (app and canonical_service = canonical name, version = canonical revision, cluster =
// cluster id, principals only from certificates).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { parseConfigFile } from '../../agent/config/load.js';
import { buildSnapshot } from '../../agent/state/build.js';
import type { MeshSnapshot, SpiffeId } from '../../agent/state/model.js';
import { type ConnectionDescription, ConnectionTelemetry } from '../../agent/telemetry/connections.js';
import { MeshMetrics, TCP_LABELS } from '../../agent/telemetry/metrics.js';
import { parsePrometheusText, samplesOf } from './helpers/prometheus-text.js';

const MESH = `
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Pod
metadata:
  name: web-5d9f
  namespace: shop
  labels: { app: web, version: v-from-label, service.istio.io/canonical-name: storefront, service.istio.io/canonical-revision: r7 }
spec: { nodeName: node-a, serviceAccountName: web, containers: [{ name: c, command: [x] }] }
status: { phase: Running, podIP: 10.1.0.1 }
---
apiVersion: v1
kind: Pod
metadata:
  name: db-0
  namespace: shop
  labels: { app: db, app.kubernetes.io/name: database, app.kubernetes.io/version: "15" }
spec: { nodeName: node-b, serviceAccountName: db, containers: [{ name: c, command: [x] }] }
status: { phase: Running, podIP: 10.1.0.2 }
---
apiVersion: v1
kind: Service
metadata: { name: db, namespace: shop }
spec: { clusterIP: 10.96.0.20, selector: { app: db }, ports: [{ port: 5432, targetPort: 5432 }] }
`;

function meshSnapshot(yaml: string, version = 1): MeshSnapshot {
  const parsed = parseConfigFile(yaml, 'mesh.yaml');
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error'), []);
  return buildSnapshot(parsed.objects, { version, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
}

const silent = pino({ level: 'silent' });

const WEB_ID = 'spiffe://cluster.local/ns/shop/sa/web' as SpiffeId;
const DB_ID = 'spiffe://cluster.local/ns/shop/sa/db' as SpiffeId;

/** web → db through the Service, as the destination agent sees it over HBONE. */
function inboundHbone(snapshot: MeshSnapshot): ConnectionDescription {
  return {
    direction: 'inbound',
    src: { addr: '10.1.0.1:40000', workload: snapshot.workloads.get('shop/web-5d9f')!, identity: WEB_ID },
    dst: { addr: '10.1.0.2:5432', hboneAddr: '10.1.0.2:5432', workload: snapshot.workloads.get('shop/db-0')!, service: snapshot.services.get('shop/db.shop.svc.cluster.local')!, identity: DB_ID },
    securityPolicy: 'mutual_tls',
  };
}

async function scrape(metrics: MeshMetrics) {
  return parsePrometheusText(await metrics.registry.metrics());
}

describe('Istio TCP metrics labels', () => {
  it('an allowed mTLS connection: opened, closed and bytes with the full standard label set', async () => {
    const snapshot = meshSnapshot(MESH);
    const metrics = new MeshMetrics('test');
    const telemetry = new ConnectionTelemetry(metrics, silent);
    telemetry.opened(inboundHbone(snapshot)).closed({ bytesSent: 120, bytesReceived: 4500 });

    const samples = await scrape(metrics);
    const [opened, ...more] = samplesOf(samples, 'istio_tcp_connections_opened_total');
    assert.equal(more.length, 0);
    assert.ok(opened);
    assert.equal(opened.value, 1);
    // Every standard label, in ztunnel's names, and nothing else.
    assert.deepEqual(Object.keys(opened.labels).sort(), [...TCP_LABELS].sort());
    assert.deepEqual(opened.labels, {
      reporter: 'destination',
      source_workload: 'web',
      source_canonical_service: 'storefront',
      source_canonical_revision: 'r7',
      source_workload_namespace: 'shop',
      source_principal: WEB_ID,
      // app and version are the canonical name and revision, not the pod's app/version labels.
      source_app: 'storefront',
      source_version: 'r7',
      source_cluster: 'Kubernetes',
      destination_service: 'db.shop.svc.cluster.local',
      destination_service_namespace: 'shop',
      destination_service_name: 'db',
      destination_workload: 'db',
      destination_canonical_service: 'database',
      destination_canonical_revision: '15',
      destination_workload_namespace: 'shop',
      destination_principal: DB_ID,
      destination_app: 'database',
      destination_version: '15',
      destination_cluster: 'Kubernetes',
      request_protocol: 'tcp',
      response_flags: '-',
      connection_security_policy: 'mutual_tls',
    });
    assert.deepEqual(samplesOf(samples, 'istio_tcp_connections_closed_total').map((s) => [s.value, s.labels]), [[1, opened.labels]]);
    // Istio's convention: "received" is what the client sent, "sent" what went back to it.
    assert.deepEqual(samplesOf(samples, 'istio_tcp_received_bytes_total').map((s) => s.value), [120]);
    assert.deepEqual(samplesOf(samples, 'istio_tcp_sent_bytes_total').map((s) => s.value), [4500]);
    assert.deepEqual(samplesOf(samples, 'istio_tcp_connections_failed_total'), []);
  });

  it('a connection denied by policy counts as failed with response_flags DENY, never as opened', async () => {
    const snapshot = meshSnapshot(MESH);
    const metrics = new MeshMetrics('test');
    const telemetry = new ConnectionTelemetry(metrics, silent);
    telemetry.failed(inboundHbone(snapshot), 'DENY', 'denied by shop/deny-web');
    telemetry.failed(inboundHbone(snapshot), 'DENY', 'denied by shop/deny-web');

    const samples = await scrape(metrics);
    const failed = samplesOf(samples, 'istio_tcp_connections_failed_total');
    assert.equal(failed.length, 1);
    assert.equal(failed[0]!.value, 2);
    assert.equal(failed[0]!.labels['response_flags'], 'DENY');
    assert.equal(failed[0]!.labels['reporter'], 'destination');
    assert.equal(failed[0]!.labels['source_principal'], WEB_ID);
    assert.equal(failed[0]!.labels['connection_security_policy'], 'mutual_tls');
    assert.deepEqual(samplesOf(samples, 'istio_tcp_connections_opened_total'), []);
  });

  it('an outbound connection that could not connect: CONNECT, and unknown for what was never proven', async () => {
    const snapshot = meshSnapshot(MESH);
    const metrics = new MeshMetrics('test');
    const telemetry = new ConnectionTelemetry(metrics, silent, { clusterId: 'east' });
    // The client side has no peer certificate for the source: its principal is not "known" here.
    telemetry.failed(
      {
        direction: 'outbound',
        src: { addr: '10.1.0.1:40001', workload: snapshot.workloads.get('shop/web-5d9f')! },
        dst: { addr: '10.96.0.20:5432', service: snapshot.services.get('shop/db.shop.svc.cluster.local')! },
        securityPolicy: 'unknown',
      },
      'CONNECT',
      'connection refused',
    );

    const [failed, ...more] = samplesOf(await scrape(metrics), 'istio_tcp_connections_failed_total');
    assert.equal(more.length, 0);
    assert.ok(failed);
    assert.equal(failed.value, 1);
    assert.equal(failed.labels['reporter'], 'source');
    assert.equal(failed.labels['response_flags'], 'CONNECT');
    assert.equal(failed.labels['connection_security_policy'], 'unknown');
    assert.equal(failed.labels['source_principal'], 'unknown');
    assert.equal(failed.labels['source_cluster'], 'east');
    assert.equal(failed.labels['source_app'], 'storefront');
    assert.equal(failed.labels['destination_service'], 'db.shop.svc.cluster.local');
    for (const label of ['destination_workload', 'destination_canonical_service', 'destination_app', 'destination_version', 'destination_cluster', 'destination_principal']) {
      assert.equal(failed.labels[label], 'unknown', label);
    }
  });

  it('istio_tcp_connections_failed_total is exposed (HELP and TYPE) before any failure', async () => {
    const text = await new MeshMetrics('test').registry.metrics();
    assert.match(text, /^# HELP istio_tcp_connections_failed_total .+$/m);
    assert.match(text, /^# TYPE istio_tcp_connections_failed_total counter$/m);
  });
});

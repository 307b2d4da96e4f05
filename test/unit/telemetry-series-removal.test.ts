// A workload's TCP series leave /metrics when the workload leaves the store (or its canonical labels
// change), so pod churn does not grow the scrape forever (istio/ztunnel#1719); series of a connection
// still open stay until it closes, and series that name no workload are never swept.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { parseConfigFile } from '../../agent/config/load.js';
import { buildSnapshot } from '../../agent/state/build.js';
import type { MeshSnapshot } from '../../agent/state/model.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { type ConnectionDescription, ConnectionTelemetry } from '../../agent/telemetry/connections.js';
import { MeshMetrics } from '../../agent/telemetry/metrics.js';
import { parsePrometheusText, samplesOf } from './helpers/prometheus-text.js';

const silent = pino({ level: 'silent' });

function pod(name: string, ip: string, labels = `{ app: ${name} }`): string {
  return `apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: shop, labels: ${labels} }
spec: { nodeName: node-a, containers: [{ name: c, command: [x] }] }
status: { phase: Running, podIP: ${ip} }
`;
}

let version = 0;
function snapshot(...pods: string[]): MeshSnapshot {
  const parsed = parseConfigFile(pods.join('---\n'), 'mesh.yaml');
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error'), []);
  return buildSnapshot(parsed.objects, { version: ++version, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
}

const WEB = pod('web', '10.1.0.1');
const DB = pod('db', '10.1.0.2');
const CACHE = pod('cache', '10.1.0.3');

function outbound(s: MeshSnapshot, from: string, to: string | undefined, dstAddr = '10.1.0.9:80'): ConnectionDescription {
  const dst = to ? s.workloads.get(`shop/${to}`) : undefined;
  return { direction: 'outbound', src: { addr: '10.1.0.1:4000', workload: s.workloads.get(`shop/${from}`)! }, dst: { addr: dstAddr, ...(dst ? { workload: dst } : {}) }, securityPolicy: 'mutual_tls' };
}

function setup() {
  const store = new WorkloadStore();
  store.replace(snapshot(WEB, DB, CACHE));
  const metrics = new MeshMetrics('test');
  const telemetry = new ConnectionTelemetry(metrics, silent, { store });
  /** destination_workload of every series of a metric, sorted. */
  const destinations = async (metric: string): Promise<string[]> =>
    samplesOf(parsePrometheusText(await metrics.registry.metrics()), metric)
      .map((s) => s.labels['destination_workload']!)
      .sort();
  const scrape = async () => parsePrometheusText(await metrics.registry.metrics());
  return { store, telemetry, destinations, scrape };
}

const TCP_METRICS = ['istio_tcp_connections_opened_total', 'istio_tcp_connections_closed_total', 'istio_tcp_sent_bytes_total', 'istio_tcp_received_bytes_total'];

describe('series of deleted workloads', () => {
  it('are removed from every TCP metric when the destination workload leaves the store', async () => {
    const { store, telemetry, destinations } = setup();
    const s = store.current!;
    telemetry.opened(outbound(s, 'web', 'db')).closed({ bytesSent: 1, bytesReceived: 2 });
    telemetry.opened(outbound(s, 'web', 'cache')).closed({ bytesSent: 1, bytesReceived: 2 });
    telemetry.failed(outbound(s, 'web', 'db'), 'CONNECT', 'refused');
    for (const metric of TCP_METRICS) assert.deepEqual(await destinations(metric), ['cache', 'db'], metric);
    assert.deepEqual(await destinations('istio_tcp_connections_failed_total'), ['db']);

    store.replace(snapshot(WEB, CACHE));
    for (const metric of TCP_METRICS) assert.deepEqual(await destinations(metric), ['cache'], metric);
    assert.deepEqual(await destinations('istio_tcp_connections_failed_total'), []);
    telemetry.close();
  });

  it('are removed when the source workload leaves, too', async () => {
    const { store, telemetry, destinations, scrape } = setup();
    telemetry.opened(outbound(store.current!, 'web', 'db')).closed({ bytesSent: 1, bytesReceived: 2 });
    telemetry.opened(outbound(store.current!, 'cache', 'db')).closed({ bytesSent: 1, bytesReceived: 2 });
    store.replace(snapshot(DB, CACHE));
    const left = await scrape();
    assert.deepEqual(samplesOf(left, 'istio_tcp_connections_opened_total').map((s) => s.labels['source_workload']), ['cache']);
    assert.deepEqual(await destinations('istio_tcp_connections_closed_total'), ['db']);
    telemetry.close();
  });

  it('wait for a connection still open, then go when it closes', async () => {
    const { store, telemetry, destinations } = setup();
    const open = telemetry.opened(outbound(store.current!, 'web', 'db'));
    store.replace(snapshot(WEB, CACHE));
    // Removing now would let the close re-create the series with no one left to remove it.
    assert.deepEqual(await destinations('istio_tcp_connections_opened_total'), ['db']);
    open.closed({ bytesSent: 10, bytesReceived: 20 });
    for (const metric of TCP_METRICS) assert.deepEqual(await destinations(metric), [], metric);
    telemetry.close();
  });

  it('are replaced when the workload stays but its canonical revision changes', async () => {
    const { store, telemetry, destinations, scrape } = setup();
    telemetry.opened(outbound(store.current!, 'web', 'db')).closed({ bytesSent: 1, bytesReceived: 2 });
    store.replace(snapshot(WEB, pod('db', '10.1.0.2', '{ app: db, version: v2 }'), CACHE));
    assert.deepEqual(await destinations('istio_tcp_connections_opened_total'), []);
    telemetry.opened(outbound(store.current!, 'web', 'db')).closed({ bytesSent: 1, bytesReceived: 2 });
    const samples = await scrape();
    assert.deepEqual(samplesOf(samples, 'istio_tcp_connections_opened_total').map((s) => s.labels['destination_version']), ['v2']);
    telemetry.close();
  });

  it('stay while their workloads stay, and series that name no workload are never swept', async () => {
    const { store, telemetry, destinations } = setup();
    telemetry.opened(outbound(store.current!, 'web', 'db')).closed({ bytesSent: 1, bytesReceived: 2 });
    store.replace(snapshot(WEB, DB, CACHE)); // a new version, same pods
    assert.deepEqual(await destinations('istio_tcp_connections_opened_total'), ['db']);

    // A passthrough to something outside the mesh, from a source the store no longer has.
    const external: ConnectionDescription = { direction: 'outbound', src: { addr: '10.9.9.9:1' }, dst: { addr: '192.0.2.1:443' }, securityPolicy: 'unknown' };
    telemetry.opened(external).closed({ bytesSent: 1, bytesReceived: 1 });
    store.replace(snapshot(CACHE));
    assert.deepEqual(await destinations('istio_tcp_connections_opened_total'), ['unknown']);
    telemetry.close();
  });

  it('are not swept after close(): the telemetry stops following the store', async () => {
    const { store, telemetry, destinations } = setup();
    telemetry.opened(outbound(store.current!, 'web', 'db')).closed({ bytesSent: 1, bytesReceived: 2 });
    telemetry.close();
    store.replace(snapshot(WEB));
    assert.deepEqual(await destinations('istio_tcp_connections_opened_total'), ['db']);
  });
});

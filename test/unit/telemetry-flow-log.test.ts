// The flow log (`--flow-log`): the agent's connection and request telemetry write one Hubble-shaped
// JSON line per connection (relayed or refused) and per request into a real file, which rotates by
// size keeping the configured number of old files; and the flags that choose it.

import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import fs, { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { parseConfigFile } from '../../agent/config/load.js';
import { buildSnapshot } from '../../agent/state/build.js';
import type { MeshSnapshot, SpiffeId } from '../../agent/state/model.js';
import { type ConnectionDescription, ConnectionTelemetry } from '../../agent/telemetry/connections.js';
import { parseFlowLogFlags } from '../../agent/telemetry/flow-log-flags.js';
import { FlowLog, type FlowRecord } from '../../agent/telemetry/flow-log.js';
import { MeshMetrics } from '../../agent/telemetry/metrics.js';
import { RequestTelemetry } from '../../agent/telemetry/requests.js';

const MESH = `
apiVersion: v1
kind: Pod
metadata: { name: productpage-v1, namespace: bookinfo, labels: { app: productpage } }
spec: { serviceAccountName: bookinfo-productpage, containers: [{ name: c, command: [x] }] }
status: { podIP: 10.1.0.1 }
---
apiVersion: v1
kind: Pod
metadata: { name: reviews-v2, namespace: bookinfo, labels: { app: reviews } }
spec: { serviceAccountName: bookinfo-reviews, containers: [{ name: c, command: [x] }] }
status: { podIP: 10.1.0.2 }
---
apiVersion: v1
kind: Service
metadata: { name: reviews, namespace: bookinfo }
spec: { clusterIP: 10.96.0.21, selector: { app: reviews }, ports: [{ name: http, port: 9080, targetPort: 9080 }] }
`;

function connection(s: MeshSnapshot): ConnectionDescription {
  return {
    direction: 'inbound',
    src: { addr: '10.1.0.1:40000', workload: s.workloads.get('bookinfo/productpage-v1')!, identity: 'spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage' as SpiffeId },
    dst: { addr: '10.1.0.2:9080', workload: s.workloads.get('bookinfo/reviews-v2')!, service: s.services.get('bookinfo/reviews.bookinfo.svc.cluster.local')!, identity: 'spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews' as SpiffeId },
    securityPolicy: 'mutual_tls',
  };
}

function lines(path: string): FlowRecord[] {
  return readFileSync(path, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as FlowRecord);
}

test('one record per connection and per request, in Hubble\'s flow shape, from the telemetry the data path calls', async () => {
  const s = buildSnapshot(parseConfigFile(MESH, 'mesh.yaml').objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
  const dir = mkdtempSync(join(tmpdir(), 'ambit-flow-log-'));
  try {
    const path = join(dir, 'flows.json');
    const writer = new FlowLog({ kind: 'file', path, maxBytes: 1 << 20, keep: 2 });
    const flows = { node: 'node-a', sink: writer };
    const metrics = new MeshMetrics('test');
    const connections = new ConnectionTelemetry(metrics, pino({ level: 'silent' }), { flows });
    const requests = new RequestTelemetry(metrics, pino({ level: 'silent' }), { flows });
    connections.opened(connection(s)).closed({ bytesSent: 120, bytesReceived: 4500 });
    connections.failed(connection(s), 'DENY', 'RBAC: access denied');
    requests.record({ connection: connection(s), protocol: 'http', method: 'GET', path: '/reviews/0', authority: 'reviews:9080', httpVersion: 'HTTP/1.1' }, { responseCode: 403, requestBytes: 0, responseBytes: 19 }, 2.5);
    await writer.close();

    const [relayed, refused, request] = lines(path);
    assert.ok(relayed && refused && request, 'three records');
    assert.equal(relayed.node_name, 'node-a');
    assert.deepEqual(
      { verdict: relayed.flow.verdict, Type: relayed.flow.Type, dir: relayed.flow.traffic_direction, IP: relayed.flow.IP, l4: relayed.flow.l4, bytes: relayed.flow.bytes, mtls: relayed.flow.is_mtls },
      { verdict: 'FORWARDED', Type: 'L3_L4', dir: 'INGRESS', IP: { source: '10.1.0.1', destination: '10.1.0.2', ipVersion: 'IPv4' }, l4: { TCP: { source_port: 40000, destination_port: 9080 } }, bytes: { sent: 120, received: 4500 }, mtls: true },
    );
    assert.deepEqual(relayed.flow.source, { namespace: 'bookinfo', pod_name: 'productpage-v1', workloads: [{ name: 'productpage-v1', kind: 'Pod' }], spiffe_id: 'spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage' });
    assert.deepEqual(relayed.flow.destination_service, { name: 'reviews', namespace: 'bookinfo' });
    assert.deepEqual([refused.flow.verdict, refused.flow.drop_reason_desc, refused.flow.Summary], ['DROPPED', 'POLICY_DENIED', 'DENY: RBAC: access denied']);
    assert.equal(request.flow.Type, 'L7');
    assert.equal(request.flow.verdict, 'DROPPED');
    assert.deepEqual(request.flow.l7, { type: 'RESPONSE', latency_ns: 2_500_000, http: { code: 403, method: 'GET', url: 'http://reviews:9080/reviews/0', protocol: 'HTTP/1.1' } });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the file rotates past its size, keeping path.1 … path.<keep> and nothing older, and loses no line', async () => {
  const s = buildSnapshot(parseConfigFile(MESH, 'mesh.yaml').objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
  const dir = mkdtempSync(join(tmpdir(), 'ambit-flow-log-'));
  try {
    const path = join(dir, 'flows.json');
    const writer = new FlowLog({ kind: 'file', path, maxBytes: 4096, keep: 2 });
    const telemetry = new ConnectionTelemetry(new MeshMetrics('test'), pino({ level: 'silent' }), { flows: { node: 'n', sink: writer } });
    // Bounded: 200 records of ~800 bytes, written at once, cross 4 KiB many times: the first rotation
    // starts at the sixth record and the rest wait for it; close() resolves once every rotation is done.
    for (let i = 0; i < 200; i++) telemetry.opened(connection(s)).closed({ bytesSent: i, bytesReceived: 0 });
    await writer.close();
    for (const file of [path, `${path}.1`, `${path}.2`]) assert.ok(statSync(file).size < 4096 + 1024, `${file} holds about --flow-log-max-size, not a burst's worth`);
    assert.ok(existsSync(`${path}.1`) && existsSync(`${path}.2`), 'two rotated files');
    assert.ok(!existsSync(`${path}.3`), 'nothing beyond --flow-log-files');
    const kept = [...lines(`${path}.2`), ...lines(`${path}.1`), ...lines(path)].map((r) => r.flow.bytes?.sent);
    // The newest records, in order, with no gap: rotation drops only whole old files.
    assert.ok(kept.length > 0);
    assert.deepEqual(kept, Array.from({ length: kept.length }, (_, i) => 200 - kept.length + i));
    assert.equal(writer.dropped, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('records logged within 5 ms of each other share one write to the file, not a thread-pool hop each', async (t) => {
  const s = buildSnapshot(parseConfigFile(MESH, 'mesh.yaml').objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
  const dir = mkdtempSync(join(tmpdir(), 'ambit-flow-log-'));
  try {
    const path = join(dir, 'flows.json');
    // Every write the file's stream makes, and an event when one is done.
    const done = new EventEmitter();
    const write = fs.write;
    const writes = t.mock.method(fs, 'write', (...args: unknown[]) => {
      const callback = args.pop() as (...result: unknown[]) => void;
      return (write as (...a: unknown[]) => void)(...args, (...result: unknown[]) => {
        callback(...result);
        done.emit('written');
      });
    });
    const writevs = t.mock.method(fs, 'writev');
    const writer = new FlowLog({ kind: 'file', path, maxBytes: 1 << 20, keep: 1 });
    const telemetry = new ConnectionTelemetry(new MeshMetrics('test'), pino({ level: 'silent' }), { flows: { node: 'n', sink: writer } });
    // The first record opens the file and is written on its own: the stream is idle afterwards.
    const firstWritten = once(done, 'written');
    telemetry.failed(connection(s), 'CONNECT', 'refused');
    await firstWritten;
    const before = writes.mock.callCount() + writevs.mock.callCount();
    // Three records at once on an idle stream: without the shared window the first went out alone and the others after it.
    for (let i = 0; i < 3; i++) telemetry.failed(connection(s), 'CONNECT', `refused ${i}`);
    await writer.close();
    assert.equal(writes.mock.callCount() + writevs.mock.callCount() - before, 1, 'one write for the three records');
    assert.deepEqual(lines(path).map((r) => r.flow.Summary), ['CONNECT: refused', 'CONNECT: refused 0', 'CONNECT: refused 1', 'CONNECT: refused 2']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--flow-log flags: stdout, a file with its rotation, and the mistakes said', () => {
  assert.deepEqual(parseFlowLogFlags({}), { ok: true });
  assert.deepEqual(parseFlowLogFlags({ 'flow-log': 'stdout' }), { ok: true, flowLog: { kind: 'stdout' } });
  assert.deepEqual(parseFlowLogFlags({ 'flow-log': '/var/log/ambit/flows.json', 'flow-log-max-size': '10', 'flow-log-files': '3' }), { ok: true, flowLog: { kind: 'file', path: '/var/log/ambit/flows.json', maxBytes: 10 * 1024 * 1024, keep: 3 } });
  assert.match(String((parseFlowLogFlags({ 'flow-log-files': '3' }) as { message: string }).message), /need a file/);
  assert.match(String((parseFlowLogFlags({ 'flow-log': 'stdout', 'flow-log-max-size': '3' }) as { message: string }).message), /not rotated/);
  assert.match(String((parseFlowLogFlags({ 'flow-log': 'f', 'flow-log-max-size': '-1' }) as { message: string }).message), /above 0/);
});

// A lab of two clusters on two networks (examples/multicluster): each cluster's pods and nodes reach
// nothing of the other's, the only link between the networks is the segment joining the east-west
// gateways' edges, and bookinfo still works across it: productpage in cluster1 gets reviews-v3 from
// cluster2 through the gateways (double HBONE), the segment carries nothing but TLS to port 15008, and
// reviews' node sees productpage's own identity.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { LabLayout } from '../../agent/lab/layout.js';
import { cgroup2Root } from '../../agent/system/cgroups.js';
import { hostFootprint, labsUp, withoutLabs } from './helpers/host-footprint.js';
import { type CommandResult, ambit, eventually, requireBuiltAmbit, requireRoot } from './helpers/lab-cli.js';
import { PacketCapture } from './helpers/packet-capture.js';

const LAB = `mc${process.pid % 10000}`;
const cgroupRoot = cgroup2Root();
const before_ = { footprint: hostFootprint(cgroupRoot), labs: labsUp() };
const layout = new LabLayout(LAB, cgroupRoot);
const dir = mkdtempSync(join(tmpdir(), 'ambit-lab-multicluster-'));
const example = (file: string): string => fileURLToPath(new URL(`../../examples/multicluster/${file}`, import.meta.url));

/** Addresses of examples/multicluster: cluster1 (network1) and cluster2 (network2). */
const CLUSTER1 = { node: '172.31.81.11', details: '10.244.81.11', gateway: '172.31.200.1' };
const CLUSTER2 = { node: '172.31.82.11', reviews: '10.244.82.10', gateway: '172.31.200.2' };

before(async () => {
  requireRoot();
  requireBuiltAmbit();
  const up = await ambit(['lab', 'up', '--lab', LAB, '--timeout', '150', '--cluster', `cluster1=${example('cluster1.yaml')}`, '--cluster', `cluster2=${example('cluster2.yaml')}`], 240_000);
  assert.equal(up.code, 0, `lab up failed:\n${up.stdout}\n${up.stderr}`);
  assert.match(up.stdout, /is up: 2 clusters on their own networks, 2 nodes, 5 pods/);
});

after(async () => {
  await ambit(['lab', 'down', '--lab', LAB], 120_000);
  rmSync(dir, { recursive: true, force: true });
});

const exec = (target: string, argv: readonly string[], timeoutMs = 20_000): Promise<CommandResult> => ambit(['lab', 'exec', '--lab', LAB, target, '--', ...argv], timeoutMs);
/** A command in the internetwork's namespace, which no `lab exec` target names. */
const inNetns = (netns: string, argv: readonly string[]): CommandResult => {
  try {
    return { code: 0, stdout: execFileSync('ip', ['netns', 'exec', netns, ...argv], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] }), stderr: '' };
  } catch (err) {
    const e = err as { status: number | null; stdout?: string; stderr?: string };
    return { code: e.status, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
};
/** A TCP connect, bounded: exit 0 when accepted, 124 when nothing answered within 3 s. */
const connectArgs = (ip: string, port: number): string[] => ['timeout', '3', 'bash', '--norc', '-c', `exec 3<>/dev/tcp/${ip}/${port}`];
/**
 * An HTTP GET, bounded: exit 0 only when a server answered. A bare connect would not do from an enrolled
 * pod, whose connections the agent accepts before it knows whether it can reach the destination.
 */
const getArgs = (url: string): string[] => ['curl', '-s', '-o', '/dev/null', '--max-time', '3', url];

test("each cluster is a network of its own: nothing in cluster1 reaches cluster2's pods or nodes, nor the other way", async () => {
  // The check can fail: within a cluster a pod's address answers, from a pod and from the cluster's edge.
  assert.equal((await exec('bookinfo/client', getArgs(`http://${CLUSTER1.details}:9080/health`))).code, 0);
  assert.equal((await exec('gateway/cluster2', getArgs(`http://${CLUSTER2.reviews}:9080/health`))).code, 0, "cluster2's edge does not reach cluster2's pods");
  // Pods' health and agents' readiness endpoints, which answer anyone who reaches them.
  for (const [from, url] of [
    ['bookinfo/client', `http://${CLUSTER2.reviews}:9080/health`],
    ['bookinfo/client', `http://${CLUSTER2.node}:15021/healthz/ready`],
    ['node/east-1', `http://${CLUSTER2.reviews}:9080/health`],
    ['node/east-1', `http://${CLUSTER2.node}:15021/healthz/ready`],
    ['bookinfo/reviews-v3', `http://${CLUSTER1.details}:9080/health`],
    ['node/west-1', `http://${CLUSTER1.node}:15021/healthz/ready`],
  ] as const) {
    const r = await exec(from, getArgs(url));
    assert.notEqual(r.code, 0, `${from} reached ${url} across the networks`);
  }
  // Not even cluster1's edge, which is on both its fabric and the segment between networks.
  assert.notEqual((await exec('gateway/cluster1', getArgs(`http://${CLUSTER2.reviews}:9080/health`))).code, 0, "cluster1's edge reached a pod of cluster2");
  // The nodes' routing tables hold nothing of the other cluster but its gateway's address, through their own edge.
  const routes = (await exec('node/east-1', ['ip', '-4', 'route', 'show'])).stdout;
  assert.doesNotMatch(routes, /10\.244\.82\.|172\.31\.82\./, `node east-1 routes to cluster2:\n${routes}`);
  assert.match(routes, /^172\.31\.200\.2 via 169\.254\.101\.1 dev fab0/m);
  // The segment between networks holds the two edges' ports and nothing else.
  const ports = inNetns(layout.internetworkNetns, ['ip', '-j', 'link', 'show', 'master', 'br0']).stdout;
  assert.deepEqual((JSON.parse(ports) as { ifname: string }[]).map((l) => l.ifname).sort(), ['net0', 'net1']);
});

test("an edge forwards only its cluster's connections to the other gateway's HBONE port", async () => {
  // Anything else towards cluster2's gateway is dropped at cluster1's edge (no answer, not even a refusal).
  const other = await exec('node/east-1', connectArgs(CLUSTER2.gateway, 9080));
  assert.equal(other.code, 124, `a connection to ${CLUSTER2.gateway}:9080 was not dropped (exit ${other.code}: ${other.stderr})`);
  // The gateway's port is reachable (accepted by cluster2's gateway).
  await eventually("cluster2's gateway on 15008 from node east-1", async () => ((await exec('node/east-1', connectArgs(CLUSTER2.gateway, 15008))).code === 0 ? true : undefined), 30_000);
});

test('bookinfo across the networks: reviews-v3 in cluster2 answers productpage through the gateways, only TLS to 15008 crosses, and it sees productpage\'s identity', async () => {
  const capture = await PacketCapture.start(layout.internetworkNetns, 'br0', join(dir, 'internetwork.pcap'));
  const marker = `crossing-${process.pid}-${Date.now()}`;
  try {
    for (let i = 0; i < 5; i++) {
      const r = await exec('bookinfo/client', ['curl', '-s', '--max-time', '10', '-H', `x-request-id: ${marker}-${i}`, 'http://productpage:9080/productpage'], 30_000);
      assert.equal(r.code, 0, `curl productpage failed (exit ${r.code}): ${r.stderr}`);
      const page = JSON.parse(r.stdout) as { reviews?: { version?: string; ratings?: { version?: string } }; error?: string };
      assert.equal(page.reviews?.version, 'v3', `reviews did not answer from cluster2: ${r.stdout}`);
      assert.equal(page.reviews?.ratings?.version, 'v1');
    }
    await capture.settled();
  } catch (err) {
    // The requests' failure is the one to report, not the capture's emptiness that follows from it.
    await capture.stop().catch(() => undefined);
    throw err;
  }
  const wire = await capture.stop();
  // Every TCP segment on the segment is between the two gateways' addresses, one end on port 15008.
  const segments = execFileSync('tcpdump', ['-r', capture.pcap, '-nn', '-q'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n').filter((l) => l.includes(' IP '));
  assert.ok(segments.length > 10, `too few segments between the networks to judge: ${segments.length}`);
  const gateways = new Set([CLUSTER1.gateway, CLUSTER2.gateway]);
  for (const line of segments) {
    const m = / IP (\d+\.\d+\.\d+\.\d+)\.(\d+) > (\d+\.\d+\.\d+\.\d+)\.(\d+):/.exec(line);
    assert.ok(m, `not a TCP/IPv4 segment: ${line}`);
    const [, src, sport, dst, dport] = m;
    assert.ok(gateways.has(src!) && gateways.has(dst!), `a segment between networks not between the gateways: ${line}`);
    assert.ok(sport === '15008' || dport === '15008', `a segment between networks not to or from the HBONE port: ${line}`);
  }
  assert.equal(wire.indexOf(marker), -1, "the request's bytes crossed between the networks in the clear");
  // supported_versions in a ServerHello selecting 0x0304: TLS 1.3.
  assert.notEqual(wire.indexOf(Buffer.from([0x00, 0x2b, 0x00, 0x02, 0x03, 0x04])), -1, 'no TLS 1.3 ServerHello between the networks');

  // cluster2's gateway relayed them: it authorized productpage's outer tunnel, asking for the reviews Service.
  // Counted on its metrics port as each tunnel opens, with the client's proven identity and the Service it
  // asked for. (Its access log writes a tunnel when it ends, and productpage's agent keeps its upstream
  // connections for minutes after the requests.)
  const metrics = inNetns(layout.gatewayNetns('cluster2'), ['curl', '-s', '--max-time', '5', 'http://127.0.0.1:15020/metrics']).stdout;
  const relayed = metrics
    .split('\n')
    .filter((l) => l.startsWith('istio_tcp_connections_opened_total{'))
    .filter((l) => l.includes('source_principal="spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage"') && l.includes('destination_service="reviews.bookinfo.svc.cluster.local"'));
  assert.ok(relayed.length > 0 && relayed.every((l) => Number(l.split(' ').at(-1)) >= 1), `cluster2's gateway counted no tunnel from productpage for reviews:\n${metrics.split('\n').filter((l) => l.startsWith('istio_tcp_connections_opened_total')).join('\n')}`);
  // reviews' node saw the connections come from productpage's own identity (the inner tunnel's mTLS), not the gateway's.
  const west = (await ambit(['lab', 'logs', '--lab', LAB, 'node/west-1'])).stdout;
  assert.match(west, /"src\.identity":"spiffe:\/\/cluster\.local\/ns\/bookinfo\/sa\/bookinfo-productpage".*"dst\.workload":"reviews-v3".*"direction":"inbound"/);
  assert.doesNotMatch(west, /"src\.identity":"spiffe:\/\/cluster\.local\/ns\/istio-system\/sa\/istio-eastwestgateway".*"dst\.workload":"reviews-v3"/);
});

test('down removes both clusters, their edges and the internetwork, and leaves the machine as it was', async () => {
  const down = await ambit(['lab', 'down', '--lab', LAB], 120_000);
  assert.equal(down.code, 0, down.stderr);
  // 2 fabrics, 2 nodes, 5 pods, 2 edges and the internetwork.
  assert.match(down.stdout, new RegExp(`lab "${LAB}" is down: removed 12 network namespaces`));
  const others = [...new Set([...before_.labs, ...labsUp()])].filter((lab) => lab !== LAB);
  assert.deepEqual(withoutLabs(hostFootprint(cgroupRoot), others), withoutLabs(before_.footprint, others));
});

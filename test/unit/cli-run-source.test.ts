// `ambit run --source local|kubernetes`: the flags, and a real agent process fed by the fake API server
// over loopback (no capture, so no root): ready once synced, /config_dump follows the API server.

import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { ConfigDump } from '../../agent/admin/config-dump.js';
import { parseRunArgs } from '../../agent/cli/run.js';
import { UsageError } from '../../agent/cli/usage.js';
import { FakeApiServer } from '../../agent/lab/kube-apiserver.js';
import { writeKubeconfig } from './helpers/kube-source.js';

const MAIN = fileURLToPath(new URL('../../agent/cli/main.ts', import.meta.url));
const common = ['--node', 'n1', '--capture', 'none'];

test('--source defaults to local and needs --config; kubernetes takes --kubeconfig; xds needs the pod\'s env and picks istiod\'s CA', () => {
  const cluster = { id: 'Kubernetes' };
  assert.deepEqual(parseRunArgs([...common, '--config', 'mesh/']).config.source, { kind: 'local', paths: ['mesh/'], cluster });
  assert.deepEqual(parseRunArgs([...common, '--source', 'kubernetes']).config.source, { kind: 'kubernetes', cluster });
  assert.deepEqual(parseRunArgs([...common, '--source', 'kubernetes', '--kubeconfig', '/k']).config.source, { kind: 'kubernetes', cluster, kubeconfig: '/k' });
  const refused = (args: string[], message: RegExp, env: NodeJS.ProcessEnv = {}) =>
    assert.throws(() => parseRunArgs(args, env), (err: Error) => err instanceof UsageError && message.test(err.message));
  refused([...common], /no configuration given; pass --config .*, --source kubernetes or --source xds/);
  refused([...common, '--source', 'grpc'], /--source "grpc": expected local, kubernetes or xds/);
  refused([...common, '--source', 'kubernetes', 'mesh/'], /--source kubernetes does not read files; drop mesh\//);
  refused([...common, '--config', 'mesh/', '--kubeconfig', '/k'], /--kubeconfig is for --source kubernetes/);
  refused([...common, '--source', 'xds'], /--source xds needs INSTANCE_IP/);
  refused([...common, '--source', 'xds', '--ca-dir', '/ca'], /--ca-dir is the embedded CA's/, { INSTANCE_IP: '10.0.0.9' });
  assert.equal(parseRunArgs(['--source', 'kubernetes', '--capture', 'none'], { NODE_NAME: 'from-env' }).config.node, 'from-env');

  const env = { INSTANCE_IP: '10.1.2.3', POD_NAME: 'ambit-x', POD_NAMESPACE: 'istio-system', ISTIO_META_CLUSTER_ID: 'east' };
  const xds = parseRunArgs([...common, '--source', 'xds', '--istiod-address', 'istiod.example:15012'], env).config;
  assert.equal(xds.source.kind, 'xds');
  if (xds.source.kind !== 'xds') return;
  assert.deepEqual(xds.source.istiod, { address: 'istiod.example:15012', rootCertFile: '/var/run/secrets/istio/root-cert.pem', tokenFile: '/var/run/secrets/tokens/istio-token', clusterId: 'east' });
  assert.equal(xds.source.node.ip, '10.1.2.3');
  assert.equal(xds.source.node.nodeName, 'n1');
  assert.equal(xds.source.node.metadata?.['CLUSTER_ID'], 'east');
  assert.equal(xds.clusterId, 'east');
  assert.deepEqual(xds.identity.istiodCa, xds.source.istiod, 'with --source xds, istiod signs by default');
  assert.equal(parseRunArgs([...common, '--source', 'xds', '--ca', 'embedded'], env).config.identity.istiodCa, undefined);
  assert.equal(parseRunArgs([...common, '--config', 'mesh/']).config.identity.istiodCa, undefined, 'local mode keeps the embedded CA');
  assert.deepEqual(parseRunArgs([...common, '--config', 'mesh/', '--ca', 'istiod']).config.identity.istiodCa?.address, 'istiod.istio-system.svc:15012');
});

test('--network and --remote-config: the own cluster\'s network, and other clusters\' YAML sets by cluster ID (local mode)', () => {
  const args = [...common, '--cluster-id', 'c1', '--network', 'n1', '--config', 'c1/', '--remote-config', 'c2=c2/', '--remote-config', 'c3=c3a.yaml', '--remote-config', 'c3=c3b/'];
  assert.deepEqual(parseRunArgs(args).config.source, {
    kind: 'local',
    paths: ['c1/'],
    cluster: { id: 'c1', network: 'n1' },
    remotes: [
      { cluster: 'c2', paths: ['c2/'] },
      { cluster: 'c3', paths: ['c3a.yaml', 'c3b/'] },
    ],
  });
  assert.deepEqual(parseRunArgs([...common, '--source', 'kubernetes', '--network', 'west']).config.source, { kind: 'kubernetes', cluster: { id: 'Kubernetes', network: 'west' } });
  const refused = (args: string[], message: RegExp) => assert.throws(() => parseRunArgs(args, {}), (err: Error) => err instanceof UsageError && message.test(err.message));
  refused([...common, '--config', 'c1/', '--remote-config', 'c2'], /--remote-config "c2": expected <cluster id>=<file\|dir>/);
  refused([...common, '--cluster-id', 'c1', '--config', 'c1/', '--remote-config', 'c1=x/'], /c1 is this agent's own cluster \(--cluster-id\); its files go in --config/);
  refused([...common, '--source', 'kubernetes', '--remote-config', 'c2=x/'], /--remote-config is for local mode; in kubernetes mode remote clusters come from Istio's remote secrets/);
  refused([...common, '--source', 'xds', '--network', 'n1'], /--network is for local and kubernetes modes/);
});

test('--socks5 is opt-in and needs eBPF capture, which knows the pods\' cgroups', () => {
  const ebpf = ['--node', 'n1', '--config', 'mesh/', '--pod-cgroup', 'kubepods', '--cgroup-root', '/sys/fs/cgroup'];
  const socks5 = (args: string[]): boolean | undefined => {
    const capture = parseRunArgs(args, {}).config.capture;
    return capture.mode === 'ebpf' ? capture.socks5 : undefined;
  };
  assert.equal(socks5(ebpf), undefined);
  assert.equal(socks5([...ebpf, '--socks5']), true);
  assert.throws(() => parseRunArgs([...common, '--config', 'mesh/', '--socks5'], {}), (err: Error) => err instanceof UsageError && /--socks5 .* needs --capture ebpf/.test(err.message));
});

test('--tcp-idle-timeout: Envoy\'s 1 h unless given, 0 turns it off, and what the splice thread cannot count is refused', () => {
  const idle = (...flag: string[]): number => parseRunArgs([...common, '--config', 'mesh/', ...flag], {}).relayIdleTimeoutMs;
  assert.equal(idle(), 3_600_000);
  assert.equal(idle('--tcp-idle-timeout', '90s'), 90_000);
  assert.equal(idle('--tcp-idle-timeout', '0'), 0);
  const refused = (value: string, message: RegExp) =>
    assert.throws(() => idle('--tcp-idle-timeout', value), (err: Error) => err instanceof UsageError && message.test(err.message));
  refused('soon', /--tcp-idle-timeout "soon": expected a positive duration/);
  refused('1200h', /--tcp-idle-timeout 1200h: at most 4294967295 ms/);
});

test('ambit run --source kubernetes: ready after the first sync, follows changes, keeps serving while the API server is down', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-run-kube-'));
  const server = new FakeApiServer();
  await server.start();
  server.apply({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' }, status: { addresses: [{ type: 'InternalIP', address: '172.31.79.1' }] } });
  server.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' } } });
  const pod = (name: string, ip: string) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'shop', labels: { app: 'web' } },
    spec: { nodeName: 'n1', containers: [{ name: 'c', ports: [{ containerPort: 8080 }] }] },
    status: { phase: 'Running', podIP: ip },
  });
  server.apply(pod('a', '10.246.0.1'));
  const kubeconfig = await writeKubeconfig(dir, server.url);
  const args = ['--import', 'tsx', MAIN, 'run', '--source', 'kubernetes', '--kubeconfig', kubeconfig, ...common, '--state-dir', join(dir, 'state')];
  const agent: ChildProcessWithoutNullStreams = spawn(process.execPath, [...args, '--readiness-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0', '--metrics-address', '127.0.0.1:0']);
  let logs = '';
  const ports: Record<string, number> = {};
  agent.stdout.on('data', (d: Buffer) => {
    logs += d.toString();
    for (const m of d.toString().matchAll(/"msg":"(readiness|admin) server listening on 127\.0\.0\.1:(\d+)"/g)) ports[m[1]!] = Number(m[2]);
  });
  agent.stderr.on('data', (d: Buffer) => (logs += d.toString()));
  const until = async <T>(what: string, check: () => Promise<T | undefined>, ms = 20_000): Promise<T> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const value = await check().catch(() => undefined);
      if (value !== undefined) return value;
      if (Date.now() > deadline || agent.exitCode !== null) assert.fail(`waiting for ${what}; agent log:\n${logs}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const workloads = async () => {
    const res = await fetch(`http://127.0.0.1:${ports['admin']}/config_dump`);
    return ((await res.json()) as ConfigDump).workloads.map((w) => `${w.name}:${w.workloadIps.join(',')}`).sort();
  };
  try {
    // Generous: tsx compiles the whole agent on start, which takes seconds on a busy machine.
    await until('ready', async () => (ports['readiness'] && (await fetch(`http://127.0.0.1:${ports['readiness']}/healthz/ready`)).status === 200 ? true : undefined), 120_000);
    assert.deepEqual(await workloads(), ['a:10.246.0.1']);
    server.apply(pod('b', '10.246.0.2'));
    await until('pod b', async () => ((await workloads()).length === 2 ? true : undefined));
    await server.stop();
    await until('the outage logged', async () => (/Kubernetes API server: .*serving configuration version/.test(logs) ? true : undefined));
    assert.deepEqual(await workloads(), ['a:10.246.0.1', 'b:10.246.0.2'], 'the last good state still served');
    assert.equal((await fetch(`http://127.0.0.1:${ports['readiness']}/healthz/ready`)).status, 200, 'still ready: the data path works from the last good state');
    server.delete('Pod', 'shop', 'a');
    await server.start();
    await until('pod a gone after recovery', async () => ((await workloads()).join() === 'b:10.246.0.2' ? true : undefined));
  } finally {
    agent.kill('SIGTERM');
    await new Promise((r) => agent.once('exit', r));
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

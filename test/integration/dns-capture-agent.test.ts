// `ambit run --dns-capture` on the real kernel, in a node netns with two pods: the agent attaches the DNS
// programs to the pod that keeps Istio's default and not to the one annotated
// ambient.istio.io/dns-capture: "false". The captured pod's own resolver (getent) gets a ServiceEntry
// host's automatic VIP although its resolv.conf names a server that does not exist, curl to that host
// reaches the entry's endpoint on another node, and an unknown name comes from --dns-upstream.

import assert from 'node:assert/strict';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DNS_CGROUP_PROGRAMS } from '../../agent/redirect/bpf-binding.js';
import { inPod, removePodResolvConf, startUpstreamDns, UPSTREAM_ANSWER, writePodResolvConf } from './helpers/dns-fixture.js';
import { EXT_IP, NODE_IP, POD1_IP, POD2_IP, Topology } from './helpers/netns-fixture.js';
import { waitForLog } from './helpers/log-wait.js';

const topo = new Topology('dnsa');
const SE_HOST = 'api.payments.example';
const workDir = join(tmpdir(), topo.prefix);
const children: ChildProcessWithoutNullStreams[] = [];
let logs = '';

const pod = (name: string, ip: string, annotations = '{}'): string => `---
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: shop, annotations: ${annotations}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: ${ip}}
`;
const OPT_OUT = '{ambient.istio.io/dns-capture: "false"}';
const POD1 = pod('pod1', POD1_IP);
const yaml = (pod1: string): string => `apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: ${NODE_IP}}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
${pod1}${pod('pod2', POD2_IP, OPT_OUT)}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments, namespace: shop}
spec:
  hosts: [${SE_HOST}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: tcp, protocol: TCP}]
  endpoints: [{address: ${EXT_IP}}]
`;

/** Waits until the agent's log so far passes `check`. */
const waitFor = (what: string, check: () => boolean, timeoutMs: number): Promise<void> => waitForLog(what, check, () => logs, timeoutMs);

before(async () => {
  await topo.build();
  writePodResolvConf([topo.pod1, topo.pod2]);
  mkdirSync(join(workDir, 'config'), { recursive: true });
  writeFileSync(join(workDir, 'config', 'mesh.yaml'), yaml(POD1));
  children.push(await startUpstreamDns(topo.ext, EXT_IP));
  await topo.startServer(topo.ext, 'ext', EXT_IP, 8080);
  const agent = topo.runAgent(join(workDir, 'config'), join(workDir, 'state'), ['--dns-capture', '--dns-upstream', EXT_IP]);
  agent.stdout.on('data', (d: Buffer) => (logs += d.toString()));
  agent.stderr.on('data', (d: Buffer) => (logs += d.toString()));
  await waitFor('the agent to be ready', () => logs.includes('agent ready'), 60_000);
});

after(async () => {
  for (const child of children) child.kill('SIGKILL');
  await removePodResolvConf([topo.pod1, topo.pod2]);
  await topo.teardown();
  rmSync(workDir, { recursive: true, force: true });
});

test("a captured pod's getent answers the ServiceEntry host's automatic VIP, and curl to the host reaches its endpoint", async () => {
  const r = await inPod(topo.pod1, topo.cgroup('pod1'), ['getent', 'ahostsv4', SE_HOST]);
  assert.equal(r.code, 0, `getent failed: ${r.stderr}\n${logs.slice(-2000)}`);
  assert.match(r.stdout, /^240\.240\.\d+\.\d+\s/);
  const curl = await inPod(topo.pod1, topo.cgroup('pod1'), ['curl', '-sS', '--http0.9', '--max-time', '5', `http://${SE_HOST}:8080/`]);
  assert.equal(curl.code, 0, `curl failed: ${curl.stderr}`);
  assert.match(curl.stdout, /^ext peer=/, 'the entry\'s endpoint on the other node answered');
});

test('a name the mesh does not know comes from the upstream', async () => {
  const r = await inPod(topo.pod1, topo.cgroup('pod1'), ['getent', 'ahostsv4', 'www.not-in-mesh.example']);
  assert.equal(r.code, 0, `getent failed: ${r.stderr}`);
  assert.match(r.stdout, new RegExp(`^${UPSTREAM_ANSWER.replaceAll('.', '\\.')}\\s`));
});

test('the pod annotated ambient.istio.io/dns-capture: "false" is not captured: its resolver asks its own (absent) server', async () => {
  const r = await inPod(topo.pod2, topo.cgroup('pod2'), ['getent', 'ahostsv4', SE_HOST]);
  assert.notEqual(r.code, 0, 'the opted-out pod resolved a name only the proxy knows');
});

/** Polls a pod's getent until it succeeds (true) or fails (false) as wanted, for at most 15 s. */
async function resolvesEventually(ns: string, cgroup: string, want: boolean): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const r = await inPod(ns, cgroup, ['getent', 'ahostsv4', SE_HOST]);
    if ((r.code === 0) === want) return;
    if (Date.now() > deadline) assert.fail(`pod1 ${want ? 'still does not resolve' : 'still resolves'} ${SE_HOST}; agent log:\n${logs.slice(-2000)}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

test('the annotation followed live: opting out releases the pod\'s DNS, removing it captures it again', async () => {
  const file = join(workDir, 'config', 'mesh.yaml');
  writeFileSync(file, yaml(pod('pod1', POD1_IP, OPT_OUT)));
  await resolvesEventually(topo.pod1, topo.cgroup('pod1'), false);
  writeFileSync(file, yaml(POD1));
  await resolvesEventually(topo.pod1, topo.cgroup('pod1'), true);
});

test("the watchdog attaches a captured pod's DNS programs again when their pins are deleted", async () => {
  const pins = DNS_CGROUP_PROGRAMS.map((p) => join(topo.pinDir, 'links', 'pods', 'shop_pod1', p));
  for (const pin of pins) assert.ok(existsSync(pin), `${pin} is pinned`);
  for (const pin of pins) unlinkSync(pin);
  const deadline = Date.now() + 5_000;
  while (!pins.every((pin) => existsSync(pin))) {
    if (Date.now() > deadline) assert.fail(`the DNS links were not attached again; agent log:\n${logs.slice(-2000)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const r = await inPod(topo.pod1, topo.cgroup('pod1'), ['getent', 'ahostsv4', SE_HOST]);
  assert.equal(r.code, 0, 'the pod resolves through the proxy again');
});

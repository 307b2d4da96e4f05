// DNS capture on the real kernel: a captured pod's own resolver (glibc's getent, over UDP and over TCP,
// and a Python socket with sendto) reaches the agent's DNS proxy at the node's address although the
// pod's resolv.conf names another server; a ServiceEntry host answers its automatic VIP, an unknown
// name the upstream's address, and replies appear to come from the server the pod asked. A pod
// without the DNS programs (opted out) never reaches the proxy.

import assert from 'node:assert/strict';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { after, before, test } from 'node:test';
import {
  BpfObject,
  bpfObjectPath,
  detachLink,
  DNS_CGROUP_PROGRAMS,
  openAmbitMaps,
  POD_CGROUP_PROGRAMS,
  writeConfig,
  type DnsProgram,
  type OutboundProgram,
  type Result,
} from '../../agent/redirect/bpf-binding.js';
import { firstLine, inPod, POD_NAMESERVER, removePodResolvConf, startUpstreamDns, UPSTREAM_ANSWER, writePodResolvConf } from './helpers/dns-fixture.js';
import { EXT_IP, NODE_IP, POD1_IP, POD2_IP, type run, Topology } from './helpers/netns-fixture.js';

const topo = new Topology('dns');
const SE_HOST = 'api.payments.example';
let outbound: BpfObject<OutboundProgram>;
let dns: BpfObject<DnsProgram>;
const children: ChildProcessWithoutNullStreams[] = [];
let proxyLines: Interface;
let proxyIn: ChildProcessWithoutNullStreams['stdin'];
const workDir = join(tmpdir(), `${topo.prefix}`);

const YAML = `---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop}
spec: {nodeName: a, containers: [{name: c}]}
status: {podIP: ${POD1_IP}}
---
apiVersion: v1
kind: Pod
metadata: {name: quiet, namespace: shop, annotations: {ambient.istio.io/dns-capture: "false"}}
spec: {nodeName: a, containers: [{name: c}]}
status: {podIP: ${POD2_IP}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments, namespace: shop}
spec:
  hosts: [${SE_HOST}]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 192.0.2.10}]
`;

/**
 * A resolver asking for argv[1] from server argv[2], reporting who answered: `sendto4` on an unconnected
 * AF_INET socket, `sendto6` and `connect6` on an AF_INET6 socket with the server as ::ffff:a.b.c.d (as a
 * dual-stack runtime asks an IPv4 server).
 */
const ASK = `
import json, socket, struct, sys
name, server, mode = sys.argv[1], sys.argv[2], sys.argv[3]
v6 = mode != 'sendto4'
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
addr = ('::ffff:' + server if v6 else server, 53)
query = struct.pack('>HHHHHH', 0x4242, 0x0100, 1, 0, 0, 0) + b''.join(bytes([len(p)]) + p.encode() for p in name.split('.')) + b'\\0' + struct.pack('>HH', 1, 1)
if mode == 'connect6':
    s.connect(addr); s.send(query)
else:
    s.sendto(query, addr)
try:
    reply, peer = s.recvfrom(512)
except OSError as e:
    print(json.dumps({'error': type(e).__name__})); sys.exit(0)
print(json.dumps({'from': [peer[0], peer[1]], 'ip': socket.inet_ntoa(reply[-4:])}))
`;

function ok<T>(r: Result<T>): T {
  if (!r.ok) assert.fail(r.error.message);
  return r.value;
}

const getent = (ns: string, cgroup: string, name: string, env: Record<string, string> = {}): ReturnType<typeof run> =>
  inPod(ns, cgroup, ['getent', 'ahostsv4', name], env);

async function proxyCounts(): Promise<Record<string, number>> {
  const line = new Promise<string>((resolve) => proxyLines.once('line', resolve));
  proxyIn.write('counts\n');
  return JSON.parse(await line) as Record<string, number>;
}

const dnsPin = (pod: string, program: string): string => join(topo.pinDir, `link_${pod}_${program}`);

before(async () => {
  await topo.build();
  outbound = ok(BpfObject.load<OutboundProgram>(ok(bpfObjectPath('outbound_cgroup')), topo.pinDir));
  dns = ok(BpfObject.load<DnsProgram>(ok(bpfObjectPath('dns_cgroup')), topo.pinDir));
  ok(writeConfig(ok(openAmbitMaps(topo.pinDir)), { proxyIp: NODE_IP, outboundPort: 15001, inboundPort: 15006, hbonePort: 15008 }));
  // pod1 is captured as the agent captures it (DNS programs first); pod2 is enrolled but opted out.
  for (const program of DNS_CGROUP_PROGRAMS) ok(dns.attachCgroup(program, topo.cgroup('pod1'), dnsPin('pod1', program)));
  for (const pod of ['pod1', 'pod2'] as const) {
    for (const program of POD_CGROUP_PROGRAMS) ok(outbound.attachCgroup(program, topo.cgroup(pod), join(topo.pinDir, `link_${pod}_${program}`)));
  }
  writePodResolvConf([topo.pod1, topo.pod2]);
  mkdirSync(workDir, { recursive: true });
  writeFileSync(join(workDir, 'mesh.yaml'), YAML);
  children.push(await startUpstreamDns(topo.ext, EXT_IP));
  const script = new URL('./helpers/dns-agent.ts', import.meta.url).pathname;
  const proxy = topo.spawnAsAgent(script, [join(workDir, 'mesh.yaml'), NODE_IP, EXT_IP]);
  proxyIn = proxy.stdin;
  assert.match(await firstLine(proxy, 'the DNS proxy'), /"ready":true/);
  proxyLines = createInterface({ input: proxy.stdout });
});

after(async () => {
  for (const child of children) child.kill('SIGKILL');
  outbound?.close();
  dns?.close();
  await removePodResolvConf([topo.pod1, topo.pod2]);
  rmSync(workDir, { recursive: true, force: true });
  await topo.teardown();
});

test("a captured pod's resolver gets the ServiceEntry host's automatic VIP from the proxy, over UDP and TCP", async () => {
  const start = await proxyCounts();
  const udp = await getent(topo.pod1, topo.cgroup('pod1'), SE_HOST);
  assert.equal(udp.code, 0, `getent over UDP failed: ${udp.stderr}`);
  assert.match(udp.stdout, /^240\.240\.\d+\.\d+\s/, 'the automatic VIP (240.240.0.0/16)');
  // RES_OPTIONS=use-vc makes glibc ask over TCP.
  const tcp = await getent(topo.pod1, topo.cgroup('pod1'), SE_HOST, { RES_OPTIONS: 'use-vc' });
  assert.equal(tcp.code, 0, `getent over TCP failed: ${tcp.stderr}`);
  assert.equal(tcp.stdout.split(/\s/)[0], udp.stdout.split(/\s/)[0]);
  assert.ok((await proxyCounts()).answered! >= start.answered! + 2, 'the proxy answered both');
});

test('a name the mesh does not know is forwarded to the upstream and its answer returned', async () => {
  const start = await proxyCounts();
  const r = await getent(topo.pod1, topo.cgroup('pod1'), 'www.not-in-mesh.example');
  assert.equal(r.code, 0, `getent failed: ${r.stderr}`);
  assert.match(r.stdout, new RegExp(`^${UPSTREAM_ANSWER.replaceAll('.', '\\.')}\\s`));
  assert.ok((await proxyCounts()).forwarded! > start.forwarded!);
});

test('an unconnected sendto() is captured too, and the reply comes from the server the pod asked', async () => {
  const r = await inPod(topo.pod1, topo.cgroup('pod1'), ['/usr/bin/python3', '-c', ASK, SE_HOST, POD_NAMESERVER, 'sendto4']);
  const out = JSON.parse(r.stdout) as { from?: [string, number]; ip?: string; error?: string };
  assert.equal(out.error, undefined);
  assert.deepEqual(out.from, [POD_NAMESERVER, 53], 'recvmsg4 restores the source address');
  assert.match(out.ip ?? '', /^240\.240\./);
});

test('an AF_INET6 socket asking the server as ::ffff:a.b.c.d is captured too (sendmsg6, connect6), and sees the server it asked reply (recvmsg6)', async () => {
  for (const mode of ['sendto6', 'connect6']) {
    const r = await inPod(topo.pod1, topo.cgroup('pod1'), ['/usr/bin/python3', '-c', ASK, SE_HOST, POD_NAMESERVER, mode]);
    const out = JSON.parse(r.stdout) as { from?: [string, number]; ip?: string; error?: string };
    assert.equal(out.error, undefined, `${mode}: no reply (the proxy is the only server there is)`);
    assert.deepEqual(out.from, [`::ffff:${POD_NAMESERVER}`, 53], mode);
    assert.match(out.ip ?? '', /^240\.240\./, mode);
  }
});

test("without recvmsg4 a reply's source is the proxy's, not the server the pod asked", async () => {
  const pin = dnsPin('pod1', 'ambit_dns_recvmsg4');
  assert.equal(ok(detachLink(pin)), true);
  try {
    const r = await inPod(topo.pod1, topo.cgroup('pod1'), ['/usr/bin/python3', '-c', ASK, SE_HOST, POD_NAMESERVER, 'sendto4']);
    const out = JSON.parse(r.stdout) as { from?: [string, number] };
    assert.deepEqual(out.from, [NODE_IP, 15053], 'a resolver that checks the source (dig, musl) would drop this reply');
  } finally {
    ok(dns.attachCgroup('ambit_dns_recvmsg4', topo.cgroup('pod1'), pin));
  }
});

test("an opted-out pod's query does not reach the proxy", async () => {
  const start = await proxyCounts();
  const r = await getent(topo.pod2, topo.cgroup('pod2'), SE_HOST);
  assert.notEqual(r.code, 0, 'the opted-out pod resolved a name only the proxy knows');
  const end = await proxyCounts();
  assert.deepEqual(end, start, 'the proxy saw nothing from the opted-out pod');
});

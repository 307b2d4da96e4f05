// ServiceEntry resolution DNS through `ambit run` on the real kernel: a captured pod curls a ServiceEntry
// host whose only endpoint is a host name that only the DNS server written here knows; the agent (its DNS
// proxy answering the host's automatic VIP, its outbound listener resolving the endpoint's name at
// --dns-upstream) carries the connection to the address the name resolves to. A name that does not
// resolve fails the connection, logged with DNS_RESOLUTION_FAILED.

import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { firstLine, inPod, removePodResolvConf, writePodResolvConf } from './helpers/dns-fixture.js';
import { EXT_IP, NODE_IP, POD1_IP, Topology } from './helpers/netns-fixture.js';
import { waitForLog } from './helpers/log-wait.js';

const topo = new Topology('sedns');
const workDir = join(tmpdir(), topo.prefix);
const children: ChildProcessWithoutNullStreams[] = [];
let logs = '';
let asked = '';

/** Knows one name (A, TTL 30); NXDOMAIN for every other; prints each question with who asked. */
const DNS_SERVER = `
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
print('ready', flush=True)
while True:
    q, peer = s.recvfrom(512)
    end, labels = 12, []
    while q[end] != 0:
        labels.append(q[end + 1:end + 1 + q[end]].decode())
        end += 1 + q[end]
    name, qtype = '.'.join(labels).lower(), struct.unpack('>H', q[end + 1:end + 3])[0]
    print('asked', name, qtype, peer[0], flush=True)
    head = q[:2] + struct.pack('>H', 0x8180 | (q[2] & 1) << 8 | (0 if name == sys.argv[2] else 3))
    question = q[12:end + 5]
    if name == sys.argv[2] and qtype == 1:
        answer = b'\\xc0\\x0c' + struct.pack('>HHIH', 1, 1, 30, 4) + socket.inet_aton(sys.argv[3])
        s.sendto(head + struct.pack('>HHHH', 1, 1, 0, 0) + question + answer, peer)
    else:
        s.sendto(head + struct.pack('>HHHH', 1, 0, 0, 0) + question, peer)
`;

const entry = (name: string, host: string, endpoint: string): string => `---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${name}, namespace: shop}
spec:
  hosts: [${host}]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 8080, name: tcp, protocol: TCP}]
  endpoints: [{address: ${endpoint}}]
`;

const YAML = `apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: ${NODE_IP}}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: pod1, namespace: shop}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: ${POD1_IP}}
${entry('payments', 'api.payments.example', 'backend.nowhere.test')}${entry('gone', 'gone.payments.example', 'missing.nowhere.test')}`;

/** Waits until the agent's log so far passes `check`. */
const waitFor = (what: string, check: () => boolean, timeoutMs: number): Promise<void> => waitForLog(what, check, () => logs, timeoutMs);

before(async () => {
  await topo.build();
  writePodResolvConf([topo.pod1]);
  mkdirSync(join(workDir, 'config'), { recursive: true });
  writeFileSync(join(workDir, 'config', 'mesh.yaml'), YAML);
  const dns = spawn('ip', ['netns', 'exec', topo.ext, '/usr/bin/python3', '-c', DNS_SERVER, EXT_IP, 'backend.nowhere.test', EXT_IP]);
  children.push(dns);
  await firstLine(dns, 'the test DNS server');
  dns.stdout.on('data', (d: Buffer) => (asked += d.toString()));
  await topo.startServer(topo.ext, 'ext', EXT_IP, 8080);
  const agent = topo.runAgent(join(workDir, 'config'), join(workDir, 'state'), ['--dns-upstream', EXT_IP]);
  agent.stdout.on('data', (d: Buffer) => (logs += d.toString()));
  agent.stderr.on('data', (d: Buffer) => (logs += d.toString()));
  await waitFor('the agent to be ready', () => logs.includes('agent ready'), 60_000);
});

after(async () => {
  for (const child of children) child.kill('SIGKILL');
  await removePodResolvConf([topo.pod1]);
  await topo.teardown();
  rmSync(workDir, { recursive: true, force: true });
});

test('curl to a ServiceEntry host reaches the address its endpoint\'s name resolves to at the agent\'s upstream', async () => {
  const curl = await inPod(topo.pod1, topo.cgroup('pod1'), ['curl', '-sS', '--http0.9', '--max-time', '5', 'http://api.payments.example:8080/']);
  assert.equal(curl.code, 0, `curl failed: ${curl.stderr}\n${logs.slice(-2000)}`);
  assert.match(curl.stdout, /^ext peer=/, 'the server at the resolved address answered');
  // The endpoint's name was asked by the agent (from the node), not by the pod, which asked the host's name of the mesh.
  assert.match(asked, new RegExp(`^asked backend\\.nowhere\\.test 1 ${NODE_IP.replaceAll('.', '\\.')}$`, 'm'));
});

test('an endpoint name that does not resolve fails the connection, logged with DNS_RESOLUTION_FAILED', async () => {
  const curl = await inPod(topo.pod1, topo.cgroup('pod1'), ['curl', '-sS', '--http0.9', '--max-time', '5', 'http://gone.payments.example:8080/']);
  assert.notEqual(curl.code, 0, 'the connection was carried somewhere');
  await waitFor('the failure in the access log', () => /"response_flags":"DNS_RESOLUTION_FAILED"/.test(logs), 5_000);
  assert.match(logs, /endpoint missing\.nowhere\.test of gone\.payments\.example does not resolve: missing\.nowhere\.test does not exist \(NXDOMAIN/);
});

// DNS in the lab with each pod's own resolver, as in a cluster: resolv.conf names the lab's cluster DNS
// (its kube-dns) with Kubernetes' search list and ndots:5, and the agents capture enrolled pods' DNS by
// default (Istio ambient since 1.25). getent (glibc) and dig (bind9-dnsutils) run in the pods. A captured
// pod gets Service names from the mesh (TTL 30, the proxy's; the cluster DNS answers with 5), a
// ServiceEntry host no DNS server knows from the mesh (its automatic VIP) and reaches it through the
// mesh with curl; a name the mesh does not know is forwarded to the cluster DNS, which logs the node's
// agent as the asker; UDP and TCP alike; a reply read with recvfrom comes from the server the pod asked. A pod
// annotated ambient.istio.io/dns-capture: "false" asks the cluster DNS itself and cannot resolve the host.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { LAB_CLUSTER_DNS, clusterDnsLog } from '../../agent/lab/cluster-dns.js';
import { LabLayout } from '../../agent/lab/layout.js';
import { cgroup2Root } from '../../agent/system/cgroups.js';
import { eventually } from './helpers/lab-cli.js';
import { LabSession, twoNodesYaml } from './helpers/lab-session.js';

const LAB = `tdn${process.pid % 1000}`;
const session = LabSession.inTempDir(LAB, 'ambit-dns-lab-test-');
const clusterDnsLogFile = clusterDnsLog(new LabLayout(LAB, cgroup2Root()), undefined);
/** twoNodesYaml(69, …): alpha's InternalIP, from which its agent forwards what the mesh does not answer. */
const ALPHA_IP = '172.31.69.11';
const CLIENT_IP = '10.229.1.20';
const QUIET_IP = '10.229.1.21';
const WEB_VIP = '10.112.0.10';
const DB_IP = '10.229.2.11';
/** db-0's pod record, which the cluster DNS answers and the mesh does not (ztunnel forwards such names too). */
const DB_POD_NAME = '10-229-2-11.shop.pod.cluster.local';
const SE_HOST = 'api.payments.example';

// Says which pod answered and whom it saw connecting.
const SERVER = `require('http').createServer((q, s) => s.end(process.env.POD_NAME + ' ' + q.socket.remoteAddress.replace('::ffff:', '') + '\\n')).listen(8080)`;

function meshYaml(): string {
  const pod = (name: string, ns: string, ip: string, node: string, labels: string, command: string[], extra = '', annotations = ''): string => `---
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: ${ns}, labels: { ${labels} }${annotations} }
spec:
  nodeName: ${node}
  containers:
    - name: main
      command: ${JSON.stringify(command)}
      env: [{ name: POD_NAME, valueFrom: { fieldRef: { fieldPath: metadata.name } } }]${extra}
status: { podIP: ${ip} }
`;
  const ready = '\n      readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1 }';
  return `${twoNodesYaml(69, 229)}
---
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Namespace
metadata: { name: outside }
${pod('client', 'shop', CLIENT_IP, 'alpha', 'app: client', ['sleep', 'infinity'])}${pod('quiet', 'shop', QUIET_IP, 'alpha', 'app: quiet', ['sleep', 'infinity'], '', ', annotations: { ambient.istio.io/dns-capture: "false" }')}${pod('web', 'shop', '10.229.2.10', 'beta', 'app: web', ['node', '-e', SERVER], ready)}${pod('db-0', 'shop', DB_IP, 'beta', 'app: db', ['sleep', 'infinity'])}${pod('api', 'outside', '10.229.2.30', 'beta', 'app: api', ['node', '-e', SERVER], ready)}---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { clusterIP: ${WEB_VIP}, selector: { app: web }, ports: [{ name: http, port: 80, targetPort: 8080 }] }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: payments, namespace: shop }
spec:
  hosts: [${SE_HOST}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP }]
  endpoints: [{ address: 10.229.2.30, ports: { http: 8080 } }]
`;
}

/**
 * An A query for argv[1] sent with sendto() on an unconnected socket to server argv[2]: AF_INET, or with
 * argv[3] "6" AF_INET6 asking ::ffff:<server>, as a dual-stack runtime does. Prints who replied (recvfrom)
 * and the first address.
 */
const RECVFROM = `
import json, socket, struct, sys
v6 = sys.argv[3] == '6'
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
name = b''.join(bytes([len(p)]) + p.encode() for p in sys.argv[1].split('.')) + b'\\0'
s.sendto(struct.pack('>HHHHHH', 0x4242, 0x0100, 1, 0, 0, 0) + name + struct.pack('>HH', 1, 1), (('::ffff:' if v6 else '') + sys.argv[2], 53))
try:
    reply, peer = s.recvfrom(512)
except OSError as e:
    print(json.dumps({'error': type(e).__name__})); sys.exit(0)
print(json.dumps({'from': [peer[0], peer[1]], 'address': socket.inet_ntoa(reply[-4:])}))
`;

interface Dig {
  readonly status: string;
  readonly flags: readonly string[];
  /** Each answer record: name, TTL and address. */
  readonly answers: readonly { readonly name: string; readonly ttl: number; readonly address: string }[];
  readonly output: string;
}

/** dig in `pod` with the pod's resolv.conf: one try, 3 s. */
async function dig(pod: string, name: string, ...options: string[]): Promise<Dig> {
  const r = await session.exec(pod, ['dig', '+tries=1', '+time=3', ...options, name]);
  const output = `${r.stdout}${r.stderr}`;
  const answers = [...r.stdout.matchAll(/^(\S+)\.\s+(\d+)\s+IN\s+A\s+(\S+)$/gm)].map((m) => ({ name: m[1]!, ttl: Number(m[2]), address: m[3]! }));
  return {
    status: /status: (\w+)/.exec(r.stdout)?.[1] ?? `no reply (exit ${r.code})`,
    flags: /;; flags: ([a-z ]+);/.exec(r.stdout)?.[1]?.split(' ') ?? [],
    answers,
    output,
  };
}

const getent = async (pod: string, name: string): Promise<{ code: number | null; address: string }> => {
  const r = await session.exec(pod, ['getent', 'ahostsv4', name]);
  return { code: r.code, address: r.stdout.split(/\s/)[0] ?? '' };
};

/** The cluster DNS's log lines for `name` since `from` (a byte offset), as { client, transport, rcode }. */
function clusterDnsQueries(name: string, from: number): { client: string; transport: string; rcode: string }[] {
  return readFileSync(clusterDnsLogFile, 'utf8')
    .slice(from)
    .split('\n')
    .filter((l) => l.includes(`"name":"${name}"`))
    .map((l) => JSON.parse(l) as { client: string; transport: string; rcode: string });
}
const clusterDnsLogSize = (): number => readFileSync(clusterDnsLogFile, 'utf8').length;

before(async () => {
  await session.up(meshYaml(), 120);
});

after(async () => {
  await session.down();
});

test("a pod's resolver reaches a Service by its short name through the search list, answered by the mesh", async () => {
  assert.deepEqual(await getent('shop/client', 'web'), { code: 0, address: WEB_VIP });
  const answered = await dig('shop/client', 'web', '+search');
  assert.equal(answered.status, 'NOERROR', answered.output);
  // The mesh's proxy answers with its own TTL (30), authoritative; the cluster DNS would say 5.
  assert.deepEqual(answered.answers, [{ name: 'web.shop.svc.cluster.local', ttl: 30, address: WEB_VIP }], answered.output);
  assert.ok(answered.flags.includes('aa'));
  // The opted-out pod asks the cluster DNS itself, which knows the Service too.
  const direct = await dig('shop/quiet', 'web', '+search');
  assert.deepEqual(direct.answers, [{ name: 'web.shop.svc.cluster.local', ttl: 5, address: WEB_VIP }], direct.output);
});

test('a ServiceEntry host that no DNS server knows resolves to its automatic VIP, over UDP and TCP', async () => {
  const udp = await dig('shop/client', SE_HOST);
  assert.equal(udp.status, 'NOERROR', udp.output);
  assert.match(udp.answers[0]?.address ?? '', /^240\.240\.\d+\.\d+$/, udp.output);
  const tcp = await dig('shop/client', SE_HOST, '+tcp');
  assert.deepEqual(tcp.answers, udp.answers, tcp.output);
  assert.deepEqual(await getent('shop/client', SE_HOST), { code: 0, address: udp.answers[0]!.address });
});

test("a reply read with recvfrom comes from the server the pod asked, for the mesh's answer and a forwarded one, from AF_INET and AF_INET6 sockets", async () => {
  // glibc and dig connect their UDP socket, so the kernel matches the reply to it whatever its source; a
  // resolver that reads the source with recvfrom (musl, many language runtimes) drops a reply from elsewhere.
  for (const family of ['4', '6']) {
    for (const name of [SE_HOST, DB_POD_NAME]) {
      const r = await session.exec('shop/client', ['python3', '-c', RECVFROM, name, LAB_CLUSTER_DNS.ip, family]);
      const reply = JSON.parse(r.stdout) as { from?: [string, number]; address?: string; error?: string };
      const what = `${name} over IPv${family}`;
      assert.equal(reply.error, undefined, what);
      assert.deepEqual(reply.from, [`${family === '6' ? '::ffff:' : ''}${LAB_CLUSTER_DNS.ip}`, 53], what);
      assert.match(reply.address ?? '', name === SE_HOST ? /^240\.240\./ : new RegExp(`^${DB_IP.replaceAll('.', '\\.')}$`), what);
    }
  }
});

test('curl reaches the ServiceEntry host by name through the mesh', async () => {
  const r = await session.exec('shop/client', ['curl', '-s', '--max-time', '10', `http://${SE_HOST}/`]);
  assert.equal(r.code, 0, `curl failed (${r.code}): ${r.stderr}`);
  assert.match(r.stdout, /^api /, 'the entry\'s endpoint answered');
  await eventually('alpha\'s agent to log the request to the entry', async () => ((await session.agentLog('alpha')).includes(`"dst.service":"${SE_HOST}"`) ? true : undefined));
});

test('a name the mesh does not know is forwarded to the cluster DNS and answered from it, over UDP and TCP', async () => {
  const from = clusterDnsLogSize();
  const udp = await dig('shop/client', DB_POD_NAME);
  assert.deepEqual(udp.answers, [{ name: DB_POD_NAME, ttl: 5, address: DB_IP }], udp.output);
  const tcp = await dig('shop/client', DB_POD_NAME, '+tcp');
  assert.deepEqual(tcp.answers, udp.answers, tcp.output);
  const unknown = await dig('shop/client', 'nothing.example');
  assert.equal(unknown.status, 'NXDOMAIN', unknown.output);
  // The cluster DNS was asked by alpha's agent, not by the pod: the query went through the proxy.
  assert.deepEqual(
    clusterDnsQueries(DB_POD_NAME, from).map((q) => [q.client, q.transport]),
    [
      [ALPHA_IP, 'udp'],
      [ALPHA_IP, 'tcp'],
    ],
  );
  assert.deepEqual(clusterDnsQueries('nothing.example', from).map((q) => [q.client, q.rcode]), [[ALPHA_IP, 'NXDOMAIN']]);
});

test('a pod annotated ambient.istio.io/dns-capture: "false" asks the cluster DNS itself, and the ServiceEntry host does not resolve', async () => {
  const from = clusterDnsLogSize();
  const udp = await dig('shop/quiet', SE_HOST);
  assert.equal(udp.status, 'NXDOMAIN', udp.output);
  assert.deepEqual(clusterDnsQueries(SE_HOST, from).map((q) => q.client), [QUIET_IP], 'the pod\'s own query, not its agent\'s');
  assert.equal((await getent('shop/quiet', SE_HOST)).code, 2, 'getent: not found');
  const curl = await session.exec('shop/quiet', ['curl', '-s', '--max-time', '10', `http://${SE_HOST}/`]);
  assert.equal(curl.code, 6, 'curl: could not resolve the host');
});

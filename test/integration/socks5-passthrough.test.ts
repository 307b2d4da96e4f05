// Passthrough and SOCKS5 in the lab, on the real kernel. Traffic an enrolled pod sends outside the mesh
// keeps the pod's own address: servers outside the mesh (pods of a namespace without the ambient label,
// on the same node and on another, and a process of the node itself) record the source of each
// connection, which must be the pod's IP whether the connection was captured (L4 or L7 port) or came
// through SOCKS5, never the node's. A pod's SOCKS5 listener is open before its first process runs, and
// refuses the node itself (test/security/socks5-destinations.test.ts covers every class in-process).

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { ambit, eventually } from './helpers/lab-cli.js';
import { LabSession, twoNodesYaml } from './helpers/lab-session.js';

const LAB = `tps${process.pid % 1000}`;
const CLIENT = '10.233.1.20';
const RECORDER_A = '10.233.1.40';
const RECORDER_B = '10.233.2.40';
const TCP_VIP = '10.107.73.10';
const HTTP_VIP = '10.107.73.11';
/** Every pod's gateway: an address of its node (agent/lab/layout.ts POD_GATEWAY). */
const NODE_GATEWAY = '169.254.1.1';
const NODE_PORT = 8091;
/** An address node alpha gains after its agent started (TEST-NET-2: routed nowhere). */
const LATE_ADDRESS = '198.51.100.77';

/** Answers each request with the address the connection came from. */
const recorder = (port: number): string => `require('http').createServer((q, s) => s.end(q.socket.remoteAddress.replace('::ffff:', '') + '\\n')).listen(${port})`;

function meshYaml(): string {
  const pod = (ns: string, name: string, node: string, ip: string, command: string[]): string => `---
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: ${ns}, labels: { app: ${name.replace(/-[ab]$/, '')} } }
spec:
  nodeName: ${node}
  containers: [{ name: main, command: ${JSON.stringify(command)} }]
status: { podIP: ${ip} }
`;
  const service = (name: string, vip: string, portName: string): string => `---
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: outside }
spec: { clusterIP: ${vip}, selector: { app: recorder }, ports: [{ name: ${portName}, port: 80, targetPort: 8080 }] }
`;
  // The early pod's first act: is its SOCKS5 listener there already?
  const early = ['bash', '-c', 'if : 2>/dev/null > /dev/tcp/127.0.0.1/15080; then echo socks5-open-at-start; else echo socks5-closed-at-start; fi; exec sleep infinity'];
  return `${twoNodesYaml(73, 233)}---
apiVersion: v1
kind: Namespace
metadata: { name: mesh, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Namespace
metadata: { name: outside }
${pod('mesh', 'client', 'alpha', CLIENT, ['sleep', 'infinity'])}${pod('mesh', 'early', 'alpha', '10.233.1.21', early)}${pod('outside', 'recorder-a', 'alpha', RECORDER_A, ['node', '-e', recorder(8080)])}${pod('outside', 'recorder-b', 'beta', RECORDER_B, ['node', '-e', recorder(8080)])}${service('recorder-tcp', TCP_VIP, 'tcp')}${service('recorder-http', HTTP_VIP, 'http')}`;
}

describe('passthrough and SOCKS5 keep the pod\'s address and stay off the node', { timeout: 300_000 }, () => {
  const session = LabSession.inTempDir(LAB, 'ambit-passthrough-test-');
  let nodeServer: ChildProcess | undefined;
  const exec = (target: string, argv: readonly string[]) => session.exec(target, argv, 45_000);
  /** The source address the server at `url` saw, asked from the client pod (through SOCKS5 when given). */
  const seenFrom = async (url: string, socks = false): Promise<string> => {
    const r = await exec('mesh/client', ['curl', '-s', '--max-time', '5', ...(socks ? ['--socks5', '127.0.0.1:15080'] : []), url]);
    return r.code === 0 ? r.stdout.trim() : `curl exit ${r.code}`;
  };

  before(async () => {
    await session.up(meshYaml(), 120, ['--socks5']);
    // A process of node alpha itself, on every address of the node.
    nodeServer = spawn('ip', ['netns', 'exec', `ambit-${LAB}-n-alpha`, process.execPath, '-e', recorder(NODE_PORT)], { stdio: 'ignore' });
    await eventually('the node\'s own server', async () => ((await exec('node/alpha', ['curl', '-s', '--max-time', '2', `http://127.0.0.1:${NODE_PORT}/`])).code === 0 ? true : undefined));
  });

  after(async () => {
    nodeServer?.kill();
    await session.down();
  });

  it('a captured connection to a pod outside the mesh leaves with the pod\'s IP, on another node and on its own', async () => {
    assert.equal(await seenFrom(`http://${RECORDER_B}:8080/`), CLIENT, 'the pod on node beta saw another source than the client pod');
    assert.equal(await seenFrom(`http://${RECORDER_A}:8080/`), CLIENT, 'the pod on the same node saw another source than the client pod');
  });

  it('so does one through a Service outside the mesh, relayed at L4 and at L7', async () => {
    assert.equal(await seenFrom(`http://${TCP_VIP}/`), CLIENT);
    assert.equal(await seenFrom(`http://${HTTP_VIP}/`), CLIENT);
  });

  it('so does one to an address of the node itself (the reply comes back through conntrack, not tc)', async () => {
    assert.equal(await seenFrom(`http://${NODE_GATEWAY}:${NODE_PORT}/`), CLIENT);
  });

  it('so does a SOCKS5 connection, and the pod\'s listener was open before its first process ran', async () => {
    assert.equal(await seenFrom(`http://${RECORDER_B}:8080/`, true), CLIENT);
    assert.equal(await seenFrom(`http://${RECORDER_A}:8080/`, true), CLIENT);
    const early = (await ambit(['lab', 'logs', '--lab', LAB, 'mesh/early'])).stdout;
    assert.match(early, /socks5-open-at-start/, `the early pod's first process found no SOCKS5 listener:\n${early}`);
  });

  it('SOCKS5 in the agent refuses the node: /quitquitquit does not stop it, and an address the node gains later is its too', async () => {
    const socks = (argv: readonly string[]) => exec('mesh/client', ['curl', '-s', '--max-time', '5', '--socks5', '127.0.0.1:15080', ...argv]);
    // 97: the SOCKS5 proxy refused (0x02), so curl never reached the admin server.
    assert.equal((await socks(['-X', 'POST', 'http://127.0.0.1:15000/quitquitquit'])).code, 97);
    assert.equal((await socks([`http://${NODE_GATEWAY}:${NODE_PORT}/`])).code, 97);
    assert.equal((await exec('node/alpha', ['curl', '-s', '--max-time', '2', 'http://127.0.0.1:15021/healthz/ready'])).stdout.trim(), 'ready');
    assert.doesNotMatch(await session.agentLog('alpha'), /quitquitquit: shutting down/);

    const added = await exec('node/alpha', ['ip', 'addr', 'add', `${LATE_ADDRESS}/32`, 'dev', 'lo']);
    assert.equal(added.code, 0, added.stderr);
    // The agent follows the kernel's address events; give it a moment, never more than 5 s.
    await eventually(`alpha's agent to refuse ${LATE_ADDRESS}`, async () => ((await socks([`http://${LATE_ADDRESS}:${NODE_PORT}/`])).code === 97 ? true : undefined), 5_000);
  });
});

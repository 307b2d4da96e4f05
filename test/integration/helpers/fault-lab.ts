// A two-node lab for the fault and scale tests: client pods on alpha, an echo pod on beta reached
// through HBONE, and the levers those tests pull (an agent's pid, the supervisor paused, readiness).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { eventually } from './lab-cli.js';
import { type LabSession, twoNodesYaml } from './lab-session.js';

/** An echo that keeps a half-closed socket open until it has sent everything back: checksums compare whole streams. */
const ECHO_SERVER = `require('net').createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {}); s.pipe(s); }).listen(9000, () => {}).maxConnections = 100000`;

export interface FaultMesh {
  /** `netOctet` picks the nodes' 172.31.<n>.0/24, `podOctet` the pods' 10.<p>.0.0/16: unique per test file. */
  readonly netOctet: number;
  readonly podOctet: number;
  /** Client pods on alpha (`faults/client-0` …). */
  readonly clients: number;
  /** Also an HTTP pod `web` on beta behind Service `web` (port 80 named http, so the L7 path handles it). */
  readonly web?: boolean;
}

const execFileAsync = promisify(execFile);

export const echoIp = (m: FaultMesh): string => `10.${m.podOctet}.2.30`;
export const webVip = (m: FaultMesh): string => `10.96.${m.podOctet}.10`;
const WEB_SERVER = `require('http').createServer((q, s) => { q.resume(); q.on('end', () => s.end('ok')); }).listen(8080)`;
export const clientPod = (i: number): string => `faults/client-${i}`;
export const nodeNetns = (lab: string, node: string): string => `ambit-${lab}-n-${node}`;

export function faultMeshYaml(m: FaultMesh): string {
  const pod = (name: string, node: string, ip: string, command: string[]): string => `---
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: faults, labels: { app: ${name.replace(/-\d+$/, '')} } }
spec:
  nodeName: ${node}
  serviceAccountName: ${name.replace(/-\d+$/, '')}
  containers: [{ name: main, command: ${JSON.stringify(command)} }]
status: { podIP: ${ip} }
`;
  const clients = Array.from({ length: m.clients }, (_, i) => pod(`client-${i}`, 'alpha', `10.${m.podOctet}.1.${20 + i}`, ['sleep', 'infinity'])).join('');
  return `${twoNodesYaml(m.netOctet, m.podOctet)}---
apiVersion: v1
kind: Namespace
metadata: { name: faults, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: ServiceAccount
metadata: { name: client, namespace: faults }
---
apiVersion: v1
kind: ServiceAccount
metadata: { name: echo, namespace: faults }
${pod('echo', 'beta', echoIp(m), ['node', '-e', ECHO_SERVER])}${clients}${m.web ? `---
apiVersion: v1
kind: ServiceAccount
metadata: { name: web, namespace: faults }
${pod('web', 'beta', `10.${m.podOctet}.2.40`, ['node', '-e', WEB_SERVER])}---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: faults }
spec: { clusterIP: ${webVip(m)}, selector: { app: web }, ports: [{ name: http, port: 80, targetPort: 8080 }] }
` : ''}`;
}

interface LabStatus {
  readonly supervisorPid: number;
  readonly processes: readonly { readonly id: string; readonly pid?: number; readonly ready?: boolean }[];
}

export function labStatus(lab: string): LabStatus {
  return JSON.parse(readFileSync(`/run/ambit/lab/${lab}/status.json`, 'utf8')) as LabStatus;
}

export function agentPid(lab: string, node: string): number {
  const pid = labStatus(lab).processes.find((p) => p.id === `node/${node}`)?.pid;
  assert.ok(pid, `no pid for node/${node} in the lab's status`);
  return pid;
}

/** Resident set of a process in bytes, from /proc (VmRSS). */
export function rssBytes(pid: number): number {
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(kb, `no VmRSS for pid ${pid}`);
  return Number(kb[1]) * 1024;
}

/** User plus system CPU a process used so far, in seconds (/proc/<pid>/stat, clock ticks of 10 ms). */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

export const isDead = (pid: number): boolean => {
  try {
    return /^\d+ \(.*\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
};

/** Waits until `node`'s agent answers 200 on its readiness port, from inside its node. */
export function agentReady(session: LabSession, node: string, timeoutMs = 60_000): Promise<true> {
  return eventually(`${node}'s agent to be ready`, async () => {
    const r = await session.exec(`node/${node}`, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '1', 'http://127.0.0.1:15021/healthz/ready']);
    return r.stdout === '200' ? true : undefined;
  }, timeoutMs);
}

/** GET `url` from inside a lab node's namespace with curl (no Node process to start: cheap on a busy machine). */
export async function nodeGet(lab: string, node: string, url: string): Promise<string> {
  const { stdout } = await execFileAsync('ip', ['netns', 'exec', nodeNetns(lab, node), 'curl', '-sf', '--max-time', '20', url], { maxBuffer: 256 * 2 ** 20 });
  return stdout;
}

/** One metric line's value from an agent's Prometheus text (summed over the series that match `labels`). */
export async function metricSum(session: LabSession, node: string, name: string, labels: RegExp = /.*/): Promise<number> {
  const text = await nodeGet(session.lab, node, 'http://127.0.0.1:15020/metrics');
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = new RegExp(`^${name}(\\{[^}]*\\})? ([0-9.e+-]+)$`).exec(line);
    if (m && labels.test(m[1] ?? '')) sum += Number(m[2]);
  }
  return sum;
}

// What the DNS capture tests share: an upstream DNS server in a namespace (Python, independent of the
// proxy's wire code), a pod's resolv.conf under /etc/netns, and running a command as a pod's process.

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { run } from './netns-fixture.js';

/** The server the pods' resolv.conf names: nothing listens there, so only capture can answer. */
export const POD_NAMESERVER = '10.96.0.10';
/** What the upstream answers for every A question: an address no mesh object has. */
export const UPSTREAM_ANSWER = '10.250.9.77';

const UPSTREAM = `
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
print('ready', flush=True)
while True:
    q, peer = s.recvfrom(512)
    end = 12
    while q[end] != 0: end += 1 + q[end]
    answer = b'\\xc0\\x0c' + struct.pack('>HHIH', 1, 1, 60, 4) + socket.inet_aton(sys.argv[2])
    s.sendto(q[:2] + b'\\x81\\x80' + struct.pack('>HHHH', 1, 1, 0, 0) + q[12:end + 5] + answer, peer)
`;

/** The first line a child prints, or a rejection if it exits or stays silent for 20 s. */
export function firstLine(child: ChildProcessWithoutNullStreams, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start in 20 s`)), 20_000);
    createInterface({ input: child.stdout }).once('line', (line) => {
      clearTimeout(timer);
      resolve(line);
    });
    child.once('exit', (code) => reject(new Error(`${what} exited (${code})`)));
  });
}

/** A UDP DNS server on `ip`:53 in `ns` answering UPSTREAM_ANSWER; kill the child to stop it. */
export async function startUpstreamDns(ns: string, ip: string): Promise<ChildProcessWithoutNullStreams> {
  const child = spawn('ip', ['netns', 'exec', ns, '/usr/bin/python3', '-c', UPSTREAM, ip, UPSTREAM_ANSWER]);
  await firstLine(child, 'the upstream DNS server');
  return child;
}

/** The pods' resolv.conf (`ip netns exec` mounts /etc/netns/<ns>/ over /etc): POD_NAMESERVER, Kubernetes' search list. */
export function writePodResolvConf(namespaces: readonly string[]): void {
  for (const ns of namespaces) {
    mkdirSync(`/etc/netns/${ns}`, { recursive: true });
    writeFileSync(`/etc/netns/${ns}/resolv.conf`, `nameserver ${POD_NAMESERVER}\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions timeout:1 attempts:1\n`);
  }
}

export async function removePodResolvConf(namespaces: readonly string[]): Promise<void> {
  for (const ns of namespaces) rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
  await run('rmdir', ['/etc/netns']);
}

/** Runs a command as a process of `cgroup` inside `ns` (joining the cgroup before netns exec hides /sys). */
export function inPod(ns: string, cgroup: string, command: readonly string[], env: Record<string, string> = {}): ReturnType<typeof run> {
  const vars = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  return run('sh', ['-c', `echo $$ > ${join(cgroup, 'cgroup.procs')} && exec env ${vars.join(' ')} ip netns exec ${ns} "$@"`, 'sh', ...command], 10_000);
}

// A pod's network namespace, found from the outside: through a process in the pod's cgroup, the way a
// node agent without a CNI plugin can reach it. The namespace must hold the pod's IP, so that a process
// that joined the cgroup but not yet the pod's namespace (or one that left it) is never taken for it.

import { readFile, stat } from 'node:fs/promises';
import { treePids } from './cgroups.js';

export interface NetnsRef {
  /** A path that opens the namespace (/proc/<pid>/ns/net), valid while that process lives. */
  readonly path: string;
  /** The namespace's identity (device and inode of its nsfs file): a new pod sandbox has another. */
  readonly id: string;
}

/** The network namespace of this process, to tell a pod's namespace from the agent's own. */
export async function ownNetnsId(): Promise<string> {
  return nsId('/proc/self/ns/net');
}

/**
 * The network namespace of the pod whose cgroup is `cgroupDir` and whose IP is `podIp`, or undefined
 * when no process of the pod is in a namespace holding that IP (the sandbox is not up, or is gone).
 */
export async function podNetns(cgroupDir: string, podIp: string, notId: string): Promise<NetnsRef | undefined> {
  const seen = new Set<string>([notId]);
  for (const pid of await treePids(cgroupDir)) {
    const path = `/proc/${pid}/ns/net`;
    const id = await nsId(path).catch(() => undefined);
    if (id === undefined || seen.has(id)) continue;
    seen.add(id);
    if (await holdsAddress(pid, podIp)) return { path, id };
  }
  return undefined;
}

async function nsId(path: string): Promise<string> {
  const s = await stat(path);
  return `${s.dev}:${s.ino}`;
}

/** Whether the process's network namespace has `ip` as a local address (its FIB's local table). */
async function holdsAddress(pid: number, ip: string): Promise<boolean> {
  const trie = await readFile(`/proc/${pid}/net/fib_trie`, 'utf8').catch(() => '');
  // A local address shows as "|-- <ip>" followed by a "/32 host LOCAL" line; a route to it (a node's
  // route to its pod) shows the same address with "/32 link UNICAST".
  return new RegExp(`\\|-- ${ip.replaceAll('.', '\\.')}\\n\\s+/32 host LOCAL`).test(trie);
}

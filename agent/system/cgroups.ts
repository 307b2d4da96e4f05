// cgroup v2 directories: where the hierarchy is mounted (on hybrid hosts /sys/fs/cgroup/unified),
// which one a process is in, and creating and removing them. eBPF socket programs attach to these
// directories, which is how the agent captures exactly the sockets of enrolled pods.

import { readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** The mount point of the cgroup2 hierarchy, found from /proc/self/mountinfo. */
export function cgroup2Root(): string {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  const roots: string[] = [];
  for (const line of mounts) {
    // mountinfo: id parent major:minor root mountpoint options ... - fstype source superoptions
    const [left, right] = line.split(' - ');
    if (!left || !right || !right.startsWith('cgroup2 ')) continue;
    const mountPoint = left.split(' ')[4];
    if (mountPoint) roots.push(mountPoint);
  }
  const preferred = roots.find((r) => r === '/sys/fs/cgroup') ?? roots.find((r) => r === '/sys/fs/cgroup/unified') ?? roots[0];
  if (!preferred) {
    throw new Error('no cgroup2 hierarchy is mounted (checked /proc/self/mountinfo); the lab and eBPF capture need one: mount -t cgroup2 none /sys/fs/cgroup/unified');
  }
  return preferred;
}

/** The cgroup v2 directory of a process (from /proc/<pid>/cgroup's `0::` line). */
export function cgroupOf(pid: number | 'self' = 'self'): string {
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'));
  if (!line) throw new Error(`/proc/${pid}/cgroup has no cgroup v2 entry; is cgroup2 mounted?`);
  return join(cgroup2Root(), line.slice(3));
}

export async function createCgroup(path: string): Promise<void> {
  await mkdir(path, { recursive: true });
}

export function procsFile(path: string): string {
  return join(path, 'cgroup.procs');
}

export async function cgroupPids(path: string): Promise<number[]> {
  const text = await readFile(procsFile(path), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map(Number);
}

/**
 * Kills every process in the subtree (cgroup.kill, kernel 5.14+, SIGKILL to all at once so nothing
 * can fork away), waits until they are gone, then removes the directories bottom-up.
 */
export async function removeCgroupTree(path: string, deadlineMs = 10_000): Promise<void> {
  const exists = await readdir(path).then(() => true, () => false);
  if (!exists) return;
  await writeFile(join(path, 'cgroup.kill'), '1').catch(() => undefined);
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    try {
      await removeBottomUp(path);
      return;
    } catch (err) {
      if (Date.now() > deadline) {
        throw new Error(`cannot remove cgroup ${path}: ${(err as Error).message}; processes still in it: ${(await treePids(path)).join(', ') || 'none'}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

async function removeBottomUp(path: string): Promise<void> {
  const entries = await readdir(path, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) if (entry.isDirectory()) await removeBottomUp(join(path, entry.name));
  await rmdir(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}

/** The processes of a cgroup and of every cgroup below it (a pod's containers sit in child cgroups). */
export async function treePids(path: string): Promise<number[]> {
  const pids = await cgroupPids(path);
  const entries = await readdir(path, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) if (entry.isDirectory()) pids.push(...(await treePids(join(path, entry.name))));
  return pids;
}

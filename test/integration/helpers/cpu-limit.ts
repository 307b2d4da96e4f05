// Holds a process to a share of one CPU with a cgroup quota, as a busy node holds its agent: a test
// starves a lab agent this way instead of loading a machine that other tests share.

import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface CpuLimit {
  /** Moves the process back to the cgroup it came from and removes the limiting one. */
  release(): void;
}

const V1_CPU = '/sys/fs/cgroup/cpu';
const V2 = '/sys/fs/cgroup';
const PERIOD_US = 100_000;

/** Limits `pid` (all its threads) to `percent` of one CPU in a new cgroup `name`, v1's cpu controller or v2's. */
export function limitCpu(pid: number, percent: number, name: string): CpuLimit {
  const quotaUs = Math.round((percent / 100) * PERIOD_US);
  const v1 = existsSync(join(V1_CPU, 'cpu.cfs_quota_us'));
  if (!v1 && !readFileSync(join(V2, 'cgroup.subtree_control'), 'utf8').split(/\s+/).includes('cpu')) {
    throw new Error(`no cgroup CPU controller to starve pid ${pid} with: neither ${V1_CPU} (v1) nor "cpu" in ${V2}/cgroup.subtree_control (v2)`);
  }
  const root = v1 ? V1_CPU : V2;
  const from = join(root, ownCgroup(pid, v1));
  const dir = join(root, name);
  mkdirSync(dir);
  if (v1) {
    writeFileSync(join(dir, 'cpu.cfs_period_us'), String(PERIOD_US));
    writeFileSync(join(dir, 'cpu.cfs_quota_us'), String(quotaUs));
  } else {
    writeFileSync(join(dir, 'cpu.max'), `${quotaUs} ${PERIOD_US}`);
  }
  writeFileSync(join(dir, 'cgroup.procs'), String(pid));
  return {
    release() {
      for (const member of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) writeFileSync(join(from, 'cgroup.procs'), member);
      rmdirSync(dir);
    },
  };
}

/** The process's cgroup path in the hierarchy used (/proc/<pid>/cgroup: v1's line naming cpu, or v2's "0::"). */
function ownCgroup(pid: number, v1: boolean): string {
  for (const line of readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n')) {
    const [id, controllers, path] = line.split(':');
    if (path === undefined) continue;
    if (v1 ? controllers!.split(',').includes('cpu') : id === '0' && controllers === '') return path;
  }
  throw new Error(`pid ${pid} is in no ${v1 ? 'v1 cpu' : 'v2'} cgroup (/proc/${pid}/cgroup)`);
}

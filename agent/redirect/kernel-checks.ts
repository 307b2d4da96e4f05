// What eBPF capture needs from the kernel, checked before anything is loaded so that a node that
// cannot capture says exactly what is missing instead of failing halfway or, worse, silently.

import { readFileSync } from 'node:fs';
import { release } from 'node:os';

/** tcx links (BPF_TCX_INGRESS) arrived in Linux 6.6. */
const TCX_MIN = [6, 6] as const;

export function kernelProblems(): string[] {
  const problems: string[] = [];
  const [major = 0, minor = 0] = release().split('.').map((n) => Number.parseInt(n, 10));
  if (major < TCX_MIN[0] || (major === TCX_MIN[0] && minor < TCX_MIN[1])) {
    problems.push(`kernel ${release()} is older than ${TCX_MIN.join('.')}: inbound capture attaches tc programs with tcx links`);
  }
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  const fsType = (line: string): string => line.split(' - ')[1]?.split(' ')[0] ?? '';
  if (!mounts.some((line) => fsType(line) === 'cgroup2')) {
    problems.push('no cgroup2 hierarchy is mounted: outbound capture attaches to pods\' cgroup v2 directories (mount -t cgroup2 none /sys/fs/cgroup/unified)');
  }
  // Once a v1 net_cls or net_prio hierarchy is in use, the kernel stops tracking sockets' cgroup v2
  // membership and cgroup BPF programs no longer see pods' sockets: capture would silently miss them.
  const v1Net = mounts.find((line) => fsType(line) === 'cgroup' && /(^|,)(net_cls|net_prio)(,|$)/.test(line.split(' - ')[1]?.split(' ')[2] ?? ''));
  if (v1Net) {
    problems.push(`cgroup v1 net_cls/net_prio is mounted at ${v1Net.split(' ')[4]}: it disables cgroup v2 socket matching, so pods' connections would escape capture; unmount it`);
  }
  if (process.getuid?.() !== 0) problems.push('not running as root: capture needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN');
  return problems;
}

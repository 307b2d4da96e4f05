// What the machine looks like from the root namespace, so tests can prove a lab left nothing behind:
// network namespaces, links, routes, rules, nft tables, /etc/netns entries, cgroups and bpffs pins;
// what other labs running side by side own (named after them) is left out, so their coming and going
// cannot fail the check while anything else, this lab's or global, still must match exactly.

import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const LAB_RUN_DIR = '/run/ambit/lab';

function run(file: string, args: string[]): string {
  try {
    return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return '';
  }
}

function list(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** The directories in `dir` (a cgroup's children; its files are the controllers' knobs). */
function subdirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  } catch {
    return [];
  }
}

export interface HostFootprint {
  readonly netns: string;
  readonly links: string;
  readonly routes: string;
  readonly rules: string;
  readonly nft: string;
  readonly etcNetns: readonly string[];
  readonly cgroups: readonly string[];
  readonly bpfPins: readonly string[];
}

/** The labs that are up now (their state directories); the ones other than a test's own go to withoutLabs(). */
export function labsUp(): string[] {
  return list(LAB_RUN_DIR);
}

/** Everything, including what labs own: filter both sides of a comparison with withoutLabs(). */
export function hostFootprint(cgroupRoot: string): HostFootprint {
  return {
    netns: run('ip', ['netns', 'list']),
    links: run('ip', ['-br', 'link']),
    routes: run('ip', ['route', 'show', 'table', 'all']),
    rules: run('ip', ['rule']),
    nft: run('nft', ['list', 'ruleset']),
    etcNetns: list('/etc/netns'),
    cgroups: [...list(cgroupRoot).filter((d) => d.startsWith('ambit')), ...subdirs(join(cgroupRoot, 'ambit')).map((d) => `ambit/${d}`)],
    bpfPins: list('/sys/fs/bpf/ambit'),
  };
}

/**
 * A footprint without what belongs to `otherLabs`: their namespaces and /etc/netns entries
 * (ambit-<lab>-…), bpffs pins (<lab>-<node>) and cgroups (ambit/<lab>), and the shared ambit/ cgroup
 * while one of them holds it. Root namespace links, routes, rules and nft tables are never filtered:
 * no lab owns any there, so a change to them is always a leak.
 */
export function withoutLabs(footprint: HostFootprint, otherLabs: readonly string[]): HostFootprint {
  const theirs = (name: string): boolean => otherLabs.some((lab) => name.startsWith(`ambit-${lab}-`) || name.startsWith(`${lab}-`) || name === `ambit/${lab}`);
  const othersHoldAmbit = footprint.cgroups.some(theirs);
  return {
    ...footprint,
    netns: footprint.netns.split('\n').filter((l) => !theirs(l)).join('\n'),
    etcNetns: footprint.etcNetns.filter((n) => !theirs(n)),
    cgroups: footprint.cgroups.filter((d) => !theirs(d) && !(d === 'ambit' && othersHoldAmbit)),
    bpfPins: footprint.bpfPins.filter((n) => !theirs(n)),
  };
}

// What the machine looks like from the root namespace, so tests can prove a lab left nothing behind:
// network namespaces, links, routes, rules, nft tables, /etc/netns entries, cgroups and bpffs pins.

import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';

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

export function hostFootprint(cgroupRoot: string): HostFootprint {
  return {
    netns: run('ip', ['netns', 'list']),
    links: run('ip', ['-br', 'link']),
    routes: run('ip', ['route', 'show', 'table', 'all']),
    rules: run('ip', ['rule']),
    nft: run('nft', ['list', 'ruleset']),
    etcNetns: list('/etc/netns'),
    cgroups: list(cgroupRoot).filter((d) => d.startsWith('ambit')),
    bpfPins: list('/sys/fs/bpf/ambit'),
  };
}

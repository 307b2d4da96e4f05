// What an agent has pinned in bpffs, read with bpftool: each pinned map's id and, for the maps that
// hold configuration, its entries, and each pinned link's id; to prove a restarted agent adopted them.

import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

export interface PinnedState {
  /** Pinned map name → kernel map id: the same id after a restart means the map was adopted, not made anew. */
  readonly mapIds: Readonly<Record<string, number>>;
  /** Entries of the maps the agent fills from its configuration, as "key=value" in hex, sorted. */
  readonly entries: Readonly<Record<string, readonly string[]>>;
  /** Link pin path under links/ (e.g. pods/shop_client/ambit_connect4) → kernel link id. */
  readonly linkIds: Readonly<Record<string, number>>;
}

/** Maps whose entries come from configuration and enrollment alone (the others count or track connections). */
const CONFIG_MAPS = ['ambit_config', 'ambit_enrolled'];

function bpftool<T>(args: readonly string[]): T {
  return JSON.parse(execFileSync('bpftool', ['-j', ...args], { encoding: 'utf8' })) as T;
}

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

export function pinnedState(pinDir: string): PinnedState {
  const mapIds: Record<string, number> = {};
  const entries: Record<string, string[]> = {};
  for (const name of readdirSync(pinDir).filter((n) => n.startsWith('ambit_')).sort()) {
    mapIds[name] = bpftool<{ id: number }>(['map', 'show', 'pinned', join(pinDir, name)]).id;
    if (!CONFIG_MAPS.includes(name)) continue;
    const dump = bpftool<{ key: string[]; value: string[] }[]>(['map', 'dump', 'pinned', join(pinDir, name)]);
    entries[name] = dump.map((e) => `${e.key.join('')}=${e.value.join('')}`.replaceAll('0x', '')).sort();
  }
  const linkIds: Record<string, number> = {};
  for (const path of files(join(pinDir, 'links')).sort()) linkIds[relative(join(pinDir, 'links'), path)] = bpftool<{ id: number }>(['link', 'show', 'pinned', path]).id;
  return { mapIds, entries, linkIds };
}

/** The hex key of an IPv4 address in the maps keyed by address (network order), e.g. 10.245.1.10 → 0af5010a. */
export function ipv4Key(ip: string): string {
  return ip.split('.').map((b) => Number(b).toString(16).padStart(2, '0')).join('');
}

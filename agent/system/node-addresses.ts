// Every address of the agent's network namespace (the node's), kept current: an address added to a
// device after the agent started (a second NIC, a CNI bridge, a floating IP) is the node's all the same.

import { type ChildProcess, spawn } from 'node:child_process';
import { BlockList, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Logger } from '../telemetry/log.js';
import { requireTool } from './commands.js';

/** How long a burst of address events is gathered before the list is read again. */
const SETTLE_MS = 20;
/** If the kernel's address events cannot be followed, how often the list is read instead. */
const POLL_MS = 1_000;

/** The addresses of this process's network namespace, as a BlockList of single addresses. */
export function readNodeAddresses(): { readonly list: readonly string[]; readonly block: BlockList } {
  const block = new BlockList();
  const list: string[] = [];
  for (const entries of Object.values(networkInterfaces())) {
    for (const entry of entries ?? []) {
      // A link-local IPv6 address carries its zone ("fe80::1%eth0"); the address is what a peer dials.
      const address = entry.address.split('%')[0]!;
      const family = isIP(address);
      if (family === 0) continue;
      block.addAddress(address, family === 4 ? 'ipv4' : 'ipv6');
      list.push(address);
    }
  }
  return { list, block };
}

/**
 * Follows the kernel's address events (`ip monitor address`, rtnetlink's RTMGRP_IPV4/6_IFADDR) and
 * reads the list again after each burst; the list is read once at construction, so it is never empty
 * of what the namespace held then. Should `ip monitor` stop, the list is polled every second.
 */
export class NodeAddresses {
  #current = readNodeAddresses();
  #monitor: ChildProcess | undefined;
  #settle: NodeJS.Timeout | undefined;
  #poll: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(private readonly log: Logger) {
    this.#follow();
  }

  /** The node's addresses now. */
  get block(): BlockList {
    return this.#current.block;
  }

  get list(): readonly string[] {
    return this.#current.list;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#settle);
    clearInterval(this.#poll);
    this.#monitor?.kill();
  }

  #refresh(): void {
    this.#current = readNodeAddresses();
  }

  #follow(): void {
    const monitor = spawn(requireTool('ip', 'iproute2'), ['-o', 'monitor', 'address'], { stdio: ['ignore', 'pipe', 'ignore'] });
    this.#monitor = monitor;
    monitor.stdout!.on('data', () => {
      clearTimeout(this.#settle);
      this.#settle = setTimeout(() => this.#refresh(), SETTLE_MS);
    });
    // An address added between the first read and the monitor's start would be missed: read again
    // once the monitor runs.
    monitor.once('spawn', () => this.#refresh());
    const fallBack = (why: string): void => {
      if (this.#closed || this.#poll) return;
      this.log.warn({ err: why }, `following the node's addresses with \`ip monitor address\` failed (${why}); reading them every ${POLL_MS} ms instead`);
      this.#poll = setInterval(() => this.#refresh(), POLL_MS).unref();
    };
    monitor.once('error', (err) => fallBack(err.message));
    monitor.once('exit', (code, signal) => fallBack(`exited with ${code ?? signal}`));
    monitor.unref();
    (monitor.stdout as { unref?: () => void } | null)?.unref?.();
  }
}

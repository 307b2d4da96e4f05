// Where the agent's DNS proxy sends what the mesh does not answer: a server given with --dns-upstream,
// or else the first IPv4 nameserver of the agent's own resolv.conf, as ztunnel forwards to its own.

import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import type { DnsUpstream } from './dns-proxy.js';

export const RESOLV_CONF = '/etc/resolv.conf';

/** `ip` or `ip:port` (port 53 when absent); undefined when it is not an IPv4 address. */
export function parseDnsUpstream(text: string): DnsUpstream | undefined {
  const [ip = '', port = '53', extra] = text.trim().split(':');
  const number = Number(port);
  if (extra !== undefined || !isIPv4(ip) || !Number.isInteger(number) || number < 1 || number > 65535) return undefined;
  return { ip, port: number };
}

/** The first IPv4 `nameserver` line of a resolv.conf text, as glibc would ask it first. */
export function firstNameserver(resolvConf: string): DnsUpstream | undefined {
  for (const line of resolvConf.split('\n')) {
    const [keyword, address] = line.trim().split(/\s+/);
    if (keyword === 'nameserver' && address && isIPv4(address)) return { ip: address, port: 53 };
  }
  return undefined;
}

/** The configured upstream, or the node's: an error message says what is missing and what to do. */
export function nodeDnsUpstream(configured: DnsUpstream | undefined, path = RESOLV_CONF): DnsUpstream | string {
  if (configured) return configured;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return `cannot read ${path} for the DNS proxy's upstream (${(err as Error).message}); pass --dns-upstream <ip[:port]>, or --no-dns-capture to leave pods' DNS alone`;
  }
  return firstNameserver(text) ?? `${path} has no IPv4 nameserver for the DNS proxy's upstream; pass --dns-upstream <ip[:port]>, or --no-dns-capture to leave pods' DNS alone`;
}

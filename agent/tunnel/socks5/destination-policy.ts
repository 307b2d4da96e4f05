// Which destinations a pod may ask its SOCKS5 listener for. The agent dials them, so without this a
// pod would reach what only the node reaches: its loopback (the admin server's /quitquitquit), the
// cloud's link-local metadata service, the kubelet on the node's own addresses, and the agent's
// listeners. Refused with RFC 1928's "connection not allowed by ruleset" (0x02).

import { BlockList, isIP } from 'node:net';

/** The address classes no pod may reach through the agent, whatever the node's addresses are. */
const FORBIDDEN_CLASSES: readonly { readonly name: string; readonly block: BlockList }[] = [
  // 0.0.0.0/8 and :: reach this host on Linux: a connect() to 0.0.0.0 is a connect() to loopback.
  { name: 'unspecified', block: blockOf([['0.0.0.0', 8, 'ipv4'], ['::', 128, 'ipv6']]) },
  { name: 'loopback', block: blockOf([['127.0.0.0', 8, 'ipv4'], ['::1', 128, 'ipv6']]) },
  // 169.254.169.254 (the cloud metadata service, which trusts the node) lives here.
  { name: 'link-local', block: blockOf([['169.254.0.0', 16, 'ipv4'], ['fe80::', 10, 'ipv6']]) },
  { name: 'multicast', block: blockOf([['224.0.0.0', 4, 'ipv4'], ['ff00::', 8, 'ipv6']]) },
  { name: 'broadcast', block: blockOf([['255.255.255.255', 32, 'ipv4']]) },
];

function blockOf(subnets: readonly (readonly [string, number, 'ipv4' | 'ipv6'])[]): BlockList {
  const block = new BlockList();
  for (const [network, prefix, family] of subnets) block.addSubnet(network, prefix, family);
  return block;
}

export interface DestinationRules {
  /** Every address of the agent's network namespace, as it is now (see system/node-addresses.ts). */
  readonly nodeAddresses: () => BlockList;
  /** The agent's own ports: refused on every address (another node's agent, a pod's captured port). */
  readonly agentPorts: ReadonlySet<number>;
}

export type DestinationVerdict = { readonly allowed: true } | { readonly allowed: false; readonly reason: string };

/**
 * Whether a pod may be connected to `ip`:`port` by the agent. IPv4-mapped IPv6 addresses are judged
 * as the IPv4 address they carry (BlockList does so), so `::ffff:127.0.0.1` is loopback too.
 */
export function judgeDestination(ip: string, port: number, rules: DestinationRules): DestinationVerdict {
  const family = isIP(ip);
  if (family === 0) return { allowed: false, reason: `${ip} is not an IP address` };
  const type = family === 4 ? 'ipv4' : 'ipv6';
  const where = family === 4 ? `${ip}:${port}` : `[${ip}]:${port}`;
  for (const { name, block } of FORBIDDEN_CLASSES) {
    if (block.check(ip, type)) return { allowed: false, reason: `${where} is a ${name} address, which only the node itself may reach` };
  }
  if (rules.nodeAddresses().check(ip, type)) return { allowed: false, reason: `${where} is an address of the node, which pods may not reach through the agent` };
  if (rules.agentPorts.has(port)) return { allowed: false, reason: `port ${port} belongs to the mesh agent, on every address` };
  return { allowed: true };
}

/**
 * `::ffff:a.b.c.d` (however written) as the IPv4 address it carries: the agent dials IPv4 sockets, and a
 * mapped address must be judged and dialled as what it reaches. The one reading the policy code uses too.
 */
export { unmapIpv4 } from '../../system/ip-block.js';

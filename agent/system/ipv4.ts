// IPv4 prefix arithmetic: which ranges overlap (the lab's address checks) and which hold an address (policy).

import { isIPv4 } from 'node:net';

export interface Ipv4Prefix {
  readonly base: number;
  readonly length: number;
}

export function ipv4ToInt(ip: string): number {
  return ip.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

export function parseIpv4Prefix(cidr: string): Ipv4Prefix | undefined {
  const [ip, len] = cidr.includes('/') ? cidr.split('/') : [cidr, '32'];
  const length = Number(len);
  if (!ip || !isIPv4(ip) || !Number.isInteger(length) || length < 0 || length > 32) return undefined;
  return { base: maskOf(ipv4ToInt(ip), length), length };
}

function maskOf(value: number, length: number): number {
  return length === 0 ? 0 : Number((BigInt(value) >> BigInt(32 - length)) << BigInt(32 - length));
}

export function prefixContains(prefix: Ipv4Prefix, ip: string): boolean {
  return isIPv4(ip) && maskOf(ipv4ToInt(ip), prefix.length) === prefix.base;
}

export function prefixesOverlap(a: Ipv4Prefix, b: Ipv4Prefix): boolean {
  const shorter = Math.min(a.length, b.length);
  return maskOf(a.base, shorter) === maskOf(b.base, shorter);
}

export function formatPrefix(p: Ipv4Prefix): string {
  const octets = [24, 16, 8, 0].map((shift) => Math.floor(p.base / 2 ** shift) % 256);
  return `${octets.join('.')}/${p.length}`;
}

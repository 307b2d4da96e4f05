// Whether an address lies in an IP block ("10.1.0.0/16", "fd00::/8", or one address), for IPv4 and IPv6
// alike, with IPv4-mapped IPv6 addresses (`::ffff:10.1.2.3`, however written) read as the IPv4 address
// they carry: a dual-stack socket reports IPv4 peers that way, and a policy written for 10.0.0.0/8 must
// not stop matching because of it.

import { isIP } from 'node:net';

/** An address or prefix as its family and value (IPv4: 32 bits, IPv6: 128 bits). */
export interface IpPrefix {
  readonly family: 4 | 6;
  readonly value: bigint;
  /** Prefix length in bits; the full width for a single address. */
  readonly length: number;
}

const WIDTH = { 4: 32, 6: 128 } as const;

/** The address `ip` (a zone such as `%eth0` is ignored), mapped IPv6 as IPv4; undefined if not an address. */
export function parseIp(ip: string): IpPrefix | undefined {
  const address = ip.includes('%') ? ip.slice(0, ip.indexOf('%')) : ip;
  const family = isIP(address);
  if (family === 4) return { family: 4, value: ipv4Value(address), length: 32 };
  if (family !== 6) return undefined;
  const value = ipv6Value(address);
  if (value === undefined) return undefined;
  if (value >> 32n === 0xffffn) return { family: 4, value: value & 0xffff_ffffn, length: 32 };
  return { family: 6, value, length: 128 };
}

/**
 * An IP block as Istio writes one: an address or `address/length`. A mapped IPv6 prefix of length 96
 * or more is the IPv4 prefix it covers, so that `::ffff:10.0.0.0/104` and `10.0.0.0/8` mean the same.
 */
export function parseIpBlock(block: string): IpPrefix | undefined {
  const slash = block.indexOf('/');
  const address = parseAddress(slash < 0 ? block : block.slice(0, slash));
  if (!address) return undefined;
  const width = WIDTH[address.family];
  const bits = slash < 0 ? String(width) : block.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > width) return undefined;
  const length = Number(bits);
  if (address.family === 6 && length >= 96 && address.value >> 32n === 0xffffn) {
    return { family: 4, value: address.value & 0xffff_ffffn, length: length - 96 };
  }
  return { family: address.family, value: address.value, length };
}

/** True when `ip` lies in `block`; false when either is not valid or they are of different families. */
export function ipInBlock(ip: string, block: string): boolean {
  const address = parseIp(ip);
  const prefix = parseIpBlock(block);
  if (!address || !prefix || address.family !== prefix.family) return false;
  const shift = BigInt(WIDTH[prefix.family] - prefix.length);
  return address.value >> shift === prefix.value >> shift;
}

/** `::ffff:a.b.c.d` (however written) as `a.b.c.d`; any other string unchanged. */
export function unmapIpv4(ip: string): string {
  const address = isIP(ip) === 6 ? ipv6Value(ip) : undefined;
  if (address === undefined || address >> 32n !== 0xffffn) return ip;
  const v4 = Number(address & 0xffff_ffffn);
  return [v4 >>> 24, (v4 >>> 16) & 0xff, (v4 >>> 8) & 0xff, v4 & 0xff].join('.');
}

/** The address without reading mapped IPv6 as IPv4 (blocks decide that by their length). */
function parseAddress(ip: string): { family: 4 | 6; value: bigint } | undefined {
  const family = isIP(ip);
  if (family === 4) return { family, value: ipv4Value(ip) };
  const value = family === 6 ? ipv6Value(ip) : undefined;
  return value === undefined ? undefined : { family: 6, value };
}

function ipv4Value(ip: string): bigint {
  return ip.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

/** The 128-bit value of a valid IPv6 address (`::` and a dotted IPv4 tail expanded). */
function ipv6Value(ip: string): bigint | undefined {
  let text = ip.toLowerCase();
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  let tail: bigint[] = [];
  if (dotted) {
    const v4 = ipv4Value(dotted[1]!);
    tail = [v4 >> 16n, v4 & 0xffffn];
    text = text.slice(0, dotted.index);
    // "::1.2.3.4" leaves "::", "64:ff9b::1.2.3.4" leaves "64:ff9b::", "1:2:3:4:5:6:1.2.3.4" leaves "...6:".
    if (text.endsWith(':') && !text.endsWith('::')) text = text.slice(0, -1);
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const left = head ? head.split(':') : [];
  const right = rest ? rest.split(':') : [];
  const given = left.length + right.length + tail.length;
  const zeros = rest === undefined ? 0 : 8 - given;
  if (zeros < 0) return undefined;
  const words = [...left.map(hex), ...Array<bigint>(zeros).fill(0n), ...right.map(hex), ...tail];
  if (words.length !== 8 || words.some((w) => w === undefined)) return undefined;
  return (words as bigint[]).reduce((acc, word) => (acc << 16n) | word, 0n);
}

function hex(word: string): bigint | undefined {
  return /^[0-9a-f]{1,4}$/.test(word) ? BigInt(`0x${word}`) : undefined;
}

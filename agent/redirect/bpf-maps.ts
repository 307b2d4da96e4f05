// Typed views of BPF maps in the byte layout of bpf/lib/*.h: codecs for Ambit's keys and values,
// the maps every Ambit object shares, and the per-reason decision counters.

import { isIPv4 } from 'node:net';
import { join } from 'node:path';
import { call, fail, type NativeMap, type Result, type SocketAddress4 } from './bpf-native.js';

/** The counter slots of bpf/lib/stats.h, in enum order. */
export const REASONS = [
  'out-redirected',
  'out-pass-not-tcp',
  'out-pass-loopback',
  'out-pass-proxy',
  'out-pass-marked',
  'out-pass-native-v6',
  'out-pass-no-config',
  'out-deny-map-full',
  'sockops-pair-stored',
  'sockops-not-redirected',
  'sockops-store-failed',
  'sockops-pair-deleted',
  'sockopt-orig-dst',
  'sockopt-not-found',
  'sockopt-other',
  'peer-restored',
  'peer-pass',
  'tc-pass-not-ipv4',
  'tc-pass-not-tcp',
  'tc-pass-malformed',
  'tc-pass-to-node',
  'tc-pass-not-enrolled',
  'tc-pass-no-socket',
  'tc-assigned-established',
  'tc-assigned-listener',
  'tc-drop-no-listener',
  'tc-drop-assign-failed',
  'tc-drop-fragment',
  'sockops-pod-quota',
  'sockops-record-lost',
] as const;
export type Reason = (typeof REASONS)[number];
export type Counters = Readonly<Record<Reason, number>>;

/** How a TypeScript value is laid out in a map key or value. */
export interface Codec<T> {
  readonly size: number;
  encode(value: T): Buffer;
  decode(bytes: Buffer): T;
}

export const MAP_UPDATE = { any: 0, noExist: 1, exist: 2 } as const;

export class BpfMap<K, V> {
  private constructor(
    private readonly native: NativeMap,
    private readonly key: Codec<K>,
    private readonly value: Codec<V>,
  ) {}

  static wrap<K, V>(native: NativeMap, key: Codec<K>, value: Codec<V>): Result<BpfMap<K, V>> {
    if (native.keySize !== key.size || native.valueBytes !== value.size) {
      return fail('EINVAL', `map ${native.name}: key/value are ${native.keySize}/${native.valueBytes} bytes, the codec expects ${key.size}/${value.size}; bpf/ and agent/redirect/ are out of step`);
    }
    return { ok: true, value: new BpfMap(native, key, value) };
  }

  /** Opens a pinned map without loading any program (e.g. `ambit stats` reading the counters). */
  static openPinned<K, V>(path: string, key: Codec<K>, value: Codec<V>): Result<BpfMap<K, V>> {
    const opened = call((b) => b.openPinnedMap(path));
    return opened.ok ? BpfMap.wrap(opened.value, key, value) : opened;
  }

  get name(): string {
    return this.native.name;
  }

  lookup(key: K): Result<V | undefined> {
    return call((b) => {
      const bytes = b.mapLookup(this.native.handle, this.key.encode(key));
      return bytes ? this.value.decode(bytes) : undefined;
    });
  }

  update(key: K, value: V, flags: number = MAP_UPDATE.any): Result<void> {
    return call((b) => b.mapUpdate(this.native.handle, this.key.encode(key), this.value.encode(value), flags));
  }

  /** false when the key was not there. */
  delete(key: K): Result<boolean> {
    return call((b) => b.mapDelete(this.native.handle, this.key.encode(key)));
  }

  /** A bounded snapshot of the keys (see mapKeys in native/src/maps.c). */
  keys(): Result<K[]> {
    return call((b) => b.mapKeys(this.native.handle).map((k) => this.key.decode(k)));
  }

  close(): void {
    call((b) => b.closeMap(this.native.handle));
  }
}

function ipv4Bytes(ip: string): Buffer {
  if (!isIPv4(ip)) throw new TypeError(`${ip} is not an IPv4 address`);
  return Buffer.from(ip.split('.').map(Number));
}

const ipv4Text = (bytes: Buffer, offset: number): string => [...bytes.subarray(offset, offset + 4)].join('.');

/** __be32 IPv4 address. */
export const ipv4Codec: Codec<string> = {
  size: 4,
  encode: ipv4Bytes,
  decode: (b) => ipv4Text(b, 0),
};

/** struct ambit_addr4 { __be32 ip; __be16 port; __u16 _pad; } */
export const addr4Codec: Codec<SocketAddress4> = {
  size: 8,
  encode: ({ ip, port }) => {
    const b = Buffer.alloc(8);
    ipv4Bytes(ip).copy(b, 0);
    b.writeUInt16BE(port, 4);
    return b;
  },
  decode: (b) => ({ ip: ipv4Text(b, 0), port: b.readUInt16BE(4) }),
};

/** The agent's addresses as bpf/lib/config.h's struct ambit_config holds them. */
export interface RedirectConfig {
  readonly proxyIp: string;
  readonly outboundPort: number;
  readonly inboundPort: number;
  readonly hbonePort: number;
  /** Redirected connections one pod may have open at once; 0 or absent: the programs' default (16384). */
  readonly podPairsMax?: number;
}

export const configCodec: Codec<RedirectConfig> = {
  size: 16,
  encode: (c) => {
    const b = Buffer.alloc(16);
    ipv4Bytes(c.proxyIp).copy(b, 0);
    b.writeUInt16BE(c.outboundPort, 4);
    b.writeUInt16BE(c.inboundPort, 6);
    b.writeUInt16BE(c.hbonePort, 8);
    // struct ambit_config's pod_pairs_max is host order (x86_64 and arm64: little-endian).
    b.writeUInt32LE(c.podPairsMax ?? 0, 12);
    return b;
  },
  decode: (b) => ({
    proxyIp: ipv4Text(b, 0),
    outboundPort: b.readUInt16BE(4),
    inboundPort: b.readUInt16BE(6),
    hbonePort: b.readUInt16BE(8),
    ...(b.readUInt32LE(12) ? { podPairsMax: b.readUInt32LE(12) } : {}),
  }),
};

/** A host-order __u32 (array indexes, flags). */
export const u32Codec: Codec<number> = {
  size: 4,
  encode: (n) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    return b;
  },
  decode: (b) => b.readUInt32LE(0),
};

/** A per-CPU __u64 counter summed over `cpus` slots. */
export function perCpuCounterCodec(cpus: number): Codec<number> {
  return {
    size: 8 * cpus,
    encode: (n) => {
      const b = Buffer.alloc(8 * cpus);
      b.writeBigUInt64LE(BigInt(n));
      return b;
    },
    decode: (b) => {
      let sum = 0n;
      for (let cpu = 0; cpu < cpus; cpu++) sum += b.readBigUInt64LE(cpu * 8);
      return Number(sum);
    },
  };
}

/** The maps every Ambit object shares, opened from their pins. */
export interface AmbitMaps {
  readonly config: BpfMap<number, RedirectConfig>;
  readonly origDst: BpfMap<SocketAddress4, SocketAddress4>;
  readonly enrolled: BpfMap<string, number>;
  /** Pod IP → how many redirected connections it has open (the programs' per-pod cap). */
  readonly podPairs: BpfMap<string, number>;
  readonly stats: BpfMap<number, number>;
}

export function openAmbitMaps(pinDir: string): Result<AmbitMaps> {
  const config = BpfMap.openPinned(join(pinDir, 'ambit_config'), u32Codec, configCodec);
  if (!config.ok) return config;
  const origDst = BpfMap.openPinned(join(pinDir, 'ambit_origdst'), addr4Codec, addr4Codec);
  if (!origDst.ok) return origDst;
  const enrolled = BpfMap.openPinned(join(pinDir, 'ambit_enrolled'), ipv4Codec, u32Codec);
  if (!enrolled.ok) return enrolled;
  const podPairs = BpfMap.openPinned(join(pinDir, 'ambit_pod_pairs'), ipv4Codec, u32Codec);
  if (!podPairs.ok) return podPairs;
  // The value size of a per-CPU map depends on the machine, so the codec is built from the map.
  const rawStats = call((b) => b.openPinnedMap(join(pinDir, 'ambit_stats')));
  if (!rawStats.ok) return rawStats;
  const stats = BpfMap.wrap(rawStats.value, u32Codec, perCpuCounterCodec(rawStats.value.possibleCpus));
  if (!stats.ok) return stats;
  return { ok: true, value: { config: config.value, origDst: origDst.value, enrolled: enrolled.value, podPairs: podPairs.value, stats: stats.value } };
}

export function writeConfig(maps: AmbitMaps, config: RedirectConfig): Result<void> {
  return maps.config.update(0, config);
}

export function setEnrolled(maps: AmbitMaps, podIp: string, enrolled: boolean): Result<void> {
  if (enrolled) return maps.enrolled.update(podIp, 1);
  const deleted = maps.enrolled.delete(podIp);
  return deleted.ok ? { ok: true, value: undefined } : deleted;
}

export function readCounters(maps: AmbitMaps): Result<Counters> {
  const counters = {} as Record<Reason, number>;
  for (const [index, reason] of REASONS.entries()) {
    const slot = maps.stats.lookup(index);
    if (!slot.ok) return slot;
    counters[reason] = slot.value ?? 0;
  }
  return { ok: true, value: counters };
}


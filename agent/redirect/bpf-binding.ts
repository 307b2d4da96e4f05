// Typed access to native/ambit_bpf.node: loading Ambit's eBPF objects, attaching them idempotently,
// reading and writing their pinned maps in the byte layout of bpf/lib/*.h, and the socket options
// Node lacks. Every call that touches the kernel returns a Result: the caller decides what a
// missing cgroup, an old kernel or a missing capability means for it.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { BpfMap, type Codec } from './bpf-maps.js';
import { call, fail, findUp, toError, type AttachOutcome, type NativeHandle, type Result, type SocketAddress4 } from './bpf-native.js';

export * from './bpf-maps.js';
export type { AttachOutcome, BpfError, Result, SocketAddress4 } from './bpf-native.js';

export const BPFFS = '/sys/fs/bpf';
/** Every Ambit agent's pins live below this directory, one subdirectory per agent (scope). */
export const PIN_PARENT = join(BPFFS, 'ambit');
/** Where one agent (scope) keeps its pinned maps and links. */
export const pinRoot = (scope: string): string => join(PIN_PARENT, scope);

/** The SO_MARK of the agent's own sockets: connect4/6 never redirect them (bpf/lib/config.h). */
export const BYPASS_MARK = 0x539;
/** The policy routing that tc steering needs in the agent's netns (bpf/lib/config.h). */
export const STEER_ROUTING = { mark: 0x200, mask: 0xf00, table: 100 } as const;
/** A mark or mask as ip and nft write it: 0x200. */
export const formatMark = (n: number): string => `0x${n.toString(16)}`;

export type OutboundProgram =
  | 'ambit_connect4'
  | 'ambit_connect6'
  | 'ambit_sockops'
  | 'ambit_getpeername4'
  | 'ambit_getpeername6'
  | 'ambit_getsockopt';
export type InboundProgram = 'ambit_tc_uplink' | 'ambit_tc_pod';
export type DnsProgram =
  | 'ambit_dns_connect4'
  | 'ambit_dns_sendmsg4'
  | 'ambit_dns_recvmsg4'
  | 'ambit_dns_connect6'
  | 'ambit_dns_sendmsg6'
  | 'ambit_dns_recvmsg6';
/**
 * Attached, from bpf/dns_cgroup.bpf.o, to each pod whose DNS is captured (capturesDns), before
 * POD_CGROUP_PROGRAMS so its connect4/6 run first (they also cope with running second). The v6
 * programs capture an AF_INET6 socket asking an IPv4 server as ::ffff:a.b.c.d.
 */
export const DNS_CGROUP_PROGRAMS: readonly DnsProgram[] = [
  'ambit_dns_connect4',
  'ambit_dns_sendmsg4',
  'ambit_dns_recvmsg4',
  'ambit_dns_connect6',
  'ambit_dns_sendmsg6',
  'ambit_dns_recvmsg6',
];
/** Attached to each enrolled pod's cgroup; ambit_getsockopt goes on the agent's own cgroup. */
export const POD_CGROUP_PROGRAMS: readonly OutboundProgram[] = [
  'ambit_connect4',
  'ambit_connect6',
  'ambit_sockops',
  'ambit_getpeername4',
  'ambit_getpeername6',
];

/** Path of a built object, bpf/<name>.bpf.o, found from this module. */
export function bpfObjectPath(name: 'outbound_cgroup' | 'inbound_tc' | 'dns_cgroup'): Result<string> {
  const path = findUp(`bpf/${name}.bpf.o`);
  return path ? { ok: true, value: path } : fail('ENOENT', `bpf/${name}.bpf.o not found: build it with \`make bpf\``);
}

/** Mounts bpffs at /sys/fs/bpf unless it is already there (as Cilium's agent does); true if it mounted it. */
export function ensureBpffs(): Result<boolean> {
  const mounted = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[4] === BPFFS && line.includes(' - bpf '));
  if (mounted) return { ok: true, value: false };
  try {
    execFileSync('mount', ['-t', 'bpf', 'bpf', BPFFS], { stdio: ['ignore', 'ignore', 'pipe'] });
    return { ok: true, value: true };
  } catch (err) {
    return fail('EMOUNT', `mount bpffs at ${BPFFS}: ${(err as Error).message.trim()} (needs CAP_SYS_ADMIN)`);
  }
}

export class BpfObject<P extends string> {
  private constructor(
    private readonly handle: NativeHandle,
    readonly path: string,
    /** Maps whose pins had another definition (an agent version with a different map): created anew, empty. */
    readonly replacedPins: readonly string[],
  ) {}

  /** Loads an object; its maps are pinned in (or reused from) `pinDir`. */
  static load<P extends string>(path: string, pinDir: string): Result<BpfObject<P>> {
    const loaded = call((b) => b.loadObject(path, pinDir));
    return loaded.ok ? { ok: true, value: new BpfObject<P>(loaded.value.handle, path, loaded.value.replacedPins) } : loaded;
  }

  programNames(): Result<string[]> {
    return call((b) => b.programNames(this.handle));
  }

  /** Attaches with a link pinned at `linkPin`; running it again is a no-op, or an in-place upgrade. */
  attachCgroup(program: P, cgroupPath: string, linkPin: string): Result<{ outcome: AttachOutcome; linkId: number }> {
    return call((b) => b.attachCgroup(this.handle, program, cgroupPath, linkPin));
  }

  /** tcx (Linux ≥ 6.6), in the caller's network namespace; idempotent like attachCgroup. */
  attachTcxIngress(program: P, ifname: string, linkPin: string): Result<{ outcome: AttachOutcome; linkId: number }> {
    return call((b) => b.attachTcxIngress(this.handle, program, ifname, linkPin));
  }

  /** Classic clsact + cls_bpf (any kernel), in the caller's network namespace; idempotent. */
  attachTcIngress(program: P, ifname: string, filter: TcFilter = DEFAULT_TC_FILTER): Result<{ outcome: AttachOutcome; progId: number }> {
    return call((b) => b.attachTcIngress(this.handle, program, ifname, filter.handle, filter.priority));
  }

  /** A typed view of one of this object's maps; stays usable after close(). */
  map<K, V>(name: string, key: Codec<K>, value: Codec<V>): Result<BpfMap<K, V>> {
    const opened = call((b) => b.objectMap(this.handle, name));
    return opened.ok ? BpfMap.wrap(opened.value, key, value) : opened;
  }

  /**
   * Runs `program` once (or `repeat` times) on a copy of `packet` with BPF_PROG_RUN, in the caller's
   * network namespace, against this object's real maps: counters move as they would for traffic.
   * For tc programs `packet` starts with the Ethernet header and the kernel builds the skb on the
   * netns' loopback device. Kernels have no BPF_PROG_RUN for cgroup sock_addr, sockops and cgroup
   * sockopt programs: those return ENOTSUPP.
   */
  testRun(program: P, packet: Buffer, options: TestRunOptions = {}): Result<TestRunResult> {
    const ctx = options.skb ? encodeSkbContext(options.skb) : undefined;
    const ran = call((b) =>
      b.progTestRun(this.handle, program, packet, {
        ...(options.repeat !== undefined ? { repeat: options.repeat } : {}),
        ...(ctx ? { ctx } : {}),
      }),
    );
    if (!ran.ok) return ran;
    const { retval, dataOut, duration, ctxOut } = ran.value;
    return {
      ok: true,
      value: {
        // The kernel hands back a __u32; tc verdicts are signed (TC_ACT_UNSPEC is -1).
        retval: retval | 0,
        packet: dataOut,
        durationNs: duration,
        ...(ctxOut && ctxOut.length >= SKB_CONTEXT_BYTES ? { skb: decodeSkbContext(ctxOut) } : {}),
      },
    };
  }

  /** Releases the programs' fds; what is pinned (maps, links) or owned by a qdisc stays attached. */
  close(): void {
    call((b) => b.closeObject(this.handle));
  }
}

/** What a tc program returns (<linux/pkt_cls.h>); the same values serve cls_bpf and tcx. */
export const TC_ACT = { unspec: -1, ok: 0, shot: 2 } as const;

/** The struct __sk_buff fields BPF_PROG_RUN lets user space set for tc programs, and reads back. */
export interface SkbContext {
  readonly mark?: number;
  readonly priority?: number;
  /** The device the skb arrives on; 0 or 1 means the netns' loopback. It must exist in the caller's netns. */
  readonly ifindex?: number;
}

export interface TestRunOptions {
  readonly repeat?: number;
  /** Sets skb fields before the run; the result then carries them as the program left them. */
  readonly skb?: SkbContext;
}

export interface TestRunResult {
  /** The program's return value, signed: for tc, one of TC_ACT. */
  readonly retval: number;
  /** The packet as the program left it. */
  readonly packet: Buffer;
  /** Mean time of one run, in nanoseconds. */
  readonly durationNs: number;
  readonly skb?: Required<SkbContext>;
}

// Offsets in struct __sk_buff (<linux/bpf.h>), which is ABI: fields are only ever appended.
const SKB_MARK = 8;
const SKB_PRIORITY = 32;
const SKB_IFINDEX = 40;
/** Enough of struct __sk_buff to hold the fields above; the kernel zero-fills the rest. */
const SKB_CONTEXT_BYTES = 44;

function encodeSkbContext(skb: SkbContext): Buffer {
  const b = Buffer.alloc(SKB_CONTEXT_BYTES);
  b.writeUInt32LE(skb.mark ?? 0, SKB_MARK);
  b.writeUInt32LE(skb.priority ?? 0, SKB_PRIORITY);
  b.writeUInt32LE(skb.ifindex ?? 0, SKB_IFINDEX);
  return b;
}

function decodeSkbContext(b: Buffer): Required<SkbContext> {
  return { mark: b.readUInt32LE(SKB_MARK), priority: b.readUInt32LE(SKB_PRIORITY), ifindex: b.readUInt32LE(SKB_IFINDEX) };
}

/** Names a classic tc filter; the same pair is needed to replace or detach it. */
export interface TcFilter {
  readonly handle: number;
  readonly priority: number;
}
export const DEFAULT_TC_FILTER: TcFilter = { handle: 1, priority: 1 };

/** Removes a link pin, which detaches the link (unless some process holds its fd); false if absent. */
export function detachLink(linkPin: string): Result<boolean> {
  return call((b) => b.detachLink(linkPin));
}

/**
 * Removes the classic tc filter; `removeQdisc` also deletes the clsact qdisc and with it every
 * other filter on the device, so pass it only for devices Ambit owns. false if nothing was there.
 */
export function detachTcIngress(ifname: string, removeQdisc: boolean, filter: TcFilter = DEFAULT_TC_FILTER): Result<boolean> {
  return call((b) => b.detachTcIngress(ifname, filter.handle, filter.priority, removeQdisc));
}

/** A listening IP_TRANSPARENT socket for tc-steered connections; hand the fd to `server.listen({ fd })`. */
export function transparentListen(ip: string, port: number, backlog = 511): Result<number> {
  return call((b) => b.transparentListen(ip, port, backlog));
}

/** A listening socket inside another network namespace (a pod's); hand the fd to `server.listen({ fd })`. */
export function netnsListen(netnsPath: string, ip: string, port: number, backlog = 511): Result<number> {
  return call((b) => b.netnsListen(netnsPath, ip, port, backlog));
}

/**
 * A connected pair of non-blocking AF_UNIX stream sockets: one end for a native relay, the other for
 * `new Socket({ fd, allowHalfOpen: true })`. Both are the caller's to close.
 */
export function socketPair(): Result<readonly [number, number]> {
  return call((b) => b.socketPair());
}

/** The kernel fd behind a connected net.Socket (Node keeps it on its internal handle). */
export function socketFd(socket: Socket): number | undefined {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  return typeof handle?.fd === 'number' && handle.fd >= 0 ? handle.fd : undefined;
}

/** A finished splice relay: bytes each way, and the first failure if it ended in one. */
export interface SpliceOutcome {
  readonly bytesSent: number;
  readonly bytesReceived: number;
  /** `reason` 'idle-timeout': ended by `idleTimeoutMs`, not by a failure of either socket. */
  readonly error?: { readonly side: 'downstream' | 'upstream'; readonly message: string; readonly reason?: 'idle-timeout' };
}

/** The longest idle timeout the splice thread takes (its milliseconds are 32 bits): about 49 days. */
export const MAX_SPLICE_IDLE_MS = 0xffff_ffff;

/**
 * Relays two connected TCP sockets in the addon's splice thread until both directions end or one
 * fails, or (`idleTimeoutMs` > 0) no byte has moved either way for that long; `done` runs once, on
 * this thread. The caller must have stopped reading both and destroys them on `done` (the addon holds
 * duplicates until then).
 */
export function spliceRelay(downstreamFd: number, upstreamFd: number, done: (outcome: SpliceOutcome) => void, idleTimeoutMs = 0): Result<void> {
  if (!Number.isInteger(idleTimeoutMs) || idleTimeoutMs < 0 || idleTimeoutMs > MAX_SPLICE_IDLE_MS) {
    return fail('EINVAL', `splice relay: idle timeout ${idleTimeoutMs} ms is not a whole number of milliseconds from 0 to ${MAX_SPLICE_IDLE_MS}`);
  }
  return call((b) =>
    b.spliceRelay(downstreamFd, upstreamFd, idleTimeoutMs, (bytesSent, bytesReceived, error) => {
      if (!error) return done({ bytesSent, bytesReceived });
      const message = `${error.operation}: ${error.message}`;
      done({ bytesSent, bytesReceived, error: error.operation === 'idle' ? { side: error.side, message, reason: 'idle-timeout' } : { side: error.side, message } });
    }),
  );
}

/** shutdown(SHUT_RDWR): ends both directions of the socket for every holder of it (a splice relay too). */
export function shutdownSocket(fd: number): Result<void> {
  return call((b) => b.shutdownSocket(fd));
}

/** Where a redirected connection was going (SO_ORIGINAL_DST); undefined when nobody knows. */
export function originalDst(socket: Socket): Result<SocketAddress4 | undefined> {
  const fd = socketFd(socket);
  if (fd === undefined) return fail('EBADF', 'the socket has no fd (closed, or not a TCP socket)');
  return call((b) => {
    const dst = b.originalDst(fd);
    return dst ? { ip: dst.address, port: dst.port } : undefined;
  });
}

/**
 * Starts connecting to `destination` from `sourceIp` (an address that need not be local:
 * IP_TRANSPARENT), with SO_MARK `mark`. The addon binds the socket; Node's own connect() does the
 * rest, so connection errors arrive as the socket's 'error' events (ECONNREFUSED, ...).
 */
export function dialTransparent(sourceIp: string, destination: SocketAddress4, options: { readonly mark?: number; readonly allowHalfOpen: boolean }): Result<Socket> {
  const fd = call((b) => b.transparentSocket(sourceIp, 0, options.mark ?? BYPASS_MARK));
  if (!fd.ok) return fd;
  const socket = new Socket({ fd: fd.value, allowHalfOpen: options.allowHalfOpen });
  socket.connect(destination.port, destination.ip);
  return { ok: true, value: socket };
}

/** dialTransparent, resolved once connected or failed (bounded by `timeoutMs`). */
export function connectTransparent(sourceIp: string, destination: SocketAddress4, mark = BYPASS_MARK, timeoutMs = 10_000): Promise<Result<Socket>> {
  // allowHalfOpen: the relay carries each direction's FIN on its own.
  const dialed = dialTransparent(sourceIp, destination, { mark, allowHalfOpen: true });
  if (!dialed.ok) return Promise.resolve(dialed);
  const socket = dialed.value;
  return new Promise((resolve) => {
    const done = (result: Result<Socket>): void => {
      clearTimeout(timer);
      socket.off('connect', onConnect).off('error', onError);
      resolve(result);
    };
    const onConnect = (): void => done({ ok: true, value: socket });
    const onError = (err: Error): void => {
      socket.destroy();
      done({ ok: false, error: { ...toError(err), message: `connect ${destination.ip}:${destination.port} from ${sourceIp}: ${err.message}` } });
    };
    const timer = setTimeout(() => onError(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })), timeoutMs);
    socket.once('connect', onConnect).once('error', onError);
  });
}

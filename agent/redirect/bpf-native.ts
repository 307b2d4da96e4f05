// Loads native/ambit_bpf.node once and types it exactly as native/src/*.c defines it; every call
// goes through call(), which turns the addon's errno-carrying exceptions into Result values.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type Result<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: BpfError };

/** A failed kernel or libbpf call; `code` is the errno name (EPERM, ENOENT, …) when there is one. */
export interface BpfError {
  readonly code: string;
  readonly errno?: number;
  readonly message: string;
}

/** An IPv4 socket address; `ip` in dotted-quad form. */
export interface SocketAddress4 {
  readonly ip: string;
  readonly port: number;
}

export type AttachOutcome = 'attached' | 'unchanged' | 'updated' | 'reattached';

export declare const nativeHandle: unique symbol;
export type NativeHandle = { readonly [nativeHandle]: true };

export interface NativeMap {
  readonly handle: NativeHandle;
  readonly name: string;
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly valueBytes: number;
  readonly possibleCpus: number;
}

export interface NativeBinding {
  loadObject(path: string, pinRoot: string): { handle: NativeHandle; replacedPins: string[] };
  closeObject(obj: NativeHandle): void;
  programNames(obj: NativeHandle): string[];
  objectMap(obj: NativeHandle, name: string): NativeMap;
  openPinnedMap(path: string): NativeMap;
  closeMap(map: NativeHandle): void;
  attachCgroup(obj: NativeHandle, program: string, cgroupPath: string, linkPin: string): { outcome: AttachOutcome; linkId: number };
  attachTcxIngress(obj: NativeHandle, program: string, ifname: string, linkPin: string): { outcome: AttachOutcome; linkId: number };
  detachLink(linkPin: string): boolean;
  attachTcIngress(obj: NativeHandle, program: string, ifname: string, handle: number, priority: number): { outcome: AttachOutcome; progId: number };
  detachTcIngress(ifname: string, handle: number, priority: number, removeQdisc: boolean): boolean;
  mapLookup(map: NativeHandle, key: Buffer): Buffer | null;
  mapUpdate(map: NativeHandle, key: Buffer, value: Buffer, flags: number): void;
  mapDelete(map: NativeHandle, key: Buffer): boolean;
  mapKeys(map: NativeHandle): Buffer[];
  transparentListen(ip: string, port: number, backlog: number): number;
  transparentSocket(sourceIp: string, sourcePort: number, mark: number): number;
  originalDst(fd: number): { address: string; port: number } | null;
  netnsListen(netnsPath: string, ip: string, port: number, backlog: number): number;
  socketPair(): [number, number];
  progTestRun(obj: NativeHandle, program: string, data: Buffer, options: NativeTestRunOptions): NativeTestRun;
  spliceRelay(downstreamFd: number, upstreamFd: number, idleMs: number, done: (bytesDownToUp: number, bytesUpToDown: number, error: NativeSpliceError | null) => void): void;
  shutdownSocket(fd: number): void;
}

/** How a splice relay failed (native/src/splice.c): which socket, what it was doing, strerror. */
export interface NativeSpliceError {
  readonly side: 'downstream' | 'upstream';
  /** 'idle': no byte moved either way for the relay's idle time (message: ETIMEDOUT's). */
  readonly operation: 'read' | 'write' | 'socket' | 'register' | 'idle';
  readonly message: string;
}

/** BPF_PROG_RUN's inputs as native/src/testrun.c reads them; `ctx` is the program type's context struct. */
export interface NativeTestRunOptions {
  readonly repeat?: number;
  readonly ctx?: Buffer;
  readonly dataOutSize?: number;
}

export interface NativeTestRun {
  readonly retval: number;
  readonly dataOut: Buffer;
  readonly duration: number;
  readonly ctxOut?: Buffer;
}

/** Walks up from this module (agent/redirect in the checkout, dist/agent/redirect when built). */
export function findUp(relative: string): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, relative);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  return undefined;
}

let binding: Result<NativeBinding> | undefined;

function native(): Result<NativeBinding> {
  if (binding) return binding;
  const path = process.env['AMBIT_NATIVE_ADDON'] ?? findUp('native/build/Release/ambit_bpf.node');
  if (!path) {
    return (binding = fail('ENOENT', 'native/build/Release/ambit_bpf.node not found: build it with `make native` (node-gyp in native/; needs libbpf-dev)'));
  }
  try {
    binding = { ok: true, value: createRequire(import.meta.url)(path) as NativeBinding };
  } catch (err) {
    binding = fail('ELOAD', `load ${path}: ${(err as Error).message} (is libbpf1 installed?)`);
  }
  return binding;
}

export function fail(code: string, message: string): { ok: false; error: BpfError } {
  return { ok: false, error: { code, message } };
}

export function toError(err: unknown): BpfError {
  const e = err as { code?: unknown; errno?: unknown; message?: unknown };
  return {
    code: typeof e.code === 'string' ? e.code : 'EUNKNOWN',
    ...(typeof e.errno === 'number' ? { errno: e.errno } : {}),
    message: typeof e.message === 'string' ? e.message : String(err),
  };
}

/** Runs one native call; a thrown error (always errno-based in native/) becomes a value. */
export function call<T>(fn: (b: NativeBinding) => T): Result<T> {
  const b = native();
  if (!b.ok) return b;
  try {
    return { ok: true, value: fn(b.value) };
  } catch (err) {
    return { ok: false, error: toError(err) };
  }
}


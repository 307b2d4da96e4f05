// Loads native/ambit_hbone.node once and types it exactly as native/src/hbone/{binding,calls}.c define
// it; a load failure becomes a message that says which library the node binary lacks and what to do.

import { createRequire } from 'node:module';
import { findUp } from '../../redirect/bpf-native.js';

export declare const handle: unique symbol;
export type EngineHandle = { readonly [handle]: 'engine' };
export type ContextHandle = { readonly [handle]: 'context' };

/** The option names of createEngine (native/src/hbone/binding.c); each defaults in the engine. */
export interface EngineOptions {
  /** Data threads; each owns its connections. */
  readonly threads?: number;
  readonly streamWindow?: number;
  readonly connectionWindow?: number;
  readonly maxFrameSize?: number;
  readonly serverMaxStreams?: number;
  readonly clientMaxStreams?: number;
  readonly serverMaxHeaderList?: number;
  readonly clientMaxHeaderList?: number;
  readonly pingIntervalMs?: number;
  readonly pingTimeoutMs?: number;
  readonly handshakeTimeoutMs?: number;
  readonly idleTimeoutMs?: number;
  readonly responseTimeoutMs?: number;
  /** CONNECTs of one connection that JavaScript has not answered yet. */
  readonly maxPendingConnects?: number;
  readonly maxConnectionsPerIdentity?: number;
  readonly maxConnectionsPerAddress?: number;
  readonly maxConnections?: number;
  /** Bytes one connection may hold: nghttp2's state and the bytes waiting for slow fds. */
  readonly maxConnectionMemory?: number;
  /** An open stream in which no byte moved either way for this long is closed; 0: never. */
  readonly streamIdleTimeoutMs?: number;
}

export type EffectiveOptions = { readonly [K in keyof EngineOptions]-?: number };

/** Events as the addon builds them: headers still a flat [name, value, ...] array. */
export type RawEvent = { readonly type: string; readonly [field: string]: unknown };

export interface HboneNative {
  createEngine(options: EngineOptions, onEvents: (batch: RawEvent[]) => void): EngineHandle;
  destroy(engine: EngineHandle): RawEvent[];
  createContext(chainPem: string, keyPem: string, rootsPem: string): ContextHandle;
  serve(engine: EngineHandle, fd: number, context: ContextHandle, tag: number): number;
  dial(engine: EngineHandle, fd: number, context: ContextHandle, expectedSans: readonly string[]): number;
  acceptPeer(engine: EngineHandle, conn: number, ok: boolean): void;
  answer(engine: EngineHandle, conn: number, stream: number, status: number, fd: number): void;
  openStream(engine: EngineHandle, conn: number, authority: string, headers: readonly string[], fd: number): number;
  resetStream(engine: EngineHandle, conn: number, stream: number): void;
  closeConn(engine: EngineHandle, conn: number): void;
  connStats(engine: EngineHandle, conn: number, request: number): void;
  drain(engine: EngineHandle, deadlineMs: number): void;
  counters(engine: EngineHandle): Record<string, number>;
  options(engine: EngineHandle): EffectiveOptions;
}

export interface EngineError {
  /** EHBONE_* from the engine, an errno name (EBADF, EMFILE), or ELOAD. */
  readonly code: string;
  readonly message: string;
}

export type EngineResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: EngineError };

const ADDON = 'native/build/Release/ambit_hbone.node';
let loaded: EngineResult<HboneNative> | undefined;

/** Why the addon did not load, for an operator. */
export function explainLoadError(path: string, message: string): string {
  const symbol = /undefined symbol: (\w+)/.exec(message)?.[1];
  if (symbol?.startsWith('nghttp2_')) {
    return `${path}: this node binary (${process.version}) does not export nghttp2's ${symbol}, which the HBONE engine takes from the node process; run the agent with the official Node.js binary (make installs one into .node/)`;
  }
  if (symbol && /^(SSL|X509|EVP|BIO|ERR|OPENSSL|PEM|ASN1|GENERAL|i2d)_/.test(symbol)) {
    return `${path}: this node binary (${process.version}) does not export OpenSSL's ${symbol}, which the HBONE engine takes from the node process (it never loads a second libssl); run the agent with the official Node.js binary, or one built with its bundled OpenSSL`;
  }
  return `${path}: ${message}`;
}

export function hboneNative(): EngineResult<HboneNative> {
  if (loaded) return loaded;
  const path = process.env['AMBIT_HBONE_ADDON'] ?? findUp(ADDON);
  if (!path) return (loaded = { ok: false, error: { code: 'ENOENT', message: `${ADDON} not found: build it with \`make native\` (node-gyp in native/; needs libnghttp2-dev)` } });
  try {
    loaded = { ok: true, value: createRequire(import.meta.url)(path) as HboneNative };
  } catch (err) {
    loaded = { ok: false, error: { code: 'ELOAD', message: explainLoadError(path, err instanceof Error ? err.message : String(err)) } };
  }
  return loaded;
}

/** Runs one native call; what it throws (an EHBONE_* or errno error) becomes a value. */
export function attempt<T>(fn: () => T): EngineResult<T> {
  try {
    return { ok: true, value: fn() };
  } catch (err) {
    const e = err as { code?: unknown; message?: unknown };
    return { ok: false, error: { code: typeof e.code === 'string' ? e.code : 'EUNKNOWN', message: typeof e.message === 'string' ? e.message : String(err) } };
  }
}

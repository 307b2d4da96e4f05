// HTTP/2 and timing settings of HBONE, shared by the inbound server and the outbound pool so that both
// ends of a Node↔Node tunnel agree; ztunnel's values (proxy/h2, config.rs) wherever Node can honour them.

import type { Settings } from 'node:http2';

export interface HboneTuning {
  /** SETTINGS_INITIAL_WINDOW_SIZE: how much one stream may send us before we read it. */
  readonly streamWindowBytes: number;
  /** The connection-level receive window, set with `setLocalWindowSize()` once the session is up. */
  readonly connectionWindowBytes: number;
  /** SETTINGS_MAX_FRAME_SIZE we accept. */
  readonly maxFrameSize: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS the server advertises. */
  readonly serverMaxConcurrentStreams: number;
  /** Streams the pool puts on one connection before it opens another (lowered to the peer's SETTINGS). */
  readonly poolMaxStreamsPerConnection: number;
  /** node:http2's per-session memory cap, in MB. */
  readonly maxSessionMemoryMb: number;
  readonly serverMaxHeaderListSize: number;
  readonly clientMaxHeaderListSize: number;
  readonly pingIntervalMs: number;
  readonly pingTimeoutMs: number;
  /** Frames queued for the socket and no movement at all for this long: the session is stuck. */
  readonly stallTimeoutMs: number;
  /** TCP connect, TLS handshake and the peer's first SETTINGS, each bounded by this. */
  readonly connectTimeoutMs: number;
}

const MiB = 1024 * 1024;

export const DEFAULT_TUNING: HboneTuning = {
  streamWindowBytes: 4 * MiB,
  // ztunnel advertises 16 MiB (4× the stream window, so one busy stream cannot starve the others).
  // Node cannot: its Http2Session stops reading the socket while one of its own writes is in
  // progress (node_http2.cc MaybeStopReading, since nodejs/node#29399), so when both peers may have
  // more in flight than the kernel buffers hold (tcp_wmem max 4 MiB here), both block in write and
  // neither reads. Measured Node↔Node on loopback (256 MiB echoed each way, streams of 4 MiB): with a
  // 16 MiB connection window 8 and 100 concurrent streams stalled in every run, with 8 MiB 100 streams
  // did; with 4 MiB, 1, 8 and 100 streams never stalled (test/integration/hbone-bulk.test.ts repeats
  // this). A Rust or Go peer keeps reading, so the smaller window only limits what a ztunnel may send
  // us unacknowledged, and the stall watchdog (watchdog.ts) guards whatever else leads there.
  connectionWindowBytes: 4 * MiB,
  // Node's default (16 KiB) costs a frame header and a JS callback per 16 KiB; 64 KiB measured best in
  // the prototype (reference/node-ecosystem-findings.md §3). ztunnel's 1 MiB is not measured here yet.
  maxFrameSize: 64 * 1024,
  serverMaxConcurrentStreams: 200,
  poolMaxStreamsPerConnection: 100,
  // The 10 MB default made a Node client reset its own streams against a Go server with 100 busy streams.
  maxSessionMemoryMb: 64,
  serverMaxHeaderListSize: 64 * 1024,
  clientMaxHeaderListSize: 16 * 1024,
  pingIntervalMs: 10_000,
  pingTimeoutMs: 20_000,
  stallTimeoutMs: 15_000,
  connectTimeoutMs: 10_000,
};

export function resolveTuning(overrides: Partial<HboneTuning> = {}): HboneTuning {
  return { ...DEFAULT_TUNING, ...overrides };
}

export function serverSettings(tuning: HboneTuning): Settings {
  return {
    initialWindowSize: tuning.streamWindowBytes,
    maxFrameSize: tuning.maxFrameSize,
    maxConcurrentStreams: tuning.serverMaxConcurrentStreams,
    maxHeaderListSize: tuning.serverMaxHeaderListSize,
  };
}

export function clientSettings(tuning: HboneTuning): Settings {
  return {
    enablePush: false,
    initialWindowSize: tuning.streamWindowBytes,
    maxFrameSize: tuning.maxFrameSize,
    maxHeaderListSize: tuning.clientMaxHeaderListSize,
  };
}

/** TLS as ztunnel: 1.3 only, its two AES-GCM suites, ALPN h2 only. */
export const HBONE_TLS = {
  minVersion: 'TLSv1.3',
  maxVersion: 'TLSv1.3',
  // node:tls takes TLS 1.3 suite names in `ciphers`.
  ciphers: 'TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256',
  alpn: ['h2'],
} as const;

export const HBONE_PORT = 15008;

// HTTP/2 and timing settings of HBONE, shared by the inbound server and the outbound pool (the native
// engine applies them); ztunnel's values (proxy/h2, config.rs).

export interface HboneTuning {
  /** SETTINGS_INITIAL_WINDOW_SIZE: how much one stream may send us before we read it. */
  readonly streamWindowBytes: number;
  /** The connection-level receive window (a WINDOW_UPDATE on stream 0 right after the SETTINGS). */
  readonly connectionWindowBytes: number;
  /** SETTINGS_MAX_FRAME_SIZE we accept. */
  readonly maxFrameSize: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS the server advertises. */
  readonly serverMaxConcurrentStreams: number;
  /** Streams the pool puts on one connection before it opens another (lowered to the peer's SETTINGS). */
  readonly poolMaxStreamsPerConnection: number;
  readonly serverMaxHeaderListSize: number;
  readonly clientMaxHeaderListSize: number;
  readonly pingIntervalMs: number;
  readonly pingTimeoutMs: number;
  /** TCP connect, TLS handshake and the peer's first SETTINGS, each bounded by this. */
  readonly connectTimeoutMs: number;
}

const MiB = 1024 * 1024;

export const DEFAULT_TUNING: HboneTuning = {
  streamWindowBytes: 4 * MiB,
  // ztunnel's 16 MiB (4x the stream window, so one busy stream cannot starve the others). node:http2
  // stalled with windows this large (both peers blocked writing, nodejs/node#29399); the engine always
  // reads, and 64 MiB each way against node:http2 and itself never stalled
  // (test/integration/hbone-engine-flow.test.ts).
  connectionWindowBytes: 16 * MiB,
  // 64 KiB measured best for node:http2 (reference/node-ecosystem-findings.md §3), kept for the engine
  // until the bench says otherwise; ztunnel advertises 1 MiB.
  maxFrameSize: 64 * 1024,
  serverMaxConcurrentStreams: 200,
  poolMaxStreamsPerConnection: 100,
  serverMaxHeaderListSize: 64 * 1024,
  clientMaxHeaderListSize: 16 * 1024,
  pingIntervalMs: 10_000,
  pingTimeoutMs: 20_000,
  connectTimeoutMs: 10_000,
};

export function resolveTuning(overrides: Partial<HboneTuning> = {}): HboneTuning {
  return { ...DEFAULT_TUNING, ...overrides };
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

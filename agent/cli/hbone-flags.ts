// `ambit run`'s flags for the native HBONE engine: its data threads and the limits it holds every peer
// to (a pending CONNECT, a connection per identity or source address, all connections, the memory of one
// connection, an idle connection), each with the engine's own default.

import { parseDurationMs } from '../config/formats.js';
import type { EngineOptions } from '../tunnel/engine/native.js';

export const HBONE_FLAGS = {
  'data-threads': { type: 'string' },
  'hbone-max-pending-connects': { type: 'string' },
  'hbone-max-connections': { type: 'string' },
  'hbone-max-connections-per-identity': { type: 'string' },
  'hbone-max-connections-per-address': { type: 'string' },
  'hbone-max-connection-memory': { type: 'string' },
  'hbone-idle-timeout': { type: 'string' },
} as const;

/** The engine's defaults (native/src/hbone/engine.c), printed in the usage. */
export const HBONE_DEFAULTS = {
  threads: 1,
  maxPendingConnects: 100,
  maxConnections: 16384,
  maxConnectionsPerIdentity: 1024,
  maxConnectionsPerAddress: 1024,
  maxConnectionMemory: 24 * 1024 * 1024,
  idleTimeoutMs: 5 * 60_000,
} as const;

export const HBONE_USAGE = `  --data-threads <n>           threads of the native HBONE engine (TLS 1.3 and HTTP/2), each
                               owning its connections (default: ${HBONE_DEFAULTS.threads}; bench/README.md)
  --hbone-max-pending-connects <n>
                               CONNECTs one HBONE connection may have waiting for the agent's
                               answer; past it they are refused (default: ${HBONE_DEFAULTS.maxPendingConnects})
  --hbone-max-connections <n>  HBONE connections the engine holds at once (default: ${HBONE_DEFAULTS.maxConnections})
  --hbone-max-connections-per-identity <n>
                               inbound HBONE connections one client identity may hold (default: ${HBONE_DEFAULTS.maxConnectionsPerIdentity})
  --hbone-max-connections-per-address <n>
                               inbound HBONE connections one source address may hold (default: ${HBONE_DEFAULTS.maxConnectionsPerAddress})
  --hbone-max-connection-memory <bytes>
                               what one HBONE connection may buffer, e.g. 24Mi (default: 24Mi)
  --hbone-idle-timeout <duration>
                               an HBONE connection with no stream is closed after this, as
                               ztunnel's pool (default: 5m)
Each limit is counted in ambit_hbone_limited_total{limit} and logged once per peer with what to do.
`;

export type HboneFlagsResult = { readonly ok: true; readonly options: EngineOptions } | { readonly ok: false; readonly message: string };

type HboneFlagValues = { readonly [K in keyof typeof HBONE_FLAGS]?: string | undefined };

const COUNTS: readonly [keyof EngineOptions, keyof typeof HBONE_FLAGS, number][] = [
  ['threads', 'data-threads', 64],
  ['maxPendingConnects', 'hbone-max-pending-connects', 1_000_000],
  ['maxConnections', 'hbone-max-connections', 1_000_000],
  ['maxConnectionsPerIdentity', 'hbone-max-connections-per-identity', 1_000_000],
  ['maxConnectionsPerAddress', 'hbone-max-connections-per-address', 1_000_000],
];

const UNITS: Readonly<Record<string, number>> = { '': 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 };

/** Reads the engine flags; a mistake comes back as a message naming the flag. Absent flags keep the engine's defaults. */
export function parseHboneFlags(values: HboneFlagValues): HboneFlagsResult {
  const options: Record<string, number> = {};
  for (const [field, flag, max] of COUNTS) {
    const text = values[flag];
    if (text === undefined) continue;
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1 || n > max) return { ok: false, message: `--${flag} ${JSON.stringify(text)}: expected a whole number from 1 to ${max}` };
    options[field] = n;
  }
  const memory = values['hbone-max-connection-memory'];
  if (memory !== undefined) {
    const match = /^(\d+)(Ki|Mi|Gi)?$/.exec(memory.trim());
    const bytes = match ? Number(match[1]) * UNITS[match[2] ?? '']! : NaN;
    if (!(bytes >= 64 * 1024 && bytes <= 2 ** 32 - 1)) {
      return { ok: false, message: `--hbone-max-connection-memory ${JSON.stringify(memory)}: expected bytes from 64Ki to 4Gi, such as 24Mi` };
    }
    options['maxConnectionMemory'] = bytes;
  }
  const idle = values['hbone-idle-timeout'];
  if (idle !== undefined) {
    const ms = parseDurationMs(idle);
    if (ms === undefined || ms < 1000) return { ok: false, message: `--hbone-idle-timeout ${JSON.stringify(idle)}: expected a duration of at least 1s, such as 5m` };
    options['idleTimeoutMs'] = ms;
  }
  return { ok: true, options: options as EngineOptions };
}

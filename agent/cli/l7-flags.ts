// `ambit run`'s flags for the L7 proxies: the HTTP servers' header, request and idle timeouts, and the
// path normalization applied to every request before routing, policy and forwarding.

import { parseDurationMs } from '../config/formats.js';
import { DEFAULT_HTTP_SERVER_LIMITS, type HttpServerLimits, limitsProblem } from '../l7/proxy/http-servers.js';
import { DEFAULT_PATH_NORMALIZATION, PATH_NORMALIZATIONS, type PathNormalization } from '../l7/request-target.js';

export const L7_FLAGS = {
  'http-headers-timeout': { type: 'string' },
  'http-request-timeout': { type: 'string' },
  'http-idle-timeout': { type: 'string' },
  'path-normalization': { type: 'string' },
} as const;

export const L7_USAGE = `  --http-headers-timeout <duration>
                               how long an HTTP client may take to send a request's headers (and
                               a new connection its first bytes) before it is cut with 408
                               (default: ${DEFAULT_HTTP_SERVER_LIMITS.headersTimeoutMs / 1000}s, Node's)
  --http-request-timeout <duration>
                               how long an HTTP/1.1 client may take to send a whole request, body
                               included; 0: no limit (default: ${DEFAULT_HTTP_SERVER_LIMITS.requestTimeoutMs / 1000}s, Node's). A VirtualService
                               timeout still bounds each route's answer
  --http-idle-timeout <duration>
                               a kept-alive HTTP connection with no request in flight is closed
                               after this; 0: never (default: ${DEFAULT_HTTP_SERVER_LIMITS.idleTimeoutMs / 3_600_000}h, Istio's)
  --path-normalization <option>
                               NONE, BASE (Istio's default), MERGE_SLASHES or
                               DECODE_AND_MERGE_SLASHES, as Istio's meshConfig.pathNormalization
                               (default: ${DEFAULT_PATH_NORMALIZATION}; docs/security.md)
`;

export type L7FlagsResult =
  | { readonly ok: true; readonly limits: HttpServerLimits; readonly pathNormalization: PathNormalization }
  | { readonly ok: false; readonly message: string };

type L7FlagValues = { readonly [K in keyof typeof L7_FLAGS]?: string | undefined };

/** Reads the L7 flags; a mistake comes back as a message naming the flag. */
export function parseL7Flags(values: L7FlagValues): L7FlagsResult {
  const durations: [keyof HttpServerLimits, keyof typeof L7_FLAGS][] = [
    ['headersTimeoutMs', 'http-headers-timeout'],
    ['requestTimeoutMs', 'http-request-timeout'],
    ['idleTimeoutMs', 'http-idle-timeout'],
  ];
  const limits: Record<keyof HttpServerLimits, number> = { ...DEFAULT_HTTP_SERVER_LIMITS };
  for (const [field, flag] of durations) {
    const value = values[flag];
    if (value === undefined) continue;
    const ms = value.trim() === '0' ? 0 : parseDurationMs(value);
    if (ms === undefined || ms < 0) return { ok: false, message: `--${flag} ${JSON.stringify(value)}: expected a duration such as 500ms, 60s, 1h (or 0)` };
    limits[field] = ms;
  }
  const problem = limitsProblem(limits);
  if (problem) {
    return { ok: false, message: `--http-headers-timeout ${limits.headersTimeoutMs}ms, --http-request-timeout ${limits.requestTimeoutMs}ms: ${problem}` };
  }
  const mode = values['path-normalization'] ?? DEFAULT_PATH_NORMALIZATION;
  if (!(PATH_NORMALIZATIONS as readonly string[]).includes(mode)) {
    return { ok: false, message: `--path-normalization ${JSON.stringify(mode)}: expected ${PATH_NORMALIZATIONS.join(', ')}` };
  }
  return { ok: true, limits, pathNormalization: mode as PathNormalization };
}

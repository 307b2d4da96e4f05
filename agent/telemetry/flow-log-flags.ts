// `ambit run`'s flow-log flags: where the per-connection and per-request flow records go, and how the
// file rotates.

import type { FlowLogTarget } from './flow-log.js';

export const FLOW_LOG_FLAGS = {
  'flow-log': { type: 'string' },
  'flow-log-max-size': { type: 'string' },
  'flow-log-files': { type: 'string' },
} as const;

export const FLOW_LOG_USAGE = `  --flow-log <stdout|path>      one JSON line per connection and per request, Hubble's flow shape
                               (docs/observability.md); default: none
  --flow-log-max-size <MiB>     rotate the file past this size (default: 100)
  --flow-log-files <n>          rotated files kept beside it, path.1 … path.<n> (default: 5)
`;

export type FlowLogFlagsResult = { readonly ok: true; readonly flowLog?: FlowLogTarget } | { readonly ok: false; readonly message: string };

export function parseFlowLogFlags(values: { readonly 'flow-log'?: string | undefined; readonly 'flow-log-max-size'?: string | undefined; readonly 'flow-log-files'?: string | undefined }): FlowLogFlagsResult {
  const where = values['flow-log'];
  const size = values['flow-log-max-size'];
  const files = values['flow-log-files'];
  if (where === undefined || where === '') {
    if (size !== undefined || files !== undefined) return { ok: false, message: '--flow-log-max-size and --flow-log-files need a file: pass --flow-log <path> too' };
    return { ok: true };
  }
  if (where === 'stdout') {
    if (size !== undefined || files !== undefined) return { ok: false, message: '--flow-log stdout is not rotated: --flow-log-max-size and --flow-log-files apply to a file' };
    return { ok: true, flowLog: { kind: 'stdout' } };
  }
  const mib = size === undefined ? 100 : Number(size);
  if (!Number.isFinite(mib) || mib <= 0) return { ok: false, message: `--flow-log-max-size ${JSON.stringify(size)}: expected a size in MiB above 0, such as 100` };
  const keep = files === undefined ? 5 : Number(files);
  if (!Number.isInteger(keep) || keep < 1 || keep > 100) return { ok: false, message: `--flow-log-files ${JSON.stringify(files)}: expected a whole number from 1 to 100` };
  return { ok: true, flowLog: { kind: 'file', path: where, maxBytes: Math.round(mib * 1024 * 1024), keep } };
}

// The result of checking one xDS resource: the translation or the reason it is refused, which goes
// into the NACK and the log; and what every translated object carries.

import type { SourceLocation } from '../../config/kubernetes.js';

export type Translated<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };

export const ok = <T>(value: T): Translated<T> => ({ ok: true, value });
export const reject = (reason: string): Translated<never> => ({ ok: false, reason });

/** Istio's defaults for a workload that leaves these empty. */
export const DEFAULT_TRUST_DOMAIN = 'cluster.local';
export const DEFAULT_SERVICE_ACCOUNT = 'default';

/** Labels the snapshot translation writes on workloads; never read from anywhere else. */
export const SERVICE_MEMBER_LABEL_PREFIX = 'xds.ambit.io/service:';
export const POLICY_SELECTED_LABEL_PREFIX = 'xds.ambit.io/authorization:';

/** Where a translated object came from, in diagnostics: `xds:<type>/<name>`. */
export function xdsLocation(type: 'Address' | 'Authorization', name: string): SourceLocation {
  return { file: `xds:${type}/${name}`, line: 0 };
}

// What this agent is, as ztunnel's /config_dump `version` says it (src/version.rs BuildInfo): the same
// keys, so tooling that reads ztunnel's build information reads Ambit's.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BuildInfo {
  readonly version: string;
  /** AMBIT_GIT_REVISION when the build set it; `unknown` otherwise. */
  readonly gitRevision: string;
  /** ztunnel's key; Ambit is no Rust program, so it stays empty and nodeVersion says what runs it. */
  readonly rustVersion: string;
  readonly buildProfile: string;
  readonly buildStatus: string;
  /** ISTIO_META_ISTIO_VERSION, as ztunnel reads it; `unknown` when unset. */
  readonly istioVersion: string;
  /** Node's TLS library, which every handshake of the agent uses. */
  readonly cryptoProvider: string;
  readonly nodeVersion: string;
}

let cached: BuildInfo | undefined;

/** Read once: the package and the environment do not change while the agent runs. */
export function buildInfo(): BuildInfo {
  const env = process.env;
  cached ??= {
    version: packageVersion() ?? 'unknown',
    gitRevision: env['AMBIT_GIT_REVISION'] || 'unknown',
    rustVersion: '',
    buildProfile: 'release',
    buildStatus: env['AMBIT_BUILD_STATUS'] || 'unknown',
    istioVersion: env['ISTIO_META_ISTIO_VERSION'] || 'unknown',
    cryptoProvider: `openssl ${process.versions.openssl ?? 'unknown'}`,
    nodeVersion: process.version,
  };
  return cached;
}

/** package.json's version: two levels up from agent/admin in the checkout, three from dist/agent/admin. */
function packageVersion(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++, dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'ambit' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not here: look one level up
    }
  }
  return undefined;
}

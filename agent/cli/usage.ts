// Argument checks shared by the `ambit` subcommands, and the error type for a command called wrongly.

import { isIP } from 'node:net';
import { parseDurationMs } from '../config/formats.js';
import type { ListenAddress } from '../node-agent.js';

export function parseListenAddress(flag: string, value: string): ListenAddress {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(value);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (!host || isIP(host) === 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`${flag} ${JSON.stringify(value)}: expected an IP address and port such as 0.0.0.0:15021 or [::1]:15021`);
  }
  return { host, port };
}

/** A mistake in how the command was called; main prints it with the usage hint and exits 2. */
export class UsageError extends Error {}

/** A duration flag in Istio's form (`500ms`, `5s`, `1h30m`), in milliseconds; must be positive. */
export function parseDuration(flag: string, value: string): number {
  const ms = parseDurationMs(value);
  if (ms === undefined || ms <= 0) throw new UsageError(`${flag} ${JSON.stringify(value)}: expected a positive duration such as 500ms, 30s, 24h`);
  return ms;
}

/** A flag that takes one of a few words. */
export function parseChoice<const T extends string>(flag: string, value: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(value)) {
    const list = choices.length > 1 ? `${choices.slice(0, -1).join(', ')} or ${choices.at(-1)}` : choices.join('');
    throw new UsageError(`${flag} ${JSON.stringify(value)}: expected ${list}`);
  }
  return value as T;
}

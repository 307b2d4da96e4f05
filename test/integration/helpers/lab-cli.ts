// Drives the built `ambit` command the way a user does, for the lab tests: every call is bounded in
// time and returns the exit code and output instead of throwing.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The built CLI; AMBIT_TEST_MAIN names another build, to check a test fails with a mechanism removed without touching dist/. */
export const AMBIT_MAIN = process.env['AMBIT_TEST_MAIN'] ?? fileURLToPath(new URL('../../../dist/agent/cli/main.js', import.meta.url));

export interface CommandResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function requireBuiltAmbit(): void {
  if (!existsSync(AMBIT_MAIN)) throw new Error(`${AMBIT_MAIN} is missing: run \`make build\` (make test does) before the integration tests`);
}

/** Lab tests need root for namespaces and cgroups; without it they fail, loudly, instead of skipping. */
export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error('integration tests need root (network namespaces, cgroups, eBPF); run `make test` as root');
  }
}

export function ambit(args: readonly string[], timeoutMs = 60_000): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [AMBIT_MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Polls `check` until it returns a value or the deadline passes. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

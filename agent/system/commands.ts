// Running the host tools the agent and the lab drive (ip, nft, nsenter): found on the usual root PATH
// even when the caller's PATH lacks sbin, and run with errors that say which command failed and why.

import { execFile, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

const SEARCH_PATH = [...(process.env['PATH'] ?? '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin', '/bin'];

/** Where `tool` lives; root's PATH from a non-login shell often lacks /usr/sbin, where ip and nft are. */
export function which(tool: string): string | undefined {
  for (const dir of SEARCH_PATH) {
    if (!dir) continue;
    const candidate = `${dir}/${tool}`;
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; keep looking
    }
  }
  return undefined;
}

export function requireTool(tool: string, debianPackage: string): string {
  const path = which(tool);
  if (!path) throw new Error(`\`${tool}\` is not installed: run \`make setup\` (or apt-get install ${debianPackage})`);
  return path;
}

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`\`${command}\` failed (exit ${exitCode ?? 'signal'}): ${stderr.trim() || 'no output'}`);
  }
}

/** Runs a command to completion, feeding `input` on stdin; rejects with CommandError on failure. */
export function runCommand(file: string, args: readonly string[], input?: string, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new CommandError([file, ...args].join(' '), typeof err.code === 'number' ? err.code : null, stderr || err.message));
      else resolve(stdout);
    });
    // A command that exits without reading all of its input (nft refusing before it parses) closes
    // the pipe: EPIPE here, which its exit status already reports. Unhandled, it would end the agent.
    child.stdin?.on('error', () => undefined);
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Runs a command with the terminal attached (for `lab exec`), resolving with its exit code. */
export function runAttached(file: string, args: readonly string[], env?: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: 'inherit', env: env ?? process.env });
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 + 15 : 1)));
  });
}

// The `ambit` command with its output piped into a reader that is already gone (`ambit lab status |
// head -3`): it must finish quietly with its own exit status, not die on an unhandled EPIPE.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../agent/cli/main.ts', import.meta.url));

/** Runs the CLI with stdout a pipe whose read end is closed before the CLI writes anything. */
function runWithClosedStdout(args: readonly string[]): Promise<{ status: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    // Closing our end now, while the child is still loading, makes its first write fail with EPIPE.
    child.stdout.destroy();
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('error', reject);
    child.once('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stderr });
    });
  });
}

describe('CLI output into a closed pipe', () => {
  for (const args of [['help'], ['lab', '--help'], ['zc', '--help']]) {
    it(`ambit ${args.join(' ')} finishes with status 0 and nothing on stderr`, async () => {
      const run = await runWithClosedStdout(args);
      assert.equal(run.stderr, '', 'no EPIPE trace');
      assert.equal(run.signal, null);
      assert.equal(run.status, 0);
    });
  }
});

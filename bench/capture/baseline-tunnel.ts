// A baseline tunnel (HAProxy, a Node floor): its certificates, made for the run and removed after it,
// and its processes, one per node, run in the foreground in that node's network namespace, watched so
// that a run never measures a dead process, and killed at the end (also from a signal handler, so
// stopping is synchronous).

import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { nodeNetns, programOf } from './lab.js';
import type { NodeName } from './plan.js';
import { makeTunnelCertificates } from './tunnel-certificates.js';

interface Running {
  readonly node: NodeName;
  readonly child: ChildProcess;
  stderr: string;
  exited?: string;
}

export class BaselineTunnel {
  readonly #running: Running[] = [];
  #certificates: string | undefined;

  /**
   * @param what names the processes in errors ("haproxy") and their certificates' directory
   * @param program the pid's executable once it runs: `ip netns exec` execs in place, so the pid
   *   becomes the program's own, and a pid running another is not the process measured
   */
  constructor(
    private readonly what: string,
    private readonly program: string,
  ) {}

  /** A fresh certificate directory for this run (tunnel-certificates.ts), removed by `stop`. */
  makeCertificates(): string {
    this.#certificates = makeTunnelCertificates(`ambit-bench-${this.what.replace(/\W+/g, '-')}-`);
    return this.#certificates;
  }

  /** The directory `makeCertificates` made. */
  get certificates(): string {
    if (!this.#certificates) throw new Error(`${this.what} has no certificates: it was not started, or was stopped`);
    return this.#certificates;
  }

  start(node: NodeName, argv: readonly string[], env: NodeJS.ProcessEnv = process.env): void {
    const child = spawn('ip', ['netns', 'exec', nodeNetns(node), ...argv], { stdio: ['ignore', 'ignore', 'pipe'], env });
    const entry: Running = { node, child, stderr: '' };
    child.stderr!.on('data', (d: Buffer) => (entry.stderr = (entry.stderr + d.toString()).slice(-4000)));
    child.once('exit', (code, signal) => (entry.exited = `exited ${code ?? signal}`));
    this.#running.push(entry);
  }

  /** Each node's pid, once each is the program itself and still running; else throws why not. */
  pids(): Record<NodeName, number> {
    const pids = {} as Record<NodeName, number>;
    for (const r of this.#running) {
      const pid = r.child.pid;
      // Gone, or not yet the program itself: reported with its stderr.
      const program = programOf(pid);
      if (r.exited || !pid || program !== this.program) {
        throw new Error(`${this.what} on ${r.node} is not running (${r.exited ?? `pid ${pid ?? 'missing'} runs "${program}"`}):\n${r.stderr}`);
      }
      pids[r.node] = pid;
    }
    return pids;
  }

  /** Waits until every process has printed a line matching `line` on stderr; throws what they printed if not within `timeoutMs`. */
  async ready(line: RegExp, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#running.every((r) => line.test(r.stderr))) {
      if (Date.now() > deadline || this.#running.some((r) => r.exited)) throw new Error(`${this.what} did not start:\n${this.stderr()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** What the processes printed, for a failure message. */
  stderr(): string {
    return this.#running.map((r) => `${this.what} ${r.node} ${r.exited ?? 'running'}: ${r.stderr.trim() || '(no output)'}`).join('\n');
  }

  /** A hard stop: nothing to drain. */
  stop(): void {
    for (const r of this.#running) if (!r.exited) r.child.kill('SIGKILL');
    this.#running.length = 0;
    if (this.#certificates) rmSync(this.#certificates, { recursive: true, force: true });
    this.#certificates = undefined;
  }
}

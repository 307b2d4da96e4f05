// A long-running command in a lab pod or node that prints one JSON object per line, and a wait on the
// first line that matches: tests wait on what the process reports instead of sleeping.

import { type ChildProcess, spawn } from 'node:child_process';
import { AMBIT_MAIN, eventually } from './lab-cli.js';

export type Report = Readonly<Record<string, unknown>>;

export class LabProcess {
  readonly #child: ChildProcess;
  #out = '';

  constructor(lab: string, target: string, argv: readonly string[]) {
    this.#child = spawn(process.execPath, [AMBIT_MAIN, 'lab', 'exec', '--lab', lab, target, '--', ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child.stdout!.on('data', (d: Buffer) => (this.#out += d.toString()));
    this.#child.stderr!.on('data', (d: Buffer) => (this.#out += d.toString()));
  }

  /** The first reported line that `matches`; fails with everything the process printed when none comes within `timeoutMs`. */
  async line(what: string, matches: (report: Report) => boolean, timeoutMs = 20_000): Promise<Report> {
    const find = (): Report | undefined => this.#reports().find(matches);
    try {
      return await eventually(what, async () => {
        const found = find();
        if (found === undefined && this.#child.exitCode !== null) throw new Error(`the process exited (${this.#child.exitCode}) before ${what}`);
        return found;
      }, timeoutMs);
    } catch (err) {
      throw new Error(`${(err as Error).message}; the process printed:\n${this.#out.slice(-2000)}`);
    }
  }

  /** Every line reported so far. */
  reports(): Report[] {
    return this.#reports();
  }

  #reports(): Report[] {
    return this.#out.split('\n').flatMap((l) => {
      try {
        const v: unknown = JSON.parse(l);
        return typeof v === 'object' && v !== null ? [v as Report] : [];
      } catch {
        return [];
      }
    });
  }

  kill(): void {
    this.#child.kill('SIGKILL');
  }
}

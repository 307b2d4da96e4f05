// A TCP connection held open from inside a lab pod, as a user's long-lived client: it writes a byte
// every 100 ms, counts echoes, and reports on its own clock when and how its socket closed.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { AMBIT_MAIN, eventually } from './lab-cli.js';

/**
 * How the held connection ended, as the client process saw it: `peer` (the other side closed: FIN
 * or reset, `error` says which), `self` (finish() ended it and the peer completed the close), `limit`
 * (still open when the hold ran out), or `crashed` (the client process died without saying: never a close
 * by the peer). `at` is the client's Date.now() when its socket closed (the pod shares the host's clock).
 */
export type HeldEnd =
  | { readonly closedBy: 'peer' | 'self' | 'limit'; readonly at: number; readonly echoed: number; readonly sent: number; readonly error: string }
  | { readonly closedBy: 'crashed'; readonly at: number; readonly output: string };

const CLIENT = `const [ip, port, limitMs] = process.argv.slice(1);
const s = require('net').connect(Number(port), ip); let n = 0, sent = 0, error = '', finishing = false, writer;
const end = (closedBy) => { console.log('end ' + JSON.stringify({ closedBy, at: Date.now(), echoed: n, sent, error })); process.exit(0); };
s.on('connect', () => { console.log('open ' + Date.now()); writer = setInterval(() => { s.write('x'); sent++; }, 100); setInterval(() => console.log('alive ' + n), 100); });
s.on('data', (d) => (n += d.length)); s.on('error', (e) => (error = e.code || e.message));
s.on('close', () => end(finishing ? 'self' : 'peer'));
process.stdin.on('data', () => { finishing = true; clearInterval(writer); s.end(); });
setTimeout(() => end('limit'), Number(limitMs));`;

export class HeldConnection {
  readonly #child: ChildProcess;
  #out = '';
  readonly ended: Promise<HeldEnd>;

  constructor(lab: string, pod: string, ip: string, port: number, limitMs: number) {
    this.#child = spawn(process.execPath, [AMBIT_MAIN, 'lab', 'exec', '--lab', lab, pod, '--', 'node', '-e', CLIENT, ip, String(port), String(limitMs)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    this.#child.stdout!.on('data', (d: Buffer) => (this.#out += d.toString()));
    this.ended = new Promise((resolve) => {
      this.#child.once('exit', () => {
        const line = /^end (.*)$/m.exec(this.#out);
        resolve(line ? (JSON.parse(line[1]!) as HeldEnd) : { closedBy: 'crashed', at: Date.now(), output: this.#out.slice(-500) });
      });
    });
  }

  /** Bytes echoed so far, from the last "alive" line. */
  get echoed(): number {
    const all = [...this.#out.matchAll(/^alive (\d+)$/gm)];
    return all.length > 0 ? Number(all.at(-1)![1]) : 0;
  }

  /** When the client's socket connected, on its own clock. */
  get openedAt(): number {
    const line = /^open (\d+)$/m.exec(this.#out);
    assert.ok(line, 'the held connection never opened');
    return Number(line[1]);
  }

  async opened(): Promise<void> {
    // `lab exec` starts a Node process in the pod first: seconds on a loaded machine.
    await eventually('the held connection to open and echo', async () => (this.echoed > 0 ? true : this.#child.exitCode !== null ? assert.fail(`the held connection ended before it echoed: ${this.#out}`) : undefined), 30_000);
  }

  /** Waits until `more` further bytes came back: the connection still works. */
  async stillEchoes(more = 3): Promise<void> {
    const from = this.echoed;
    await eventually(`the held connection to echo ${more} more bytes`, async () => (this.echoed >= from + more ? true : undefined), 5_000);
  }

  /** Stops writing and half-closes, as a client that is done; `ended` then says whether the peer finished the close. */
  finish(): void {
    this.#child.stdin!.end('finish\n');
  }

  kill(): void {
    this.#child.kill('SIGKILL');
  }
}

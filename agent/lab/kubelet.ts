// The lab's kubelet: runs every container of every pod inside the pod's network namespace and cgroup,
// and one `ambit run` per node inside the node's namespace; restarts what exits with a growing backoff,
// runs readiness probes from the node, and writes what it sees to status.json for `lab up` and `status`.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, openSync, closeSync, writeSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { procsFile } from '../system/cgroups.js';
import { requireTool, runCommand } from '../system/commands.js';
import type { LabProbe } from './plan.js';
import { STARTING_NICENESS } from '../lifecycle/handover.js';

/** The first restart is immediate (a node agent must come back fast); later ones back off. */
const BACKOFF_START_MS = 0;
const BACKOFF_FIRST_DELAY_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;
/** A process that ran this long is healthy again: its next crash starts the backoff from the beginning. */
const BACKOFF_RESET_AFTER_MS = 30_000;

export interface ProcessSpec {
  /** `bookinfo/productpage-v1/productpage` for containers, `node/node-a` for agents. */
  readonly id: string;
  /** The command as the user wrote it, for the log; `argv` adds the cgroup and namespace plumbing. */
  readonly command: string;
  readonly argv: readonly string[];
  readonly cwd: string;
  readonly env: NodeJS.ProcessEnv;
  readonly cgroup: string;
  readonly log: string;
  readonly probe?: () => Promise<boolean>;
  readonly probePeriodMs: number;
}

export interface ProcessStatus {
  readonly id: string;
  readonly pid?: number;
  readonly state: 'running' | 'waiting' | 'stopped';
  /** Ran at least once; a container that keeps exiting has started all the same. */
  readonly started: boolean;
  /** Readiness is decided by a probe; without one a running process counts as ready. */
  readonly probed: boolean;
  readonly ready: boolean;
  readonly restarts: number;
  /** During an upgrade (`ambit lab upgrade`): the previous process, draining beside the new one until it exits. */
  readonly retiringPid?: number;
  readonly lastExit?: { readonly code: number | null; readonly signal: string | null; readonly at: string };
}

/** Builds the argv that puts a process in a cgroup, then into a network namespace, then execs it. */
export function inCgroupAndNetns(cgroup: string, enter: readonly string[], argv: readonly string[]): string[] {
  // The shell joins the cgroup first: `ip netns exec` remounts /sys, after which the cgroup tree is gone.
  return ['/bin/sh', '-c', 'echo $$ > "$1" || exit 125; shift; exec "$@"', 'ambit-lab', procsFile(cgroup), ...enter, ...argv];
}

export function enterPodNetns(netns: string): string[] {
  return [requireTool('ip', 'iproute2'), 'netns', 'exec', netns];
}

/** nsenter only switches the network namespace, keeping /sys/fs/bpf and the cgroup tree visible. */
export function enterNodeNetns(netns: string): string[] {
  return [requireTool('nsenter', 'util-linux'), `--net=/run/netns/${netns}`, '--'];
}

/**
 * curl's arguments for an httpGet probe, printing only the status: as a kubelet, an HTTPS probe does
 * not verify the certificate, and httpHeaders are sent as given.
 */
export function curlProbeArgs(ip: string, probe: LabProbe & { readonly kind: 'httpGet' }): string[] {
  const url = `${probe.scheme.toLowerCase()}://${ip}:${probe.resolvedPort}${probe.path.startsWith('/') ? '' : '/'}${probe.path}`;
  const headers = probe.httpHeaders.flatMap((h) => ['-H', `${h.name}: ${h.value}`]);
  return ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', String(probe.timeoutSeconds), ...(probe.scheme === 'HTTPS' ? ['--insecure'] : []), ...headers, url];
}

/** A probe as a kubelet runs it: from the node's network namespace, bounded by its timeout. */
export function probeFromNode(nodeNetns: string, ip: string, probe: LabProbe): () => Promise<boolean> {
  const enter = enterNodeNetns(nodeNetns);
  const timeout = String(probe.timeoutSeconds);
  if (probe.kind === 'httpGet') {
    const curl = [requireTool('curl', 'curl'), ...curlProbeArgs(ip, probe)];
    return async () => {
      const code = await runCommand(enter[0]!, [...enter.slice(1), ...curl]).catch(() => '000');
      return Number(code) >= 200 && Number(code) < 400;
    };
  }
  return () =>
    // A clean environment and no rc files: a BASH_ENV or profile hook (pyenv's, say) must not run,
    // let alone block, inside a probe.
    runCommand(enter[0]!, [...enter.slice(1), 'env', '-i', 'PATH=/usr/bin:/bin', 'timeout', timeout, 'bash', '--norc', '--noprofile', '-c', `: > /dev/tcp/${ip}/${probe.resolvedPort}`]).then(
      () => true,
      () => false,
    );
}

class SupervisedProcess {
  #child: ChildProcess | undefined;
  /** Processes an upgrade replaced, until they exit: never restarted, stopped with the rest. */
  readonly #retiring = new Set<ChildProcess>();
  #status: ProcessStatus;
  #backoffMs = BACKOFF_START_MS;
  #restartTimer: NodeJS.Timeout | undefined;
  #probeTimer: NodeJS.Timeout | undefined;
  #stopping = false;

  constructor(
    readonly spec: ProcessSpec,
    private readonly onChange: () => void,
  ) {
    this.#status = { id: spec.id, state: 'waiting', started: false, probed: spec.probe !== undefined, ready: false, restarts: 0 };
  }

  get status(): ProcessStatus {
    return this.#status;
  }

  /** `prefix`: a command the process runs under this once (`nice` for an upgrade's new agent). */
  start(prefix: readonly string[] = []): void {
    mkdirSync(dirname(this.spec.log), { recursive: true });
    const log = openSync(this.spec.log, 'a');
    const startedAt = Date.now();
    this.#note(log, `starting: ${this.spec.command}`);
    const argv = [...prefix, ...this.spec.argv];
    const child = spawn(argv[0]!, argv.slice(1), {
      cwd: this.spec.cwd,
      env: this.spec.env,
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    this.#child = child;
    this.#set({ pid: child.pid, state: 'running', started: true, ready: this.spec.probe === undefined });
    child.once('error', (err) => this.#appendNote(`could not start: ${err.message}`));
    child.once('exit', (code, signal) => {
      if (this.#retiring.delete(child)) {
        this.#appendNote(`previous process (pid ${child.pid}) exited after the upgrade (code ${code ?? '-'}, signal ${signal ?? '-'})`);
        this.#set({ retiringPid: undefined });
        return;
      }
      this.#child = undefined;
      clearTimeout(this.#probeTimer);
      const lastExit = { code, signal, at: new Date().toISOString() };
      if (this.#stopping) {
        this.#set({ pid: undefined, state: 'stopped', ready: false, lastExit });
        return;
      }
      if (Date.now() - startedAt > BACKOFF_RESET_AFTER_MS) this.#backoffMs = BACKOFF_START_MS;
      this.#appendNote(`exited (code ${code ?? '-'}, signal ${signal ?? '-'}); restarting in ${this.#backoffMs / 1000}s`);
      this.#set({ pid: undefined, state: 'waiting', ready: false, lastExit, restarts: this.#status.restarts + 1 });
      this.#restartTimer = setTimeout(() => this.start(), this.#backoffMs);
      this.#backoffMs = Math.min(Math.max(this.#backoffMs * 2, BACKOFF_FIRST_DELAY_MS), BACKOFF_MAX_MS);
    });
    if (this.spec.probe) this.#scheduleProbe(child, 200);
  }

  /**
   * Starts a new process beside the running one, which stays until it exits by itself: an `ambit
   * run` retires the agent it replaces once it is ready (agent/lifecycle/handover.ts).
   */
  upgrade(): void {
    const old = this.#child;
    if (old && old.exitCode === null && old.signalCode === null) {
      this.#retiring.add(old);
      this.#set({ retiringPid: old.pid });
      this.#appendNote(`upgrading: starting a new process beside pid ${old.pid}`);
    }
    clearTimeout(this.#restartTimer);
    clearTimeout(this.#probeTimer);
    // Niced from its first instruction (loading its modules takes seconds of CPU), so that it does not
    // starve the agent still serving; the agent restores its priority once it serves (lifecycle/handover.ts).
    this.start(['nice', '-n', String(STARTING_NICENESS)]);
  }

  /** SIGTERM, then SIGKILL after the grace period, as a kubelet stops a container. */
  async stop(graceMs: number): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#restartTimer);
    clearTimeout(this.#probeTimer);
    await Promise.all([...this.#retiring].map((old) => this.#terminate(old, graceMs)));
    const child = this.#child;
    if (!child) return;
    await this.#terminate(child, graceMs);
  }

  async #terminate(child: ChildProcess, graceMs: number): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  #scheduleProbe(child: ChildProcess, delayMs: number): void {
    this.#probeTimer = setTimeout(async () => {
      const ok = await this.spec.probe!();
      if (this.#child !== child) return; // the process it probed is gone
      if (ok !== this.#status.ready) this.#set({ ready: ok });
      // Probe quickly until first ready so `lab up` returns promptly, then at the probe's period.
      this.#scheduleProbe(child, ok ? this.spec.probePeriodMs : 500);
    }, delayMs);
  }

  #set(change: Partial<ProcessStatus>): void {
    this.#status = { ...this.#status, ...change };
    this.onChange();
  }

  #note(fd: number, text: string): void {
    writeSync(fd, `--- ambit lab ${new Date().toISOString()} ${this.spec.id}: ${text}\n`);
  }

  #appendNote(text: string): void {
    const fd = openSync(this.spec.log, 'a');
    this.#note(fd, text);
    closeSync(fd);
  }
}

/** Runs a set of processes and keeps status.json current. */
export class Kubelet {
  readonly #processes: SupervisedProcess[] = [];
  readonly #readyWaiters: { readonly id: string; readonly resolve: () => void }[] = [];
  #writing: Promise<void> = Promise.resolve();
  #dirty = false;

  constructor(private readonly statusFile: string) {}

  /** Replaces a running process by a new one started beside it (the lab's agent upgrade); false: no such process. */
  upgrade(id: string): boolean {
    const supervised = this.#processes.find((p) => p.status.id === id);
    supervised?.upgrade();
    return supervised !== undefined;
  }

  run(spec: ProcessSpec): void {
    const supervised = new SupervisedProcess(spec, () => this.#statusChanged());
    this.#processes.push(supervised);
    supervised.start();
  }

  /** Resolves the first time the process `id` is ready (at once if it already is). */
  firstReady(id: string): Promise<void> {
    if (this.#processes.some((p) => p.status.id === id && p.status.ready)) return Promise.resolve();
    return new Promise((resolve) => this.#readyWaiters.push({ id, resolve }));
  }

  async stopAll(graceMs: number): Promise<void> {
    await Promise.all(this.#processes.map((p) => p.stop(graceMs)));
    this.#statusChanged();
    await this.#writing;
  }

  #statusChanged(): void {
    for (const waiter of [...this.#readyWaiters]) {
      if (!this.#processes.some((p) => p.status.id === waiter.id && p.status.ready)) continue;
      this.#readyWaiters.splice(this.#readyWaiters.indexOf(waiter), 1);
      waiter.resolve();
    }
    // Coalesce bursts of changes into one write; the file is replaced atomically so readers never
    // see half of it.
    if (this.#dirty) return;
    this.#dirty = true;
    this.#writing = this.#writing.then(async () => {
      this.#dirty = false;
      const body = JSON.stringify({ supervisorPid: process.pid, updatedAt: new Date().toISOString(), processes: this.#processes.map((p) => p.status) }, null, 2);
      await writeFile(`${this.statusFile}.tmp`, body);
      await rename(`${this.statusFile}.tmp`, this.statusFile);
    });
  }
}

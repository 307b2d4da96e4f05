// How one agent takes a node over from another (an upgrade): each agent records itself in its state
// dir, a new one finds the live one there, serves beside it on SO_REUSEPORT listeners, and once
// ready either retires it or waits for its orchestrator to; a crashed agent's record is not live.

import { readFileSync, readdirSync, statSync } from 'node:fs';
import { setPriority } from 'node:os';
import { mkdir, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../telemetry/log.js';

/** The signal a successor sends its predecessor: stop accepting, drain, exit (SIGTERM stays the orchestrator's). */
export const HANDOVER_SIGNAL = 'SIGUSR2';

/**
 * How often an agent touches its heartbeat file, and after how long without one an agent in another
 * pid namespace counts as dead (generous: a busy event loop or disk delays a touch, and taking a live
 * agent for dead costs a second agent beside it, never a node without listeners).
 */
const HEARTBEAT_MS = 1_000;
const HEARTBEAT_DEAD_MS = 15_000;

/**
 * The niceness a successor runs at until it serves: starting (loading programs, building TLS contexts,
 * fetching certificates) costs seconds of CPU, and on a busy node it would take them from the agent
 * still serving every connection. `ambit lab upgrade` starts it so niced from its first instruction.
 */
export const STARTING_NICENESS = 10;

/** `retire`: the new agent retires the old one once ready; `wait`: something else stops the old one (a DaemonSet). */
export type HandoverMode = 'retire' | 'wait';

export interface AgentRecord {
  readonly pid: number;
  /** /proc/<pid>/stat's start time: a reused pid after a crash does not match it. */
  readonly startTime: string;
  /** The pid namespace's inode: pids of another namespace cannot be checked in /proc here. */
  readonly pidNamespace: string;
  readonly node: string;
  readonly scope: string;
  readonly version: string;
}

function procStartTime(pid: number): string | undefined {
  try {
    // Field 22, counted after the command name, which may hold spaces and parentheses.
    return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[19];
  } catch {
    return undefined;
  }
}

function pidNamespace(): string {
  try {
    return String(statSync('/proc/self/ns/pid').ino);
  } catch {
    return 'unknown';
  }
}

function readRecord(path: string): AgentRecord | undefined {
  try {
    const value = JSON.parse(readFileSync(path, 'utf8')) as Partial<AgentRecord>;
    if (typeof value.pid !== 'number' || typeof value.startTime !== 'string' || typeof value.pidNamespace !== 'string') return undefined;
    return value as AgentRecord;
  } catch {
    return undefined;
  }
}

/** Linux's niceness is per thread: set it on each of this process's threads. */
function setThreadsNiceness(niceness: number): void {
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      setPriority(Number(tid), niceness);
    } catch {
      // A thread that ended meanwhile, or no CAP_SYS_NICE to lower it again: nothing to do.
    }
  }
}

const sameAgent = (a: AgentRecord, b: AgentRecord): boolean => a.pid === b.pid && a.startTime === b.startTime && a.pidNamespace === b.pidNamespace;

/**
 * This agent's place in a handover. Two pointers, each written whole (rename) and only when an agent
 * takes that role, never refreshed, so that two agents never race on one file: who serves the node
 * (`agent-<scope>.json`) and who is starting beside it (`agent-<scope>.successor.json`). Liveness is
 * the pid with its start time, or, for an agent in another pid namespace, its own heartbeat file.
 */
export class AgentHandover {
  readonly #self: AgentRecord;
  readonly #name: string;
  #heartbeat: NodeJS.Timeout | undefined;
  #beatFailing = false;

  private constructor(
    readonly stateDir: string,
    self: Omit<AgentRecord, 'pid' | 'startTime' | 'pidNamespace'>,
    /** The live agent this one takes over from, found at start. */
    readonly predecessor: AgentRecord | undefined,
    private readonly log: Logger,
  ) {
    this.#name = `agent-${self.scope.replace(/[^A-Za-z0-9_.-]/g, '_')}`;
    this.#self = { pid: process.pid, startTime: procStartTime(process.pid) ?? '', pidNamespace: pidNamespace(), ...self };
  }

  /** Finds the live agent of this node and scope, if any, and says this one is starting beside it. */
  static async begin(stateDir: string, node: string, scope: string, version: string, log: Logger): Promise<AgentHandover> {
    await mkdir(stateDir, { recursive: true });
    const self = { node, scope, version };
    const probe = new AgentHandover(stateDir, self, undefined, log);
    const found = readRecord(probe.#servingPath);
    const predecessor = found && !sameAgent(found, probe.#self) && found.node === node && found.scope === scope && probe.isLive(found) ? found : undefined;
    const handover = new AgentHandover(stateDir, self, predecessor, log);
    await handover.#beat();
    handover.#heartbeat = setInterval(() => void handover.#beat(), HEARTBEAT_MS);
    handover.#heartbeat.unref();
    if (found && !predecessor) log.info({ record: found }, `the agent recorded in ${probe.#servingPath} (pid ${found.pid}) no longer runs; starting afresh`);
    if (predecessor) {
      log.info({ predecessor }, `agent ${predecessor.version} (pid ${predecessor.pid}) serves node ${node}; starting beside it to take over`);
      setThreadsNiceness(STARTING_NICENESS);
      await handover.#writePointer(handover.#successorPath);
    }
    return handover;
  }

  /** Whether the agent a record names still runs. */
  isLive(record: AgentRecord): boolean {
    if (record.pidNamespace === this.#self.pidNamespace) return procStartTime(record.pid) === record.startTime;
    try {
      return Date.now() - statSync(this.#beatPath(record)).mtimeMs <= HEARTBEAT_DEAD_MS;
    } catch {
      return false;
    }
  }

  /** This agent now serves the node: its record replaces the predecessor's. */
  async serving(): Promise<void> {
    // Every thread, the ones made while starting included (they inherited the starting niceness).
    if (this.predecessor) setThreadsNiceness(0);
    await this.#writePointer(this.#servingPath);
    const successor = readRecord(this.#successorPath);
    if (successor && sameAgent(successor, this.#self)) await rm(this.#successorPath, { force: true });
  }

  /** Asks the predecessor to stop accepting and drain; false when it is gone or out of reach. */
  retirePredecessor(): boolean {
    const old = this.predecessor;
    if (!old) return false;
    if (old.pidNamespace !== this.#self.pidNamespace || !this.isLive(old)) {
      this.log.info({ pid: old.pid }, `the previous agent (pid ${old.pid}) is gone or out of reach (another pid namespace); not signalling it`);
      return false;
    }
    try {
      process.kill(old.pid, HANDOVER_SIGNAL);
      this.log.info({ pid: old.pid }, `asked the previous agent (pid ${old.pid}) to stop accepting and drain its connections`);
      return true;
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, `could not signal the previous agent (pid ${old.pid}): ${(err as Error).message}`);
      return false;
    }
  }

  /** A live agent other than this one starting beside it, if any: until it serves, this one keeps accepting. */
  successor(): AgentRecord | undefined {
    const next = readRecord(this.#successorPath);
    return next && !sameAgent(next, this.#self) && this.isLive(next) ? next : undefined;
  }

  /**
   * Before a stopping agent stops accepting: if a successor is starting, waits (at most `timeoutMs`)
   * until it serves or dies, so the node is never left with no listener (an orchestrator's SIGTERM may
   * come before the new agent is ready, because readiness probes of either reach either agent).
   */
  async untilSuccessorServes(timeoutMs: number): Promise<'none' | 'serving' | 'gone' | 'timeout'> {
    const next = this.successor();
    if (!next) return 'none';
    this.log.info({ successor: next.pid }, `a new agent (pid ${next.pid}) is starting; accepting until it serves`);
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const serving = readRecord(this.#servingPath);
      if (serving && sameAgent(serving, next)) return 'serving';
      if (!this.isLive(next)) return 'gone';
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return 'timeout';
  }

  /** Stops the heartbeat (the pointers stay: a dead pid or heartbeat is what tells the next agent). */
  async close(): Promise<void> {
    clearInterval(this.#heartbeat);
    await rm(this.#beatPath(this.#self), { force: true });
  }

  get #servingPath(): string {
    return join(this.stateDir, `${this.#name}.json`);
  }

  get #successorPath(): string {
    return join(this.stateDir, `${this.#name}.successor.json`);
  }

  #beatPath(record: AgentRecord): string {
    return join(this.stateDir, `${this.#name}.${record.pidNamespace}-${record.pid}-${record.startTime}.beat`);
  }

  async #beat(): Promise<void> {
    const path = this.#beatPath(this.#self);
    const now = new Date();
    const failed = await utimes(path, now, now).catch(() => writeFile(path, '')).then(() => undefined, (err: Error) => err);
    // Said when it starts failing and when it works again, not every second in between.
    if (failed && !this.#beatFailing) this.log.warn({ err: failed.message }, `touching the agent heartbeat ${path} failed: ${failed.message}; an agent started in another pid namespace may take this one for dead`);
    if (!failed && this.#beatFailing) this.log.info({ path }, `the agent heartbeat ${path} is touched again`);
    this.#beatFailing = failed !== undefined;
  }

  /**
   * Records this agent in `path`, whole or not at all. A state dir that cannot be written (full disk,
   * read-only) does not stop the agent from serving: only the next agent's takeover depends on it.
   */
  async #writePointer(path: string): Promise<void> {
    const tmp = `${path}.${process.pid}.tmp`;
    try {
      await writeFile(tmp, JSON.stringify(this.#self));
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => undefined);
      this.log.error(
        { path, err: (err as Error).message },
        `cannot record this agent in ${path}: ${(err as Error).message}; it serves, but an agent started next on this node will not find it to take over (both would serve until this one is stopped): free space in the state dir (--state-dir)`,
      );
    }
  }
}

// How one agent takes a node over from another (an upgrade): each agent records itself in its state
// dir, a new one finds the live one there, serves beside it on SO_REUSEPORT listeners, and once
// ready either retires it or waits for its orchestrator to; a crashed agent's record is not live.

import { readFileSync, statSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../telemetry/log.js';

/** The signal a successor sends its predecessor: stop accepting, drain, exit (SIGTERM stays the orchestrator's). */
export const HANDOVER_SIGNAL = 'SIGUSR2';

/**
 * How often a record's heartbeat is refreshed, and after how long without one an agent in another pid
 * namespace counts as dead (generous: a busy event loop or disk delays a refresh, and taking a live
 * agent for dead only costs a restart beside it, never a node without listeners).
 */
const HEARTBEAT_MS = 1_000;
const HEARTBEAT_DEAD_MS = 15_000;

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
  readonly heartbeatAt: number;
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

/** Whether the process a record names still runs: the same pid and start time, or, out of sight, a fresh heartbeat. */
export function isLive(record: AgentRecord, now = Date.now()): boolean {
  if (record.pidNamespace === pidNamespace()) return procStartTime(record.pid) === record.startTime;
  return now - record.heartbeatAt <= HEARTBEAT_DEAD_MS;
}

function readRecord(path: string): AgentRecord | undefined {
  try {
    const value = JSON.parse(readFileSync(path, 'utf8')) as Partial<AgentRecord>;
    if (typeof value.pid !== 'number' || typeof value.startTime !== 'string' || typeof value.heartbeatAt !== 'number') return undefined;
    return value as AgentRecord;
  } catch {
    return undefined;
  }
}

/**
 * This agent's place in a handover: the record of the agent serving the node (`agent-<scope>.json`)
 * and of one starting beside it (`agent-<scope>.successor.json`), both kept fresh by a heartbeat.
 */
export class AgentHandover {
  readonly #self: Omit<AgentRecord, 'heartbeatAt'>;
  readonly #servingPath: string;
  readonly #successorPath: string;
  #heartbeat: NodeJS.Timeout | undefined;
  /** One write at a time: a refresh that falls behind a slow disk is skipped, not raced. */
  #writing: Promise<void> | undefined;
  #role: 'successor' | 'serving' | undefined;

  private constructor(
    readonly stateDir: string,
    node: string,
    scope: string,
    version: string,
    /** The live agent this one takes over from, found at start. */
    readonly predecessor: AgentRecord | undefined,
    private readonly log: Logger,
  ) {
    const name = `agent-${scope.replace(/[^A-Za-z0-9_.-]/g, '_')}`;
    this.#servingPath = join(stateDir, `${name}.json`);
    this.#successorPath = join(stateDir, `${name}.successor.json`);
    this.#self = { pid: process.pid, startTime: procStartTime(process.pid) ?? '', pidNamespace: pidNamespace(), node, scope, version };
  }

  /** Finds the live agent of this node and scope, if any, and says this one is starting beside it. */
  static async begin(stateDir: string, node: string, scope: string, version: string, log: Logger): Promise<AgentHandover> {
    await mkdir(stateDir, { recursive: true });
    const probe = new AgentHandover(stateDir, node, scope, version, undefined, log);
    const found = readRecord(probe.#servingPath);
    const predecessor = found && found.pid !== process.pid && found.node === node && found.scope === scope && isLive(found) ? found : undefined;
    const handover = new AgentHandover(stateDir, node, scope, version, predecessor, log);
    if (found && !predecessor) log.info({ record: found }, `the agent recorded in ${probe.#servingPath} (pid ${found.pid}) no longer runs; starting afresh`);
    if (predecessor) {
      log.info({ predecessor }, `agent ${predecessor.version} (pid ${predecessor.pid}) serves node ${node}; starting beside it to take over`);
      await handover.#enter('successor');
    }
    return handover;
  }

  /** This agent now serves the node: its record replaces the predecessor's. */
  async serving(): Promise<void> {
    await this.#enter('serving');
    await rm(this.#successorPath, { force: true });
  }

  /** Asks the predecessor to stop accepting and drain; false when it is gone already. */
  retirePredecessor(): boolean {
    const old = this.predecessor;
    if (!old) return false;
    if (old.pidNamespace !== this.#self.pidNamespace || !isLive(old)) {
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
    return next && next.pid !== process.pid && isLive(next) ? next : undefined;
  }

  /**
   * Before a stopping agent stops accepting: if a successor is starting, waits (at most `timeoutMs`)
   * until it serves or dies, so the node is never left with no listener (an orchestrator's SIGTERM may
   * come before the new agent is ready, because readiness probes of either reach either agent).
   */
  async untilSuccessorServes(timeoutMs: number): Promise<'none' | 'serving' | 'gone' | 'timeout'> {
    const first = this.successor();
    if (!first) return 'none';
    this.log.info({ successor: first.pid }, `a new agent (pid ${first.pid}) is starting; accepting until it serves`);
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const serving = readRecord(this.#servingPath);
      if (serving && serving.pid === first.pid && serving.startTime === first.startTime) return 'serving';
      if (!isLive(first)) return 'gone';
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return 'timeout';
  }

  /** Stops refreshing the heartbeat (the record stays: a dead heartbeat is what tells the next agent). */
  close(): void {
    clearInterval(this.#heartbeat);
  }

  async #enter(role: 'successor' | 'serving'): Promise<void> {
    this.#role = role;
    await this.#writing;
    await this.#write(true);
    if (!this.#heartbeat) {
      this.#heartbeat = setInterval(() => {
        if (this.#writing) return;
        this.#writing = this.#write(false)
          .catch((err: Error) => this.log.warn({ err: err.message }, `refreshing the agent record in ${this.stateDir} failed: ${err.message}`))
          .finally(() => (this.#writing = undefined));
      }, HEARTBEAT_MS);
      this.#heartbeat.unref();
    }
  }

  /** `claim`: this agent takes the record over; a heartbeat only refreshes a record that is still its own. */
  async #write(claim: boolean): Promise<void> {
    if (this.#role === undefined) return;
    const path = this.#role === 'serving' ? this.#servingPath : this.#successorPath;
    // A server replaced in turn by a newer agent must not write its record back over the new one's.
    if (this.#role === 'serving' && !claim) {
      const current = readRecord(path);
      if (current && current.pid !== process.pid && isLive(current)) {
        this.#role = undefined;
        clearInterval(this.#heartbeat);
        this.log.info({ pid: current.pid }, `agent pid ${current.pid} now serves this node`);
        return;
      }
    }
    const tmp = `${path}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify({ ...this.#self, heartbeatAt: Date.now() }));
    await rename(tmp, path);
  }
}

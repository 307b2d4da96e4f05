// The agent's structured log: JSON lines on stdout (one object per event), so that a DaemonSet's log
// collector and `ambit lab logs` read the same thing. Level from --log-level or AMBIT_LOG_LEVEL.

import { pino, type Logger } from 'pino';
import { LogWriter, type LogWriterStats } from './log-writer.js';

export type { Logger };

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

let stdout: LogWriter | undefined;

/** Every logger of the process writes to stdout through one writer that never blocks (log-writer.ts). */
export function createLogger(level: LogLevel, bindings: Record<string, string> = {}): Logger {
  stdout ??= new LogWriter(1);
  return pino({ level, base: { pid: process.pid, ...bindings }, timestamp: pino.stdTimeFunctions.isoTime }, stdout);
}

/** What the log lost so far (for the agent's metrics); nothing before a logger exists. */
export function logWriterStats(): LogWriterStats {
  return stdout?.stats() ?? { droppedLines: 0 };
}

// A pino logger whose JSON lines are kept in memory, for tests that check what the agent logged.

import { Writable } from 'node:stream';
import { type Logger, pino } from 'pino';

export function captureLog(level: pino.Level = 'info'): { logger: Logger; records: Record<string, unknown>[] } {
  const records: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) records.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level }, stream), records };
}

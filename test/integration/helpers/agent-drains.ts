// How long each retired agent of a node drained, read from the node's agent log (pino JSON lines).

export interface RetiredDrain {
  readonly pid: number;
  /** From its 'a newer agent took over: shutting down' line to its last line. */
  readonly ms: number;
  /** Its drain deadline passed with connections still open (it waited the whole deadline). */
  readonly deadline: boolean;
  /** Its lines from the shutdown on, each with the ms since it began and the error it names. */
  readonly lines: readonly string[];
}

export function retiredDrains(log: string): RetiredDrain[] {
  const records = log.split('\n').flatMap((line) => {
    try {
      return [JSON.parse(line) as { pid?: number; time?: string; msg?: string; error?: string }];
    } catch {
      return [];
    }
  });
  return records
    .filter((r) => r.msg?.startsWith('a newer agent took over'))
    .map((start) => {
      const own = records.filter((r) => r.pid === start.pid);
      const since = (r: { time?: string }): number => Date.parse(r.time!) - Date.parse(start.time!);
      const lines = own.filter((r) => since(r) >= 0).map((r) => `+${since(r)} ms ${r.msg ?? ''}${r.error ? ` (${r.error})` : ''}`);
      return { pid: start.pid!, ms: since(own.at(-1)!), deadline: own.some((r) => /^drain deadline .* passed/.test(r.msg ?? '')), lines };
    });
}

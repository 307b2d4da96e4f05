// Waiting on what a process under test logs: polls a check against its log so far, and on timeout says
// what was awaited with the log's tail, which is what a reader of a failed run needs first.

export function waitForLog(what: string, check: () => boolean, log: () => string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    const tick = (): void => {
      if (check()) return resolve();
      if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${what}; agent log:\n${log().slice(-3000)}`));
      setTimeout(tick, 100);
    };
    tick();
  });
}

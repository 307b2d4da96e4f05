// What a client sees of a relay's idle timeout: its connection stays open while it sends a byte more
// often than the idle time, then is closed by the relay (FIN or reset) once it stops, no sooner than the idle time after its last byte.

import assert from 'node:assert/strict';
import type { Socket } from 'node:net';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Sends one byte every idle time / 3 for four idle times (the connection must stay open), then goes
 * quiet and waits for the close. Returns how long after the last byte the connection closed.
 */
export async function quietUntilClosed(client: Socket, idleMs: number): Promise<number> {
  let closedAt: number | undefined;
  // The relay's FIN ('end', as a half-open client sees it) or its reset ('close').
  const closed = new Promise<void>((resolve) => {
    const onClose = (): void => {
      closedAt ??= performance.now();
      resolve();
    };
    client.once('end', onClose).once('close', onClose);
  });
  client.on('error', () => undefined);
  let lastByteAt = performance.now();
  for (let i = 0; i < 12; i++) {
    client.write('.');
    lastByteAt = performance.now();
    await sleep(idleMs / 3);
    assert.equal(closedAt, undefined, `the connection closed after ${i + 1} bytes sent ${idleMs / 3} ms apart: bytes were flowing`);
  }
  const deadline = idleMs * 10;
  await Promise.race([closed, sleep(deadline)]);
  assert.notEqual(closedAt, undefined, `the connection was still open ${deadline} ms after its last byte (idle timeout ${idleMs} ms)`);
  return closedAt! - lastByteAt;
}

// Waiting on what a source publishes: the store's snapshots are watched (no polling) until one passes
// a check, and a timeout names what was awaited.

import type { MeshSnapshot } from '../../../agent/state/model.js';
import type { WorkloadStore } from '../../../agent/state/store.js';

/** The first snapshot in `store` (the current one included) that passes `test`, within `timeoutMs`; `what` names it in the timeout. */
export function waitForSnapshot(store: WorkloadStore, test: (s: MeshSnapshot) => boolean, what = 'the expected state', timeoutMs = 5000): Promise<MeshSnapshot> {
  return new Promise((resolve, reject) => {
    if (store.current && test(store.current)) return resolve(store.current);
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`the store did not reach ${what} within ${timeoutMs} ms`));
    }, timeoutMs);
    const unsubscribe = store.subscribe((next) => {
      if (!test(next)) return;
      clearTimeout(timer);
      unsubscribe();
      resolve(next);
    });
  });
}

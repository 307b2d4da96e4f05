// The one place the current MeshSnapshot lives. Sources replace it whole; readers take the current
// snapshot and keep using it for as long as they need a consistent view (a connection, a request).

import type { MeshSnapshot } from './model.js';

export type SnapshotListener = (next: MeshSnapshot, previous: MeshSnapshot | undefined) => void;

export class WorkloadStore {
  #current: MeshSnapshot | undefined;
  readonly #listeners = new Set<SnapshotListener>();

  /** The snapshot in force, or undefined before the first configuration was accepted. */
  get current(): MeshSnapshot | undefined {
    return this.#current;
  }

  /** Swaps in a new snapshot atomically and tells every listener, in registration order. */
  replace(next: MeshSnapshot): void {
    const previous = this.#current;
    this.#current = next;
    for (const listener of this.#listeners) listener(next, previous);
  }

  /** Calls `listener` on every change from now on; returns the function that unsubscribes it. */
  subscribe(listener: SnapshotListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

// Tells when anything under a set of YAML files and directories changes, for every reader of the
// user's YAML that follows edits: local mode's source and the lab's API server.

import { type FSWatcher, watch } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { Logger } from '../telemetry/log.js';

export interface PathWatch {
  close(): void;
}

/** Calls `onChange` on every change event under `paths` (bursts are the caller's to debounce). */
export async function watchPaths(paths: readonly string[], onChange: () => void, log: Logger): Promise<PathWatch> {
  const watchers: FSWatcher[] = [];
  for (const path of paths) {
    const isDir = await stat(path).then((s) => s.isDirectory(), () => false);
    // Watch the directory even for a single file: editors save by writing a new file and renaming it
    // over the old one, which a watch on the file itself would lose.
    const dir = isDir ? path : dirname(path);
    const only = isDir ? undefined : basename(path);
    try {
      const watcher = watch(dir, { recursive: isDir, persistent: true }, (_event, name) => {
        if (only === undefined || name === only) onChange();
      });
      watcher.on('error', (err) => log.error({ err, dir }, `stopped watching ${dir}: ${err.message}; restart to watch it again`));
      watchers.push(watcher);
    } catch (err) {
      log.error({ err, dir }, `cannot watch ${dir} for changes: ${(err as Error).message}; changes there apply only after a restart`);
    }
  }
  return { close: () => watchers.splice(0).forEach((w) => w.close()) };
}

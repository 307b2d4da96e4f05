// Preloaded (--import, after tsx) into a child process whose module graph a test reads: every module the
// child loads goes, as its URL, to the file AMBIT_RECORD_MODULES names, one a line. A loader hook rather
// than require.cache, which sees neither ES modules nor what tsx loads; it runs in the loader thread,
// where appending to a file is the simplest way out.

import { register } from 'node:module';

const HOOK = `import { appendFileSync } from 'node:fs';
export async function load(url, context, next) {
  appendFileSync(process.env.AMBIT_RECORD_MODULES, url + '\\n');
  return next(url, context);
}`;

if (!process.env['AMBIT_RECORD_MODULES']) throw new Error('record-modules.ts: set AMBIT_RECORD_MODULES to the file the loaded modules go to');
register(`data:text/javascript,${encodeURIComponent(HOOK)}`);

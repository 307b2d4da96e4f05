// Loads the configuration `ambit run --config` and `ambit lab up` are given (files and directories of
// multi-document YAML) and resolves it into one list of objects, keeping the last good state per object.
//
// Resolution rules, in this order:
// - Files are read in the order given, a directory's *.yaml / *.yml files recursively in sorted path order
//   (names starting with "." are skipped: editors' swap and backup files). Within a file, document order.
// - Duplicates: the same kind, namespace and name defined twice, in one file or across files, is an
//   error on the later definition, which is ignored; the first one wins.
// - An object rejected now (it has errors) that was valid in the last good configuration keeps its last
//   good version, unless another valid definition of it exists now. A warning says so.
// - A path that cannot be read now (missing, unreadable, or its YAML does not parse) keeps every object
//   the last good configuration loaded from it, unless defined validly elsewhere now. A warning says so.
// - A file that was deleted from a directory takes its objects with it: that is an edit, not an accident.
// This is what lets `ambit run` apply a half-broken edit: what is valid applies, the rest stays as it was.

import { open, readdir, stat } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { type ConfigDiagnostic, type ObjectRef, formatObjectRef } from './diagnostics.js';
import { MAX_CONFIG_BYTES, tooLarge } from './input-limits.js';
import type { SourceLocation } from './kubernetes.js';
import { type MeshObject, objectRef } from './objects.js';
import { type FileParseResult, parseConfigFile, unreadableFile } from './parse-file.js';

export { type FileParseResult, type RejectedObject, parseConfigFile, unreadableFile } from './parse-file.js';

export interface ResolvedConfig {
  readonly objects: readonly MeshObject[];
  /** Everything worth telling the user, from parsing and from resolution, in file order. */
  readonly diagnostics: readonly ConfigDiagnostic[];
}

export interface ConfigFileList {
  readonly files: readonly string[];
  /** One error per path that does not exist or cannot be listed. */
  readonly diagnostics: readonly ConfigDiagnostic[];
}

const YAML_FILE = /\.ya?ml$/;

/** Expands directories (recursively, sorted) and keeps files as given; a file listed twice is read once. */
export async function listConfigFiles(paths: readonly string[]): Promise<ConfigFileList> {
  const files: string[] = [];
  const diagnostics: ConfigDiagnostic[] = [];
  for (const path of paths) {
    try {
      if (!(await stat(path)).isDirectory()) {
        files.push(path);
        continue;
      }
      const entries = await readdir(path, { recursive: true });
      const found = entries.filter((rel) => YAML_FILE.test(rel) && !rel.split(sep).some((part) => part.startsWith('.')));
      files.push(...found.sort().map((rel) => join(path, rel)));
    } catch (err) {
      diagnostics.push({ severity: 'error', location: { file: path, line: 1 }, message: `cannot read configuration: ${describeFsError(err)}` });
    }
  }
  return { files: [...new Set(files)], diagnostics };
}

export async function loadConfig(paths: readonly string[], lastGood?: ResolvedConfig, parsed?: ParsedFiles): Promise<ResolvedConfig> {
  const listed = await listConfigFiles(paths);
  const results: FileParseResult[] = listed.diagnostics.map((d) => unreadableFile(d.location.file, d));
  const seen = new Set<string>();
  for (const file of listed.files) {
    const read = await readConfigText(file);
    if (!read.ok) {
      results.push(unreadableFile(file, read.problem));
      continue;
    }
    seen.add(file);
    const cached = parsed?.get(file);
    const result = cached?.text === read.text ? cached.result : parseConfigFile(read.text, file);
    parsed?.set(file, { text: read.text, result });
    results.push(result);
  }
  for (const file of parsed?.keys() ?? []) if (!seen.has(file)) parsed!.delete(file);
  return resolveConfig(results, lastGood);
}

/**
 * What each file parsed to, by the text it had: a reload parses again only the files whose text changed.
 * At 10,000 pods the YAML took tens of seconds to parse (about 1 MiB/s), so an edit of one small file cost
 * a parse of them all (bench/scale-mesh.bench.ts).
 */
export type ParsedFiles = Map<string, { readonly text: string; readonly result: FileParseResult }>;

/** A configuration file's text, refused unread when it is larger than MAX_CONFIG_BYTES. */
export async function readConfigText(file: string): Promise<{ readonly ok: true; readonly text: string } | { readonly ok: false; readonly problem: ConfigDiagnostic }> {
  try {
    const handle = await open(file, 'r');
    try {
      // Asked of the open file, so that the size checked is the size of what is read.
      const { size } = await handle.stat();
      if (size > MAX_CONFIG_BYTES) return { ok: false, problem: tooLarge(file, size) };
      return { ok: true, text: await handle.readFile('utf8') };
    } finally {
      await handle.close();
    }
  } catch (err) {
    return { ok: false, problem: { severity: 'error', location: { file, line: 1 }, message: `cannot read configuration: ${describeFsError(err)}` } };
  }
}

export function resolveConfig(files: readonly FileParseResult[], lastGood?: ResolvedConfig): ResolvedConfig {
  const previous = new Map((lastGood?.objects ?? []).map((o) => [keyOf(objectRef(o)), o]));
  const validNow = new Set(files.flatMap((f) => f.objects.map((o) => keyOf(objectRef(o)))));
  const defined = new Map<string, SourceLocation>();
  const objects: MeshObject[] = [];
  const diagnostics: ConfigDiagnostic[] = [];
  const keep = (object: MeshObject): void => {
    defined.set(keyOf(objectRef(object)), object.source);
    objects.push(object);
  };
  // A last good object is kept only if nothing valid now replaces it.
  const replaced = (key: string): boolean => validNow.has(key) || defined.has(key);

  for (const file of files) {
    diagnostics.push(...file.diagnostics);
    if (!file.readable) {
      const kept = (lastGood?.objects ?? []).filter((o) => isUnder(o.source.file, file.file) && !replaced(keyOf(objectRef(o))));
      kept.forEach(keep);
      if (kept.length > 0) {
        const what = kept.length === 1 ? `the object (${formatObjectRef(objectRef(kept[0]!))})` : `the ${kept.length} objects`;
        diagnostics.push(warning({ file: file.file, line: 1 }, undefined, `keeping ${what} last loaded from here until it can be read again`));
      }
      continue;
    }
    for (const object of file.objects) {
      const ref = objectRef(object);
      const first = defined.get(keyOf(ref));
      if (first) diagnostics.push({ severity: 'error', location: object.source, object: ref, message: `already defined at ${first.file}:${first.line}; this duplicate is ignored` });
      else keep(object);
    }
    for (const rejected of file.rejected) {
      const key = keyOf(rejected);
      const last = previous.get(key);
      if (!last || replaced(key)) continue;
      keep(last);
      const ref: ObjectRef = { kind: rejected.kind, namespace: rejected.namespace, name: rejected.name };
      diagnostics.push(warning(rejected.source, ref, `keeping the last good version (loaded from ${last.source.file}:${last.source.line}) until the errors are fixed`));
    }
  }
  return { objects, diagnostics };
}

function warning(location: SourceLocation, object: ObjectRef | undefined, message: string): ConfigDiagnostic {
  return { severity: 'warning', location, ...(object ? { object } : {}), message };
}

function keyOf(ref: ObjectRef): string {
  return `${ref.kind}/${ref.namespace}/${ref.name}`;
}

/** True for the path itself and, when it is a directory, for every file below it. */
function isUnder(file: string, path: string): boolean {
  return file === path || file.startsWith(path.endsWith(sep) ? path : path + sep);
}

function describeFsError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return 'no such file or directory';
  if (code === 'EACCES') return 'permission denied';
  return err instanceof Error ? err.message : String(err);
}

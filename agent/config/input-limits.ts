// The bounds every configuration input passes before recursive code sees it: a size per file and a
// nesting depth per document (YAML text) or per object (JSON from the Kubernetes API server).
//
// Why: the `yaml` package composes documents recursively, and so do JSON.stringify and every tree walk
// after it. A few kilobytes of `[[[[...` overflow the stack; the package turns the first overflows into
// errors, but V8 does not survive many of them (a later overflow lands in the regexp compiler, which
// aborts the process with a fatal out-of-memory error, exit 134). Checking the depth on yaml's concrete
// syntax tree first costs one iterative walk (its lexer and parser keep their own stacks) and lets the
// composer run only on documents it can finish. JSON.parse is iterative in V8, so a list body or watch
// event is decoded first and its objects measured before anything recursive touches them.

import { type CST, Composer, type Document, type LineCounter, Parser } from 'yaml';
import type { ConfigDiagnostic } from './diagnostics.js';

/**
 * Collections inside collections, counted from the document (or object) root. Kubernetes and Istio
 * objects need about a dozen (a Pod's spec.containers[].readinessProbe.httpGet.httpHeaders[] is 8, its
 * managedFields a few more); the composer overflows a fresh stack near 2,000.
 */
export const MAX_NESTING_DEPTH = 100;

/**
 * One configuration file or object, in bytes. The Kubernetes API server stores objects of up to
 * 1.5 MiB; local YAML holds many objects per file (bookinfo's whole mesh is 11 KiB). The yaml package
 * reads about 1 MiB a second here, on the event loop, so a file at the limit holds the agent for a few
 * seconds and a few hundred MiB of heap (bench/config-parse.bench.ts); more would starve the data path.
 */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

export type YamlParse =
  | { readonly ok: true; readonly documents: readonly Document.Parsed[] }
  | { readonly ok: false; readonly problem: ConfigDiagnostic };

/**
 * Parses a stream of YAML documents as the `yaml` package's parseAllDocuments does, but refuses text
 * over MAX_CONFIG_BYTES or nested deeper than MAX_NESTING_DEPTH before composing any of it. `file`
 * names the input in the diagnostic; `lineCounter` (optional) is filled for the caller's own messages.
 */
export function parseYamlBounded(text: string, file: string, lineCounter?: LineCounter): YamlParse {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_CONFIG_BYTES) return { ok: false, problem: tooLarge(file, bytes) };
  const composer = new Composer({ prettyErrors: false });
  const documents: Document.Parsed[] = [];
  // One document at a time, as parseAllDocuments streams them: each is measured before it is composed.
  for (const token of new Parser(lineCounter?.addNewLine).parse(text)) {
    const deep = firstTooDeep(token);
    if (deep !== undefined) {
      const line = lineCounter ? lineCounter.linePos(deep).line : lineAt(text, deep);
      return { ok: false, problem: tooDeep(file, line) };
    }
    documents.push(...composer.next(token));
  }
  documents.push(...composer.end());
  return { ok: true, documents };
}

/** How deeply objects and arrays nest in a decoded JSON value, counting stops once past `max`. */
export function jsonNestingDepth(value: unknown, max = MAX_NESTING_DEPTH): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (typeof node !== 'object' || node === null) continue;
    deepest = Math.max(deepest, depth);
    if (deepest > max) return deepest;
    for (const child of Array.isArray(node) ? node : Object.values(node)) {
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
    }
  }
  return deepest;
}

/** The diagnostic for an input nested past MAX_NESTING_DEPTH; `line` is where the limit was crossed. */
export function tooDeep(file: string, line: number): ConfigDiagnostic {
  return {
    severity: 'error',
    location: { file, line },
    message:
      `refused unread: collections nest deeper than ${MAX_NESTING_DEPTH} levels here (no Kubernetes or Istio object needs ` +
      `more than a few dozen); look for a runaway run of "[" or "{", or of "- " items; the last good version stays in force`,
  };
}

/** The diagnostic for an input over MAX_CONFIG_BYTES. */
export function tooLarge(file: string, bytes: number): ConfigDiagnostic {
  const mib = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return {
    severity: 'error',
    location: { file, line: 1 },
    message: `refused unread: ${mib(bytes)} is over the ${mib(MAX_CONFIG_BYTES)} limit for one configuration file; split it into several files; the last good version stays in force`,
  };
}

/** The offset of the first collection nested deeper than MAX_NESTING_DEPTH in one CST token, if any. */
function firstTooDeep(root: CST.Token): number | undefined {
  const stack: [CST.Token, number][] = [[root, 0]];
  while (stack.length > 0) {
    const [token, depth] = stack.pop()!;
    switch (token.type) {
      case 'document':
        if (token.value) stack.push([token.value, depth]);
        break;
      case 'block-map':
      case 'block-seq':
      case 'flow-collection': {
        if (depth + 1 > MAX_NESTING_DEPTH) return token.offset;
        for (const item of token.items) {
          if (item.key) stack.push([item.key, depth + 1]);
          if (item.value) stack.push([item.value, depth + 1]);
        }
        break;
      }
      default:
        break;
    }
  }
  return undefined;
}

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) line++;
  return line;
}

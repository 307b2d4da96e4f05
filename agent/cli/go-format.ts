// The three output formats istioctl's ztunnel-config writers use, reproduced byte for byte: Go's
// text/tabwriter (tables), encoding/json MarshalIndent (-o json) and sigs.k8s.io/yaml's JSONToYAML over
// go-yaml v2 (-o yaml). `ambit zc` prints through these so its output equals istioctl's.

import { Document, isScalar, visit } from 'yaml';
import { compareBytes } from '../admin/byte-order.js';

/**
 * A value as Go marshals it: a plain object is a struct (its fields in declaration order, never
 * integer-like names), a Map is a Go map (keys sorted byte-wise when encoded).
 */
export type GoValue = string | number | boolean | null | readonly GoValue[] | ReadonlyMap<string, GoValue> | { readonly [field: string]: GoValue };

/**
 * text/tabwriter with minwidth 0, tab width 8, the given padding, padded with spaces and no flags:
 * every cell but a row's last is padded to its column's widest cell (in runes) plus `padding`.
 */
export function tabwriter(rows: readonly (readonly string[])[], padding: number): string {
  const runes = (cell: string): number => [...cell].length;
  const widths: number[] = [];
  for (const row of rows) row.slice(0, -1).forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, runes(cell))));
  return rows.map((row) => row.map((cell, i) => (i < row.length - 1 ? cell + ' '.repeat(widths[i]! + padding - runes(cell)) : cell)).join('') + '\n').join('');
}

/** json.MarshalIndent(v, "", "    "). */
export function goJson(value: GoValue, indent = ''): string {
  const inner = `${indent}    `;
  if (value === null || typeof value !== 'object') return typeof value === 'string' ? goString(value) : String(value);
  if (isArray(value)) return value.length === 0 ? '[]' : `[\n${value.map((v) => inner + goJson(v, inner)).join(',\n')}\n${indent}]`;
  const entries = value instanceof Map ? [...value.entries()].sort(([a], [b]) => compareBytes(a, b)) : Object.entries(value);
  if (entries.length === 0) return '{}';
  return `{\n${entries.map(([k, v]) => `${inner}${goString(k)}: ${goJson(v, inner)}`).join(',\n')}\n${indent}}`;
}

function isArray(value: object): value is readonly GoValue[] {
  return Array.isArray(value);
}

/** Go escapes <, > and & (HTML safety) and the JavaScript line separators, which JSON.stringify keeps. */
function goString(s: string): string {
  return JSON.stringify(s).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * sigs.k8s.io/yaml JSONToYAML: go-yaml v2 reads the JSON and writes it back as YAML: mapping keys in
 * its own order (yamlKeyLess), sequences not indented under their key, a string that would read back
 * as another type (number, bool, null, timestamp) in double quotes, one that cannot be plain for its
 * syntax in single quotes.
 */
export function goYaml(json: string): string {
  const doc = new Document(JSON.parse(json) as unknown, { version: '1.1', sortMapEntries: (a, b) => yamlOrder(String(keyOf(a.key)), String(keyOf(b.key))) });
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value === 'string' && resolvesToOtherType(node.value)) node.type = 'QUOTE_DOUBLE';
    },
  });
  return doc.toString({ indentSeq: false, singleQuote: true, lineWidth: 80, minContentWidth: 0 });
}

function keyOf(key: unknown): unknown {
  return isScalar(key) ? key.value : key;
}

function yamlOrder(a: string, b: string): number {
  return yamlKeyLess(a, b) ? -1 : yamlKeyLess(b, a) ? 1 : 0;
}

/**
 * go-yaml v2's key order (sorter.go): rune by rune; letters by code point and before anything else;
 * runs of digits by their numeric value; a shorter key first.
 */
export function yamlKeyLess(a: string, b: string): boolean {
  const ar = [...a].map((c) => c.codePointAt(0)!);
  const br = [...b].map((c) => c.codePointAt(0)!);
  for (let i = 0; i < ar.length && i < br.length; i++) {
    if (ar[i] === br[i]) continue;
    const al = isLetter(ar[i]!);
    const bl = isLetter(br[i]!);
    if (al && bl) return ar[i]! < br[i]!;
    if (al || bl) return bl;
    let an = 0;
    let bn = 0;
    if (ar[i] === ZERO || br[i] === ZERO) {
      for (let j = i - 1; j >= 0 && isDigit(ar[j]!); j--) {
        if (ar[j] !== ZERO) {
          an = 1;
          bn = 1;
          break;
        }
      }
    }
    let ai = i;
    let bi = i;
    for (; ai < ar.length && isDigit(ar[ai]!); ai++) an = an * 10 + (ar[ai]! - ZERO);
    for (; bi < br.length && isDigit(br[bi]!); bi++) bn = bn * 10 + (br[bi]! - ZERO);
    if (an !== bn) return an < bn;
    if (ai !== bi) return ai < bi;
    return ar[i]! < br[i]!;
  }
  return ar.length < br.length;
}

const ZERO = 0x30;
const isLetter = (c: number): boolean => /\p{L}/u.test(String.fromCodePoint(c));
const isDigit = (c: number): boolean => /\p{Nd}/u.test(String.fromCodePoint(c));

/** What go-yaml v2's resolver reads as something other than a string when written plain. */
const OTHER_TYPES = [
  /^(?:~|null|Null|NULL|)$/,
  /^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$/,
  /^[-+]?(?:0b[01_]+|0o?[0-7_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*)$/,
  /^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$/,
  /^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$/,
  /^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$/,
  /^\d{4}-\d{1,2}-\d{1,2}(?:(?:[Tt]\d{1,2}:\d{1,2}:\d{1,2}(?:\.\d+)?(?:Z|[-+]\d{2}:\d{2}))|(?: \d{1,2}:\d{1,2}:\d{1,2}(?:\.\d+)?))?$/,
];

function resolvesToOtherType(s: string): boolean {
  return OTHER_TYPES.some((re) => re.test(s));
}

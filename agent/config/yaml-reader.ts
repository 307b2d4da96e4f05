// A typed reader over one object's YAML nodes: every field is read through it, so that every wrong type,
// missing field or bad value becomes a ConfigDiagnostic naming the file, line, object and field path.
//
// Readers never throw. A required read that fails reports an error and returns undefined; the object's
// parser then gives up on that part, and the loader rejects the whole object because errors were reported.

import { type LineCounter, type Node, type YAMLMap, isMap, isScalar, isSeq } from 'yaml';
import type { ConfigDiagnostic, ObjectRef } from './diagnostics.js';
import {
  type CompiledRegex,
  compileRe2,
  ipFamily,
  isCidr,
  labelKeyProblem,
  labelValueProblem,
  parseDurationMs,
} from './formats.js';
import type { Labels } from './kubernetes.js';

/** The diagnostics of one object (or one document, before its object is known). */
export class ReadContext {
  readonly diagnostics: ConfigDiagnostic[] = [];
  #errors = 0;
  /** The keys read from each mapping, to find the ones nobody read (see warnUnknownFields). */
  readonly #read = new Map<YAMLMap, { readonly path: string; readonly keys: Set<string> }>();

  constructor(
    readonly file: string,
    private readonly lines: LineCounter,
    /** Set once metadata has been read, so that every later message names the object. */
    public object?: ObjectRef,
  ) {}

  get errors(): number {
    return this.#errors;
  }

  lineOf(node: Node | null | undefined, fallback = 1): number {
    const offset = node?.range?.[0];
    return offset === undefined ? fallback : this.lines.linePos(offset).line;
  }

  error(line: number, field: string, message: string): void {
    this.#errors++;
    this.#report('error', line, field, message);
  }

  warn(line: number, field: string, message: string): void {
    this.#report('warning', line, field, message);
  }

  /** The set recording which keys of `node` were read; one per node, however many readers open it. */
  readKeysOf(node: YAMLMap, path: string): Set<string> {
    let entry = this.#read.get(node);
    if (!entry) {
      entry = { path, keys: new Set() };
      this.#read.set(node, entry);
    }
    return entry.keys;
  }

  /**
   * Warns about every key of every mapping read so far that no parser asked for. Istio objects are read
   * completely, so an unread key is a typo or a field Ambit does not implement: either way the user
   * must know that it has no effect.
   */
  warnUnknownFields(): void {
    for (const [node, { path, keys }] of this.#read) {
      for (const pair of node.items) {
        const key = String(scalarValue(pair.key));
        if (keys.has(key)) continue;
        const known = [...keys].sort().join(', ');
        this.warn(this.lineOf(pair.key as Node | null), joinPath(path, key), `unknown field, ignored${known ? ` (fields Ambit reads here: ${known})` : ''}`);
      }
    }
  }

  #report(severity: ConfigDiagnostic['severity'], line: number, field: string, message: string): void {
    this.diagnostics.push({
      severity,
      location: { file: this.file, line },
      ...(this.object ? { object: this.object } : {}),
      ...(field ? { field } : {}),
      message,
    });
  }
}

export interface IntRange {
  readonly min?: number;
  readonly max?: number;
}

export const PORT_RANGE: IntRange = { min: 1, max: 65535 };

/** One present (non-null) value at a field path. */
export class Field {
  constructor(
    readonly ctx: ReadContext,
    readonly node: Node,
    readonly path: string,
    /** The line to blame: the key's line for map entries, the item's line for list items. */
    readonly line: number,
  ) {}

  /** The value when it is a scalar (string, number, boolean), for fields that accept several types. */
  get scalar(): unknown {
    return scalarValue(this.node);
  }

  /** Reports an error about this value. Always returns undefined, so that readers can `return this.fail(...)`. */
  fail(message: string): undefined {
    this.ctx.error(this.line, this.path, message);
    return undefined;
  }

  warn(message: string): void {
    this.ctx.warn(this.line, this.path, message);
  }

  string(): string | undefined {
    const value = scalarValue(this.node);
    return typeof value === 'string' ? value : this.fail(`expected a string, got ${describe(this.node)}`);
  }

  /** A non-empty string: an empty value would silently mean "nothing" to most fields. */
  nonEmptyString(): string | undefined {
    const value = this.string();
    return value === '' ? this.fail('expected a non-empty string, got ""') : value;
  }

  int(range: IntRange = {}): number | undefined {
    const value = scalarValue(this.node);
    const ok = typeof value === 'number' && Number.isInteger(value) && inRange(value, range);
    return ok ? value : this.fail(`expected ${describeRange('an integer', range)}, got ${describe(this.node)}`);
  }

  number(range: IntRange = {}): number | undefined {
    const value = scalarValue(this.node);
    const ok = typeof value === 'number' && Number.isFinite(value) && inRange(value, range);
    return ok ? value : this.fail(`expected ${describeRange('a number', range)}, got ${describe(this.node)}`);
  }

  bool(): boolean | undefined {
    const value = scalarValue(this.node);
    return typeof value === 'boolean' ? value : this.fail(`expected true or false, got ${describe(this.node)}`);
  }

  enum<const T extends string>(values: readonly T[]): T | undefined {
    const value = scalarValue(this.node);
    if (typeof value === 'string' && (values as readonly string[]).includes(value)) return value as T;
    return this.fail(`expected one of ${values.join(', ')}, got ${describe(this.node)}`);
  }

  /** A duration such as "100ms", "1.5s" or "2m", in milliseconds. */
  duration(range: IntRange = {}): number | undefined {
    const text = scalarValue(this.node);
    const ms = typeof text === 'string' ? parseDurationMs(text) : undefined;
    if (ms === undefined) return this.fail(`expected a duration such as "100ms", "1.5s" or "2m", got ${describe(this.node)}`);
    if (range.min !== undefined && ms < range.min) return this.fail(`expected a duration of at least ${range.min}ms, got ${describe(this.node)}`);
    return ms;
  }

  ip(): string | undefined {
    const value = this.string();
    if (value === undefined) return undefined;
    return ipFamily(value) ? value : this.fail(`expected an IP address, got ${JSON.stringify(value)}`);
  }

  cidr(): string | undefined {
    const value = this.string();
    if (value === undefined) return undefined;
    return isCidr(value) ? value : this.fail(`expected a CIDR such as 10.244.0.0/16, got ${JSON.stringify(value)}`);
  }

  /** An IP address or a CIDR, as Istio's ipBlocks and destinationSubnets take. */
  ipOrCidr(): string | undefined {
    const value = this.string();
    if (value === undefined) return undefined;
    if (ipFamily(value) || isCidr(value)) return value;
    return this.fail(`expected an IP address or a CIDR such as 10.0.0.0/8, got ${JSON.stringify(value)}`);
  }

  /** An RE2 regular expression, compiled; see compileRe2 for `fullMatch`. */
  regex(options: { fullMatch: boolean }): RegExp | undefined {
    const source = this.string();
    if (source === undefined) return undefined;
    const compiled: CompiledRegex = compileRe2(source, options);
    if (compiled.ok) return compiled.regex;
    return this.fail(`invalid regular expression ${JSON.stringify(source)}: ${compiled.problem} (Istio uses RE2 syntax)`);
  }

  map(): MapReader | undefined {
    return isMap(this.node) ? new MapReader(this.ctx, this.node, this.path, this.line) : this.fail(`expected a mapping, got ${describe(this.node)}`);
  }

  list(): Field[] | undefined {
    if (!isSeq(this.node)) return this.fail(`expected a list, got ${describe(this.node)}`);
    const items: Field[] = [];
    this.node.items.forEach((item, i) => {
      const path = `${this.path}[${i}]`;
      const line = this.ctx.lineOf(item as Node | null, this.line);
      if (isPresent(item)) items.push(new Field(this.ctx, item, path, line));
      else this.ctx.error(line, path, 'expected a value, got null');
    });
    return items;
  }
}

/** A YAML mapping. Reading a key marks it used, so that parsers can warn about fields they do not know. */
export class MapReader {
  readonly #used: Set<string>;

  constructor(
    readonly ctx: ReadContext,
    private readonly node: YAMLMap,
    readonly path: string,
    readonly line: number,
  ) {
    this.#used = ctx.readKeysOf(node, path);
  }

  /** How many keys the mapping has. */
  get size(): number {
    return this.node.items.length;
  }

  /** The value at `key`, or undefined when the key is absent or null (Kubernetes treats both alike). */
  get(key: string): Field | undefined {
    this.#used.add(key);
    const pair = this.node.items.find((p) => scalarValue(p.key) === key);
    if (!pair || !isPresent(pair.value)) return undefined;
    const keyLine = this.ctx.lineOf(pair.key as Node | null, this.line);
    return new Field(this.ctx, pair.value, this.childPath(key), keyLine);
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  /** Like get, but reports `required field is missing` (at this mapping's line) when the key is absent. */
  require(key: string): Field | undefined {
    const field = this.get(key);
    if (!field) this.ctx.error(this.line, this.childPath(key), 'required field is missing');
    return field;
  }

  string(key: string): string | undefined {
    return this.get(key)?.string();
  }

  int(key: string, range?: IntRange): number | undefined {
    return this.get(key)?.int(range);
  }

  bool(key: string): boolean | undefined {
    return this.get(key)?.bool();
  }

  enum<const T extends string>(key: string, values: readonly T[]): T | undefined {
    return this.get(key)?.enum(values);
  }

  duration(key: string, range?: IntRange): number | undefined {
    return this.get(key)?.duration(range);
  }

  map(key: string): MapReader | undefined {
    return this.get(key)?.map();
  }

  /** The list at `key`; [] when absent. */
  list(key: string): Field[] {
    return this.get(key)?.list() ?? [];
  }

  /** A list of mappings at `key`; [] when absent. Items that are not mappings are reported and skipped. */
  maps(key: string): MapReader[] {
    return this.list(key).flatMap((item) => item.map() ?? []);
  }

  /** A list of strings at `key`; [] when absent. */
  strings(key: string, read: (item: Field) => string | undefined = (item) => item.string()): string[] {
    return this.list(key).flatMap((item) => read(item) ?? []);
  }

  /** A map of string to string (annotations, header values); {} when absent. */
  stringMap(key: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, value] of this.map(key)?.entries() ?? []) {
      const text = value.string();
      if (text !== undefined) out[name] = text;
    }
    return out;
  }

  /** Kubernetes labels (or a label selector's matchLabels); {} when absent. */
  labels(key: string): Labels {
    const out: Record<string, string> = {};
    for (const [name, value] of this.map(key)?.entries() ?? []) {
      const keyProblem = labelKeyProblem(name);
      if (keyProblem) {
        value.fail(keyProblem);
        continue;
      }
      const text = value.string();
      const valueProblem = text === undefined ? undefined : labelValueProblem(text);
      if (valueProblem) value.fail(valueProblem);
      else if (text !== undefined) out[name] = text;
    }
    return out;
  }

  /** Every entry, for mappings whose keys are data (labels, headers, ports). Keys must be strings. */
  entries(): [string, Field][] {
    const out: [string, Field][] = [];
    for (const pair of this.node.items) {
      const key = scalarValue(pair.key);
      const line = this.ctx.lineOf(pair.key as Node | null, this.line);
      if (typeof key !== 'string' && typeof key !== 'number') {
        this.ctx.error(line, this.path, `expected a string key, got ${describe(pair.key)}`);
        continue;
      }
      const name = String(key);
      this.#used.add(name);
      if (isPresent(pair.value)) out.push([name, new Field(this.ctx, pair.value, this.childPath(name), line)]);
      else this.ctx.error(line, this.childPath(name), 'expected a value, got null');
    }
    return out;
  }

  /** Checks an Istio oneof: reports when more than one of `keys` is set, and returns the one that is. */
  oneOf<const K extends string>(keys: readonly K[]): K | undefined {
    const set = keys.filter((k) => this.has(k));
    if (set.length > 1) this.ctx.error(this.line, this.path, `expected only one of ${keys.join(', ')}, got ${set.join(' and ')}`);
    return set[0];
  }

  /** Marks keys as read on purpose without using them (accepted but not acted on). */
  ignore(...keys: string[]): void {
    for (const key of keys) this.#used.add(key);
  }

  /** Marks every key as read: for mappings whose other fields are legitimately none of Ambit's business. */
  ignoreRest(): void {
    for (const pair of this.node.items) this.#used.add(String(scalarValue(pair.key)));
  }

  childPath(key: string): string {
    return joinPath(this.path, key);
  }
}

/** Reads the root mapping of a document, or reports that the document is not a mapping. */
export function readRoot(ctx: ReadContext, node: Node, path = ''): MapReader | undefined {
  return new Field(ctx, node, path, ctx.lineOf(node)).map();
}

/** `a.b` for plain keys, `a["x-user"]` for keys that are data (header names, label keys). */
function joinPath(path: string, key: string): string {
  const segment = /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? key : `[${JSON.stringify(key)}]`;
  if (path === '') return segment;
  return segment.startsWith('[') ? `${path}${segment}` : `${path}.${segment}`;
}

function isPresent(node: unknown): node is Node {
  return node !== null && node !== undefined && !(isScalar(node) && node.value === null);
}

function scalarValue(node: unknown): unknown {
  return isScalar(node) ? node.value : undefined;
}

function inRange(value: number, range: IntRange): boolean {
  return (range.min === undefined || value >= range.min) && (range.max === undefined || value <= range.max);
}

function describeRange(what: string, range: IntRange): string {
  if (range.min !== undefined && range.max !== undefined) return `${what} from ${range.min} to ${range.max}`;
  if (range.min !== undefined) return `${what} of at least ${range.min}`;
  if (range.max !== undefined) return `${what} of at most ${range.max}`;
  return what;
}

/** How a found value appears in messages: strings quoted, numbers and booleans as written, collections by type. */
export function describe(node: unknown): string {
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (!isScalar(node)) return 'nothing';
  const value = node.value;
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (value === null) return 'null';
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return `a ${node.tag ?? 'tagged'} value`;
}

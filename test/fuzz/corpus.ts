// The property targets' corpus on disk (test/fuzz/<target>/*.json): every counterexample a fuzz run
// found, stored so that `make test` feeds it back to the same property as an explicit example.

import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';

/** One finding: the property's label, how fast-check reached it, and the shrunk arguments when JSON can hold them exactly. */
export interface CorpusEntry {
  readonly file: string;
  readonly property: string;
  readonly seed: number;
  readonly path: string;
  /** The failure as fast-check reported it, for the reader of the file; never read back. */
  readonly error: string;
  /** Present when the arguments survive encoding; otherwise the entry replays by seed and path. */
  readonly counterexample?: unknown[];
}

export const CORPUS_ROOT = process.env.AMBIT_FUZZ_CORPUS ?? join(import.meta.dirname, '.');

export function corpusDir(target: string): string {
  return join(CORPUS_ROOT, target);
}

/** Every entry of a target; a file that is not an entry is an error, so a corrupted corpus never passes silently. */
export function loadCorpus(target: string): CorpusEntry[] {
  const dir = corpusDir(target);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((name) => name.endsWith('.json'))
    .sort()
    .map((name) => {
      const raw: unknown = JSON.parse(readFileSync(join(dir, name), 'utf8'));
      if (!isRecord(raw) || typeof raw.property !== 'string' || typeof raw.seed !== 'number' || typeof raw.path !== 'string') {
        throw new Error(`${join(dir, name)}: not a corpus entry (needs property, seed and path); delete it or fix it`);
      }
      const args = raw.counterexample === undefined ? undefined : decode(raw.counterexample);
      if (args !== undefined && !Array.isArray(args)) throw new Error(`${join(dir, name)}: counterexample is not an argument list`);
      return { file: join(dir, name), property: raw.property, seed: raw.seed, path: raw.path, error: String(raw.error ?? ''), ...(args ? { counterexample: args } : {}) };
    });
}

/** Writes a finding and returns its path; the name hashes the content, so the same finding is one file. */
export function saveCorpusEntry(target: string, entry: Omit<CorpusEntry, 'file' | 'counterexample'>, args: readonly unknown[]): string {
  const encoded = encode(args);
  const exact = isDeepStrictEqual(decode(encoded), args);
  const body = JSON.stringify({ ...entry, ...(exact ? { counterexample: encoded } : {}) }, null, 2) + '\n';
  const name = `${entry.property}-${createHash('sha256').update(body).digest('hex').slice(0, 12)}.json`;
  mkdirSync(corpusDir(target), { recursive: true });
  const file = join(corpusDir(target), name);
  writeFileSync(file, body);
  return file;
}

// JSON with tags for what JSON alone loses: bytes, undefined, bigint, NaN, ±Infinity, -0, and keys
// that would collide with a tag.
const TAG = '$fuzz';
const OPAQUE = Symbol('a value JSON cannot hold');

function encode(value: unknown): unknown {
  if (value === undefined) return { [TAG]: 'undefined' };
  if (typeof value === 'bigint') return { [TAG]: 'bigint', v: value.toString() };
  if (typeof value === 'number' && (!Number.isFinite(value) || Object.is(value, -0))) return { [TAG]: 'number', v: String(Object.is(value, -0) ? '-0' : value) };
  if (Buffer.isBuffer(value)) return { [TAG]: 'Buffer', v: value.toString('base64') };
  if (value instanceof Uint8Array) return { [TAG]: 'Uint8Array', v: Buffer.from(value).toString('base64') };
  if (Array.isArray(value)) return value.map(encode);
  if (isRecord(value) || (typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === null)) {
    return { [TAG]: 'object', v: Object.entries(value).map(([k, v]) => [k, encode(v)]) };
  }
  // Maps, dates, functions, symbols: kept out, and the entry replays by seed and path instead.
  if ((typeof value === 'object' && value !== null) || typeof value === 'function' || typeof value === 'symbol') return { [TAG]: 'opaque' };
  return value;
}

function decode(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(decode);
  if (!isRecord(value)) return value;
  const v = value.v;
  switch (value[TAG]) {
    case 'undefined':
      return undefined;
    case 'bigint':
      return BigInt(String(v));
    case 'number':
      return v === '-0' ? -0 : Number(v);
    case 'Buffer':
      return Buffer.from(String(v), 'base64');
    case 'Uint8Array':
      return new Uint8Array(Buffer.from(String(v), 'base64'));
    case 'object': {
      // defineProperty, so that a key such as __proto__ comes back as the own property it was.
      const out: Record<string, unknown> = {};
      for (const [key, item] of v as [string, unknown][]) Object.defineProperty(out, key, { value: decode(item), enumerable: true, writable: true, configurable: true });
      return out;
    }
    case 'opaque':
      return OPAQUE;
    default:
      throw new Error(`corpus value with unknown tag ${JSON.stringify(value[TAG])}`);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && Object.getPrototypeOf(value) === Object.prototype;
}

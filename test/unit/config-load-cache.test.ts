// loadConfig with a ParsedFiles cache (what LocalFileSource keeps): a reload parses again only the files
// whose text changed, reuses the parse of the others, and forgets files that are gone.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { type ParsedFiles, loadConfig } from '../../agent/config/load.js';

const pod = (name: string, ip: string): string => `---\napiVersion: v1\nkind: Pod\nmetadata: { name: ${name}, namespace: shop }\nspec: { containers: [{ name: app, image: app:1 }] }\nstatus: { podIP: ${ip} }\n`;
const names = (r: Awaited<ReturnType<typeof loadConfig>>): string[] => r.objects.map((o) => o.metadata.name).sort();

test('an edit of one file parses that file again and reuses the parse of the others', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-parse-cache-'));
  try {
    const a = join(dir, 'a.yaml');
    const b = join(dir, 'b.yaml');
    await writeFile(a, pod('a', '10.1.0.1'));
    await writeFile(b, pod('b', '10.1.0.2'));
    const parsed: ParsedFiles = new Map();
    const first = await loadConfig([dir], undefined, parsed);
    assert.deepEqual(names(first), ['a', 'b']);
    const bBefore = parsed.get(b)!.result;
    const aBefore = parsed.get(a)!.result;

    await writeFile(a, pod('a2', '10.1.0.3'));
    const second = await loadConfig([dir], first, parsed);
    assert.deepEqual(names(second), ['a2', 'b']);
    assert.equal(parsed.get(b)!.result, bBefore, 'b.yaml did not change, yet it was parsed again');
    assert.notEqual(parsed.get(a)!.result, aBefore);

    await rm(b);
    const third = await loadConfig([dir], second, parsed);
    assert.deepEqual(names(third), ['a2']);
    assert.deepEqual([...parsed.keys()], [a], 'a removed file stays in the cache');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

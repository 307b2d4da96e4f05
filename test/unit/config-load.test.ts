// agent/config/load: directory expansion, duplicates within and across files, and the last-good rules
// that let `ambit run` keep serving when a user saves a bad edit.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { formatDiagnostic } from '../../agent/config/diagnostics.js';
import { listConfigFiles, loadConfig, parseConfigFile, resolveConfig } from '../../agent/config/load.js';

const fixtures = fileURLToPath(new URL('../fixtures/config/mesh', import.meta.url));
const names = (objects: readonly { kind: string; metadata: { namespace: string; name: string } }[]) =>
  objects.map((o) => `${o.kind} ${o.metadata.namespace}/${o.metadata.name}`);

const ns = (name: string) => `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n`;
const pod = (name: string, port: string) =>
  `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${name}\nspec:\n  containers:\n    - name: c\n      ports: [{containerPort: ${port}}]\n`;

test('directories expand recursively to sorted *.yaml/*.yml, skipping dot files; a missing path is a diagnostic', async () => {
  const listed = await listConfigFiles([fixtures, join(fixtures, '10-apps.yaml'), join(fixtures, 'nope.yaml')]);
  assert.deepEqual(listed.files, [join(fixtures, '10-apps.yaml'), join(fixtures, 'istio/policy.yml')]);
  assert.deepEqual(listed.diagnostics.map(formatDiagnostic), [`${join(fixtures, 'nope.yaml')}:1: cannot read configuration: no such file or directory`]);
  const loaded = await loadConfig([fixtures]);
  assert.deepEqual(loaded.diagnostics, []);
  assert.deepEqual(names(loaded.objects), ['Namespace /shop', 'Pod shop/web', 'PeerAuthentication shop/default']);
});

test('duplicates within and across files: the first wins, the later one is an error naming the first', () => {
  const a = parseConfigFile(`${ns('shop')}---\n${pod('web', '80')}---\n${pod('web', '81')}`, 'a.yaml');
  const b = parseConfigFile(pod('web', '82'), 'b.yaml');
  const resolved = resolveConfig([a, b]);
  assert.deepEqual(resolved.diagnostics.map(formatDiagnostic), [
    'a.yaml:15: Pod default/web: already defined at a.yaml:6; this duplicate is ignored',
    'b.yaml:1: Pod default/web: already defined at a.yaml:6; this duplicate is ignored',
  ]);
  assert.deepEqual(names(resolved.objects), ['Namespace /shop', 'Pod default/web']);
  const web = resolved.objects[1];
  assert.equal(web?.kind === 'Pod' && web.spec.containers[0]?.ports[0]?.containerPort, 80);
});

test('an object rejected now keeps its last good version; the rest of the edit applies', () => {
  const good = resolveConfig([parseConfigFile(`${ns('shop')}---\n${pod('web', '80')}`, 'a.yaml')]);
  const edit = parseConfigFile(`${ns('shop')}---\n${ns('extra')}---\n${pod('web', 'eighty')}`, 'a.yaml');
  const resolved = resolveConfig([edit], good);
  assert.deepEqual(resolved.diagnostics.map(formatDiagnostic), [
    'a.yaml:18: Pod default/web: spec.containers[0].ports[0].containerPort: expected an integer from 1 to 65535, got "eighty"',
    'a.yaml:11: Pod default/web: warning: keeping the last good version (loaded from a.yaml:6) until the errors are fixed',
  ]);
  assert.deepEqual(names(resolved.objects), ['Namespace /shop', 'Namespace /extra', 'Pod default/web']);
  assert.equal(resolved.objects[2], good.objects[1], 'the very object that was in force');
  // Fixed later, the new version replaces the kept one; without a last good version, nothing is kept.
  assert.deepEqual(names(resolveConfig([edit]).objects), ['Namespace /shop', 'Namespace /extra']);
});

test('a file that does not parse keeps every object it last defined; other files load normally', () => {
  const good = resolveConfig([parseConfigFile(`${ns('shop')}---\n${pod('web', '80')}`, 'a.yaml'), parseConfigFile(ns('other'), 'b.yaml')]);
  const broken = parseConfigFile('apiVersion: v1\nkind: Namespace\nmetadata: {name: [shop\n', 'a.yaml');
  assert.equal(broken.readable, false);
  const resolved = resolveConfig([broken, parseConfigFile(ns('third'), 'b.yaml')], good);
  assert.deepEqual(resolved.diagnostics.map(formatDiagnostic).slice(1), ['a.yaml:1: warning: keeping the 2 objects last loaded from here until it can be read again']);
  assert.match(formatDiagnostic(resolved.diagnostics[0]!), /^a\.yaml:\d: invalid YAML: /);
  assert.deepEqual(names(resolved.objects), ['Namespace /shop', 'Pod default/web', 'Namespace /third']);
});

test('loadConfig reads from disk and carries the last good state across reloads', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-config-'));
  try {
    const file = join(dir, 'mesh.yaml');
    await writeFile(file, `${ns('shop')}---\n${pod('web', '80')}`);
    const first = await loadConfig([dir]);
    assert.deepEqual(names(first.objects), ['Namespace /shop', 'Pod default/web']);
    await writeFile(file, 'kind: [\n');
    const second = await loadConfig([dir], first);
    assert.deepEqual(names(second.objects), ['Namespace /shop', 'Pod default/web']);
    assert.equal(second.diagnostics.filter((d) => d.severity === 'error').length, 1);
    await rm(file);
    const third = await loadConfig([dir], second);
    assert.deepEqual(third.objects, [], 'deleting a file from a directory deletes its objects');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// Pinned maps across agent versions, on the real kernel: loading an object reuses pins whose
// definition matches (their contents survive a restart) and replaces a pin left with another
// definition (as an upgrade that changed a map leaves it), instead of failing the whole load.
//
// Needs root and bpffs. Pins live under /sys/fs/bpf/ambit/tpins-<pid> and are removed after the test.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  BPFFS,
  BpfObject,
  PIN_PARENT,
  REASONS,
  type InboundProgram,
  bpfObjectPath,
  ensureBpffs,
  openAmbitMaps,
  pinRoot,
  setEnrolled,
} from '../../agent/redirect/bpf-binding.js';

const pinDir = pinRoot(`tpins-${process.pid}`);
const BPFFS_PRELOADED = new Set(['maps.debug', 'progs.debug']);
let mountedBpffs = false;

/** bpftool's view of a pinned map: its id and size. */
function pinned(name: string): { id: number; max_entries: number } {
  return JSON.parse(execFileSync('bpftool', ['-j', 'map', 'show', 'pinned', join(pinDir, name)], { encoding: 'utf8' })) as { id: number; max_entries: number };
}

before(() => {
  if (process.getuid?.() !== 0) throw new Error('pinned-map tests need root (bpf)');
  const mounted = ensureBpffs();
  if (!mounted.ok) throw new Error(mounted.error.message);
  mountedBpffs = mounted.value;
});

after(() => {
  rmSync(pinDir, { recursive: true, force: true });
  try {
    if (readdirSync(PIN_PARENT).length === 0) execFileSync('rmdir', [PIN_PARENT]);
  } catch {
    // gone already, or another agent's pins live there
  }
  if (mountedBpffs) {
    try {
      if (readdirSync(BPFFS).every((entry) => BPFFS_PRELOADED.has(entry))) execFileSync('umount', [BPFFS]);
    } catch {
      // in use: leave it
    }
  }
});

test('a pin with another definition is replaced and reported; pins that match are reused with their contents', () => {
  const path = bpfObjectPath('inbound_tc');
  assert.ok(path.ok, path.ok ? '' : path.error.message);
  const load = (): BpfObject<InboundProgram> => {
    const loaded = BpfObject.load<InboundProgram>(path.value, pinDir);
    assert.ok(loaded.ok, loaded.ok ? '' : loaded.error.message);
    return loaded.value;
  };

  const first = load();
  assert.deepEqual(first.replacedPins, []);
  first.close();
  const maps = openAmbitMaps(pinDir);
  assert.ok(maps.ok, maps.ok ? '' : maps.error.message);
  assert.ok(setEnrolled(maps.value, '10.250.77.9', true).ok);
  for (const map of Object.values(maps.value)) map.close();
  const enrolledId = pinned('ambit_enrolled').id;

  // What an agent version with fewer decision counters would have left: the same map, smaller.
  rmSync(join(pinDir, 'ambit_stats'));
  execFileSync('bpftool', ['map', 'create', join(pinDir, 'ambit_stats'), 'type', 'percpu_array', 'key', '4', 'value', '8', 'entries', '3', 'name', 'ambit_stats']);
  assert.equal(pinned('ambit_stats').max_entries, 3);

  const second = load();
  assert.deepEqual(second.replacedPins, ['ambit_stats']);
  second.close();
  assert.equal(pinned('ambit_stats').max_entries, REASONS.length, 'the replaced map has this version\'s definition');
  assert.equal(pinned('ambit_enrolled').id, enrolledId, 'a matching pin is reused, not recreated');
  const again = openAmbitMaps(pinDir);
  assert.ok(again.ok, again.ok ? '' : again.error.message);
  assert.deepEqual(again.value.enrolled.keys(), { ok: true, value: ['10.250.77.9'] });
  for (const map of Object.values(again.value)) map.close();

  // A third load finds everything as this version declares it.
  const third = load();
  assert.deepEqual(third.replacedPins, []);
  third.close();
});

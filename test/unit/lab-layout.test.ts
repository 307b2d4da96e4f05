// A lab removes only what is its own: lab names may contain '-', so one lab's name can begin another's.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LabLayout } from '../../agent/lab/layout.js';

const tbench = new LabLayout('tbench', '/sys/fs/cgroup');
const l7 = new LabLayout('tbench-l7', '/sys/fs/cgroup');
// A longer name that reads like one of tbench's own namespaces (ambit-tbench-n-fabric: node "fabric"?).
const n = new LabLayout('tbench-n', '/sys/fs/cgroup');
const labs = ['tbench', 'tbench-l7', 'tbench-n'];

test("a lab's namespaces are its own, not those of a lab whose name begins with its name", () => {
  for (const name of [tbench.fabricNetns, tbench.nodeNetns('alpha'), tbench.podNetns('shop', 'client')]) assert.ok(tbench.ownsNetns(name, labs), name);
  for (const other of [l7, n]) {
    for (const name of [other.fabricNetns, other.nodeNetns('alpha'), other.podNetns('mesh', 'client')]) {
      assert.equal(tbench.ownsNetns(name, labs), false, `lab tbench must leave ${name} to lab ${other.name}`);
      assert.ok(other.ownsNetns(name, labs), name);
    }
  }
  assert.equal(tbench.ownsNetns('ambit-tbench-other', labs), false, 'a name in no shape the lab makes is not its own');
});

test("a lab's leftovers are still found when its state is gone, and a gone longer lab's too", () => {
  assert.ok(tbench.ownsNetns(tbench.nodeNetns('alpha'), []));
  // Nothing knows tbench-l7 any more: its node namespace has tbench's shape only if it reads n-/p-/fabric after the prefix.
  assert.equal(tbench.ownsNetns(l7.nodeNetns('alpha'), []), false);
});

test("a lab's bpffs pins are its own, not those of a lab whose name begins with its name", () => {
  assert.ok(tbench.ownsBpfScope(tbench.bpfScope('alpha'), labs));
  assert.equal(tbench.ownsBpfScope(l7.bpfScope('alpha'), labs), false);
  assert.ok(l7.ownsBpfScope(l7.bpfScope('alpha'), labs));
});

// Finding pods' cgroups: the lab's template, and the kubelet's layouts by pod UID (systemd and cgroupfs
// drivers, Guaranteed, Burstable and BestEffort), on a directory tree shaped like a node's.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { kubepodsResolver, podCgroupFromTemplate } from '../../agent/redirect/pod-cgroups.js';
import type { Workload } from '../../agent/state/model.js';

const root = mkdtempSync(join(tmpdir(), 'ambit-cgroups-'));
after(() => rmSync(root, { recursive: true, force: true }));

const pod = (uid: string, name = 'web', namespace = 'shop'): Workload => ({ uid, name, namespace }) as Workload;

test('a template names the pod by namespace, name and uid', () => {
  assert.equal(podCgroupFromTemplate('/cg/lab/{namespace}.{name}/{uid}')(pod('u-1')), '/cg/lab/shop.web/u-1');
});

test('kubepods finds the kubelet\'s directory of the pod\'s UID whatever the driver and QoS class', () => {
  const uids = {
    systemdBurstable: '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0',
    systemdGuaranteed: '11111111-2222-3333-4444-555555555555',
    cgroupfsBestEffort: 'abcdefab-cdef-abcd-efab-cdefabcdefab',
    cgroupfsGuaranteed: '99999999-8888-7777-6666-555555555555',
  };
  const dirs = {
    systemdBurstable: join(root, 'kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0.slice'),
    systemdGuaranteed: join(root, 'kubepods.slice/kubepods-pod11111111_2222_3333_4444_555555555555.slice'),
    cgroupfsBestEffort: join(root, 'kubepods/besteffort/podabcdefab-cdef-abcd-efab-cdefabcdefab'),
    cgroupfsGuaranteed: join(root, 'kubepods/pod99999999-8888-7777-6666-555555555555'),
  };
  for (const dir of Object.values(dirs)) mkdirSync(dir, { recursive: true });
  const resolve = kubepodsResolver(root);
  for (const key of Object.keys(uids) as (keyof typeof uids)[]) assert.equal(resolve(pod(uids[key])), dirs[key], key);
  assert.equal(resolve(pod('12345678-1234-1234-1234-123456789012')), undefined, 'a pod not (yet) on this node has no cgroup');
  assert.equal(resolve(pod('shop/web')), undefined, 'without metadata.uid there is nothing to look for');
});

// Where a pod's cgroup v2 directory is, so that the capture programs can be attached to it. The lab
// knows its own layout (a template); on a Kubernetes node the kubelet decides, by cgroup driver and
// QoS class, and `kubepods` finds the pod by its UID in whichever of the kubelet's layouts exists.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Workload } from '../state/model.js';

/** The pod's cgroup directory, or undefined when it does not exist (yet). */
export type PodCgroupResolver = (workload: Workload) => string | undefined;

/** `--pod-cgroup kubepods`: discover the kubelet's directory for the pod. */
export const KUBEPODS = 'kubepods';

/** Fills a template's `{namespace}`, `{name}` and `{uid}` placeholders. */
export function podCgroupFromTemplate(template: string): PodCgroupResolver {
  return (w) => template.replaceAll('{namespace}', w.namespace).replaceAll('{name}', w.name).replaceAll('{uid}', w.uid);
}

/**
 * The kubelet's pod cgroup candidates under `root` (the host's cgroup2 mount), for both cgroup drivers
 * and the three QoS classes (Guaranteed pods sit directly under kubepods):
 *   systemd:  kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _>.slice
 *   cgroupfs: kubepods/burstable/pod<uid>
 */
export function kubepodsCandidates(root: string, uid: string): string[] {
  const underscored = uid.replaceAll('-', '_');
  const candidates: string[] = [];
  for (const qos of ['', 'burstable', 'besteffort']) {
    candidates.push(
      qos === ''
        ? join(root, 'kubepods.slice', `kubepods-pod${underscored}.slice`)
        : join(root, 'kubepods.slice', `kubepods-${qos}.slice`, `kubepods-${qos}-pod${underscored}.slice`),
      qos === '' ? join(root, 'kubepods', `pod${uid}`) : join(root, 'kubepods', qos, `pod${uid}`),
    );
  }
  return candidates;
}

/**
 * Finds the pod by UID. A pod without a UID (local YAML without metadata.uid) cannot be found this way:
 * undefined, which capture reports as "cgroup unknown" for that pod alone.
 */
export function kubepodsResolver(root: string, exists: (path: string) => boolean = existsSync): PodCgroupResolver {
  return (w) => {
    if (!/^[0-9a-f-]{36}$/i.test(w.uid)) return undefined;
    return kubepodsCandidates(root, w.uid).find(exists);
  };
}

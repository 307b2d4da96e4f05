// A pod's workload name as istiod derives it (its Deployment, CronJob, ... rather than the pod), which
// /config_dump shows as `workloadName` and which names the canonical service when no label does.

import type { ObjectMeta } from '../config/kubernetes.js';

/** Overrides every derivation, even when empty (istiod tests presence, not value). */
export const WORKLOAD_NAME_LABEL = 'service.istio.io/workload-name';

/** A Job a CronJob made is named `<cronjob>-<scheduled time in minutes>`, 8 to 10 digits. */
const CRONJOB_JOB_NAME = /^(.+)-\d{8,10}$/;

/**
 * The label if present; else, for a pod a controller generated, the controller's name with the
 * suffix its own controller added removed (a ReplicaSet's pod-template-hash gives its Deployment, an
 * Argo Rollout's rollouts-pod-template-hash its Rollout, an OpenShift DeploymentConfig's label its
 * name, a Job's timestamp its CronJob); else the pod's own name.
 */
export function workloadName(pod: Pick<ObjectMeta, 'name' | 'labels' | 'generateName' | 'controller'>): string {
  const label = pod.labels[WORKLOAD_NAME_LABEL];
  if (label !== undefined) return label;
  return (pod.generateName ? controllerWorkload(pod) : undefined) || pod.name;
}

function controllerWorkload(pod: Pick<ObjectMeta, 'labels' | 'controller'>): string | undefined {
  const owner = pod.controller;
  if (!owner) return undefined;
  const hashed = (label: string): string | undefined => {
    const hash = pod.labels[label];
    if (!hash || !owner.name.endsWith(hash)) return undefined;
    // As Go's TrimSuffix: a name that ends in the hash without its dash stays whole.
    return owner.name.endsWith(`-${hash}`) ? owner.name.slice(0, -hash.length - 1) : owner.name;
  };
  switch (owner.kind) {
    case 'ReplicaSet':
      return hashed('pod-template-hash') ?? hashed('rollouts-pod-template-hash') ?? owner.name;
    case 'ReplicationController':
      return pod.labels['deploymentconfig'] || owner.name;
    case 'Job':
      return CRONJOB_JOB_NAME.exec(owner.name)?.[1] ?? owner.name;
    default:
      return owner.name;
  }
}

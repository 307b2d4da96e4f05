// The agent's state as `/config_dump` shows it, in the JSON shape ztunnel's admin server writes and
// `istioctl ztunnel-config` reads (camelCase, ztunnel's field names, its sort orders), so that Istio's
// own tooling inspects an Ambit node as it inspects ztunnel. docs/admin-api.md describes each field.

import type { CertificateStatus } from '../identity/certificate-manager.js';
import type { MeshSnapshot } from '../state/model.js';
import type { LiveConnection } from '../tunnel/live-connections.js';
import { type BuildInfo, buildInfo } from './build-info.js';
import { type CertsDump, certificatesDump } from './dump-certificates.js';
import { type WorkloadStateDump, workloadStateDump } from './dump-connections.js';
import { type ServiceDump, type WorkloadDump, serviceMembers, servicesDump, workloadsDump } from './dump-mesh.js';
import { type PolicyDump, policiesDump } from './dump-policies.js';

export type { CertDump, CertsDump } from './dump-certificates.js';
export type { ConnectionDump, WorkloadStateDump } from './dump-connections.js';
export type { EndpointDump, ServiceDump, WorkloadDump } from './dump-mesh.js';
export type { PolicyDump, RbacMatchDump, StringMatchDump } from './dump-policies.js';
export { workloadUid } from './dump-mesh.js';

export interface ConfigDump {
  /** Sorted by uid. */
  readonly workloads: readonly WorkloadDump[];
  /** Sorted by hostname. */
  readonly services: readonly ServiceDump[];
  /** Sorted by namespace/name. */
  readonly policies: readonly PolicyDump[];
  /** ztunnel's BuildInfo keys. */
  readonly version: BuildInfo;
  readonly config: { readonly node: string; readonly trustDomain: string; readonly clusterDomain: string };
  readonly certificates: readonly CertsDump[];
  readonly workloadState: Readonly<Record<string, WorkloadStateDump>>;
  /** Ambit's own: the configuration snapshot shown, which increases with every accepted change. */
  readonly snapshotVersion: number;
}

/** What the data path knows that the snapshot does not; absent when nothing is captured (--capture none). */
export interface RuntimeState {
  readonly certificates?: readonly CertificateStatus[];
  readonly connections?: readonly LiveConnection[];
}

export function buildConfigDump(snapshot: MeshSnapshot, node: string, runtime: RuntimeState = {}): ConfigDump {
  const members = serviceMembers(snapshot);
  return {
    workloads: workloadsDump(snapshot, members),
    services: servicesDump(snapshot, members),
    policies: policiesDump(snapshot),
    version: buildInfo(),
    config: { node, trustDomain: snapshot.trustDomain, clusterDomain: snapshot.clusterDomain },
    certificates: certificatesDump(runtime.certificates ?? []),
    workloadState: workloadStateDump(snapshot, node, runtime.connections ?? []),
    snapshotVersion: snapshot.version,
  };
}

// A generated mesh for the state-at-scale bench: nodes, namespaces, pods spread over them and Services
// selecting five pods each, as Kubernetes objects (YAML, the API server stand-in) and as istiod's
// workload xDS resources, so the three sources are measured on the same mesh.

import { stringify } from 'yaml';
import type { KubeObject } from '../../agent/lab/kube-resources.js';
import { TunnelProtocol } from '../../agent/proto/istio/workload/workload_pb.js';
import { ip, service, workload } from '../../test/fixtures/istiod/resources.js';
import type { ResourceBody } from '../../test/fixtures/istiod/xds-server.js';

export interface MeshSize {
  readonly pods: number;
  readonly services: number;
  readonly nodes: number;
  readonly namespaces: number;
}

export const PODS_PER_SERVICE = 5;
const podIp = (i: number): string => `10.200.${i >> 8}.${i & 255}`;
const vip = (k: number): string => `10.96.${k >> 8}.${k & 255}`;
const nsOf = (i: number, size: MeshSize): string => `ns-${i % size.namespaces}`;
export const nodeName = (n: number): string => `node-${n}`;
/** Pod i belongs to Service i / 5 (while there are Services), in pod i's namespace. */
const serviceOf = (i: number, size: MeshSize): number | undefined => (Math.floor(i / PODS_PER_SERVICE) < size.services ? Math.floor(i / PODS_PER_SERVICE) : undefined);

/** Services select pods by app label; pods of Service k share its namespace because both follow k's pods. */
export function kubeObjects(size: MeshSize): KubeObject[] {
  const out: KubeObject[] = [];
  for (let n = 0; n < size.namespaces; n++) {
    out.push({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: `ns-${n}`, labels: { 'istio.io/dataplane-mode': 'ambient' } } });
    out.push({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'app', namespace: `ns-${n}` } });
  }
  for (let n = 0; n < size.nodes; n++) {
    out.push({ apiVersion: 'v1', kind: 'Node', metadata: { name: nodeName(n) }, status: { addresses: [{ type: 'InternalIP', address: `172.30.${n >> 8}.${(n & 255) + 1}` }] } });
  }
  for (let i = 0; i < size.pods; i++) out.push(kubePod(i, size));
  for (let k = 0; k < size.services; k++) {
    const ns = nsOf(k * PODS_PER_SERVICE, size);
    out.push({ apiVersion: 'v1', kind: 'Service', metadata: { name: `svc-${k}`, namespace: ns }, spec: { clusterIP: vip(k), selector: { app: `svc-${k}` }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } });
  }
  return out;
}

/** Pod i; `serviceAccount` lets the bench change one pod's identity, the change it times. */
export function kubePod(i: number, size: MeshSize, serviceAccount = 'app'): KubeObject {
  const k = serviceOf(i, size);
  // A Service's pods must share its namespace: pod i lives where its Service's first pod does.
  const ns = nsOf(k !== undefined ? k * PODS_PER_SERVICE : i, size);
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `pod-${i}`, namespace: ns, labels: { app: k !== undefined ? `svc-${k}` : `solo-${i}` } },
    spec: { nodeName: nodeName(i % size.nodes), serviceAccountName: serviceAccount, containers: [{ name: 'app', image: 'app:1', ports: [{ name: 'http', containerPort: 8080 }] }] },
    status: { phase: 'Running', podIP: podIp(i), podIPs: [{ ip: podIp(i) }], conditions: [{ type: 'Ready', status: 'True' }] },
  };
}

/** The same mesh as multi-document YAML, cut into files under `maxBytes` each (the agent's per-file limit). */
export function yamlFiles(objects: readonly KubeObject[], maxBytes: number): string[] {
  const files: string[] = [];
  let current = '';
  for (const o of objects) {
    const doc = `---\n${stringify(o)}`;
    if (current.length + doc.length > maxBytes) [files[files.length], current] = [current, ''];
    current += doc;
  }
  if (current) files.push(current);
  return files;
}

export interface XdsResource {
  readonly name: string;
  readonly version: string;
  readonly body: ResourceBody;
}

const hostOf = (k: number, size: MeshSize): string => `svc-${k}.${nsOf(k * PODS_PER_SERVICE, size)}.svc.cluster.local`;

export function xdsWorkload(i: number, size: MeshSize, serviceAccount = 'app', version = '1'): XdsResource {
  const k = serviceOf(i, size);
  const ns = nsOf(k !== undefined ? k * PODS_PER_SERVICE : i, size);
  const uid = `Kubernetes//Pod/${ns}/pod-${i}`;
  return {
    name: uid,
    version,
    body: workload({
      uid,
      name: `pod-${i}`,
      namespace: ns,
      addresses: [ip(podIp(i))],
      node: nodeName(i % size.nodes),
      tunnelProtocol: TunnelProtocol.HBONE,
      serviceAccount,
      canonicalName: k !== undefined ? `svc-${k}` : `solo-${i}`,
      canonicalRevision: 'v1',
      services: k !== undefined ? { [`${ns}/${hostOf(k, size)}`]: { ports: [{ servicePort: 80, targetPort: 8080 }] } } : {},
    }),
  };
}

export function xdsResources(size: MeshSize): XdsResource[] {
  const out: XdsResource[] = [];
  for (let i = 0; i < size.pods; i++) out.push(xdsWorkload(i, size));
  for (let k = 0; k < size.services; k++) {
    const ns = nsOf(k * PODS_PER_SERVICE, size);
    out.push({ name: `${ns}/${hostOf(k, size)}`, version: '1', body: service({ name: `svc-${k}`, namespace: ns, hostname: hostOf(k, size), addresses: [{ network: '', address: ip(vip(k)) }], ports: [{ servicePort: 80, targetPort: 8080 }] }) });
  }
  return out;
}

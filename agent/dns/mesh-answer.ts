// What the DNS proxy answers from the mesh, decided from the snapshot alone: address records for the
// names of Services and ServiceEntry hosts a pod may use (Istio's DNS capture), including a ServiceEntry
// host with one of the pod's search domains appended, so the resolver's search walk ends at once.
// Every other question goes to the pod's own DNS server unchanged.

import { isIPv4, isIPv6 } from 'node:net';
import type { MeshService, MeshSnapshot, Workload } from '../state/model.js';
import { serviceVisibleTo } from '../state/model.js';
import { type AddressRecord, CLASS_IN, type DnsQuestion, TYPE_A, TYPE_AAAA } from './wire.js';

/** Istio's per-pod opt-out of ambient DNS capture (since 1.25, when capture became the default). */
export const DNS_CAPTURE_ANNOTATION = 'ambient.istio.io/dns-capture';

/** Whether a pod's DNS (UDP and TCP port 53) is to be captured: every enrolled pod, unless it says "false". */
export function capturesDns(workload: Workload): boolean {
  return workload.enrollment.enrolled && workload.entry === undefined && workload.annotations[DNS_CAPTURE_ANNOTATION]?.toLowerCase() !== 'false';
}

/** The TTL of the proxy's answers (ztunnel's 30 s): short, since a snapshot may change them. */
export const MESH_ANSWER_TTL = 30;

export type MeshAnswer =
  | { readonly kind: 'answer'; readonly service: MeshService; readonly records: readonly AddressRecord[] }
  | { readonly kind: 'forward' };

/** Kubernetes' search list for a pod with dnsPolicy ClusterFirst, which its resolv.conf carries. */
export function podSearchDomains(namespace: string, clusterDomain: string): string[] {
  return [`${namespace}.svc.${clusterDomain}`, `svc.${clusterDomain}`, clusterDomain];
}

/** The mesh's answer to `question` from `client`, or forward when the mesh does not own the name. */
export function meshAnswer(snapshot: MeshSnapshot, client: Workload, question: DnsQuestion, searchDomains = podSearchDomains(client.namespace, snapshot.clusterDomain)): MeshAnswer {
  if (question.class !== CLASS_IN || (question.type !== TYPE_A && question.type !== TYPE_AAAA)) return { kind: 'forward' };
  const service = serviceNamed(snapshot, client, question.name, searchDomains);
  // A service without an address (headless, a ServiceEntry with resolution NONE) has nothing to say here.
  if (!service || service.vips.length === 0) return { kind: 'forward' };
  const family = question.type === TYPE_A ? isIPv4 : isIPv6;
  const records = service.vips.filter((vip) => family(vip)).map((vip) => addressRecord(vip));
  return { kind: 'answer', service, records };
}

function serviceNamed(snapshot: MeshSnapshot, client: Workload, name: string, searchDomains: readonly string[]): MeshService | undefined {
  const exact = snapshot.servicesByHostname.get(name);
  if (exact && serviceVisibleTo(exact, client.namespace)) return exact;
  // "api.example" under ndots:5 is first asked as "api.example.<namespace>.svc.cluster.local": a ServiceEntry
  // host is answered there (a Kubernetes name is answered by its own full name, as kube-dns would).
  for (const domain of searchDomains) {
    if (!name.endsWith(`.${domain}`)) continue;
    const host = snapshot.servicesByHostname.get(name.slice(0, -domain.length - 1));
    if (host?.entry && serviceVisibleTo(host, client.namespace)) return host;
  }
  return undefined;
}

/** The A or AAAA record of one address. */
export function addressRecord(ip: string): AddressRecord {
  if (isIPv4(ip)) return { type: TYPE_A, address: Uint8Array.from(ip.split('.').map(Number)) };
  return { type: TYPE_AAAA, address: ipv6Bytes(ip) };
}

function ipv6Bytes(ip: string): Uint8Array {
  const [head = '', tail] = ip.split('::');
  const groups = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => Number.parseInt(g, 16)));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const all = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}

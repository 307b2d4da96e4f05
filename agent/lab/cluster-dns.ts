// The lab's cluster DNS, its kube-dns: on the fabric, it answers `<service>.<namespace>.svc.<domain>`
// for the lab's Kubernetes Services (the ClusterIP, or a headless Service's ready endpoints), pods'
// `<a-b-c-d>.<namespace>.pod.<domain>` names, and NXDOMAIN for every other name, as CoreDNS's
// kubernetes plugin does for a cluster with no upstream.
// Each pod's resolv.conf points at it with Kubernetes' search list and ndots:5, so the lab's pods
// resolve names the way a cluster's do, and the agents' DNS proxy forwards to it what the mesh does not
// answer. It knows no ServiceEntry host: those only the mesh's DNS proxy answers, as in a cluster.

import { isIPv4, isIPv6 } from 'node:net';
import { join } from 'node:path';
import { listenDns } from '../dns/dns-listener.js';
import { addressRecord, podSearchDomains } from '../dns/mesh-answer.js';
import {
  type AddressRecord,
  CLASS_IN,
  type DnsQuestion,
  RCODE_NOERROR,
  RCODE_NXDOMAIN,
  TYPE_A,
  TYPE_AAAA,
  encodeFormatError,
  encodeResponse,
  parseQuery,
} from '../dns/wire.js';
import type { MeshService, MeshSnapshot } from '../state/model.js';
import type { Logger } from '../telemetry/log.js';
import type { LabLayout } from './layout.js';

/**
 * Where the lab's cluster DNS listens: an address on the fabric bridge, routed from every node and back
 * to every pod. Link-local like the lab's API server, so it clashes with no lab or machine range. In a
 * lab of several clusters each cluster's fabric has its own, at the same address (as every cluster's
 * kube-dns may have the same ClusterIP).
 */
export const LAB_CLUSTER_DNS = { ip: '169.254.100.10', port: 53 } as const;
/** The supervisor's name for a cluster's DNS process (one per cluster, `id` absent in a lab of one), in status.json and `lab status`. */
export function clusterDnsId(cluster: string | undefined): string {
  return cluster === undefined ? 'control-plane/cluster-dns' : `control-plane/cluster-dns-${cluster}`;
}
/** CoreDNS's kubernetes plugin answers with a TTL of 5 s; the mesh's proxy with 30 s, so a test can tell them apart. */
export const CLUSTER_DNS_TTL = 5;

export function clusterDnsCgroup(layout: LabLayout, cluster: string | undefined): string {
  return join(layout.cgroupDir, cluster === undefined ? 'cluster-dns' : `cluster-dns-${cluster}`);
}

export function clusterDnsLog(layout: LabLayout, cluster: string | undefined): string {
  return join(layout.logDir, cluster === undefined ? 'cluster-dns.log' : `cluster-dns-${cluster}.log`);
}

/** A pod's resolv.conf with dnsPolicy ClusterFirst, as the kubelet writes it. */
export function podResolvConf(namespace: string, clusterDomain: string): string {
  return [
    '# Written by ambit lab: the lab\'s cluster DNS, as the kubelet writes resolv.conf for dnsPolicy ClusterFirst.',
    `search ${podSearchDomains(namespace, clusterDomain).join(' ')}`,
    `nameserver ${LAB_CLUSTER_DNS.ip}`,
    'options ndots:5',
    '',
  ].join('\n');
}

export interface ClusterDnsAnswer {
  readonly rcode: typeof RCODE_NOERROR | typeof RCODE_NXDOMAIN;
  readonly records: readonly AddressRecord[];
}

/**
 * What the cluster DNS says to `question`: a Kubernetes Service's addresses, a pod's for its
 * `<a-b-c-d>.<namespace>.pod.<domain>` name, no data for other types, or NXDOMAIN.
 */
export function clusterDnsAnswer(snapshot: MeshSnapshot, question: DnsQuestion): ClusterDnsAnswer {
  const service = snapshot.servicesByHostname.get(question.name);
  // A ServiceEntry host is the mesh's to answer; kube-dns has never heard of it.
  const addresses = service && !service.entry ? serviceAddresses(service) : podAddress(snapshot, question.name);
  if (!addresses) return { rcode: RCODE_NXDOMAIN, records: [] };
  if (question.class !== CLASS_IN || (question.type !== TYPE_A && question.type !== TYPE_AAAA)) return { rcode: RCODE_NOERROR, records: [] };
  const family = question.type === TYPE_A ? isIPv4 : isIPv6;
  return { rcode: RCODE_NOERROR, records: addresses.filter((ip) => family(ip)).map((ip) => addressRecord(ip)) };
}

/**
 * `10-9-1-7.shop.pod.cluster.local`: the pod at 10.9.1.7 when one of that namespace has the address
 * (CoreDNS's `pods verified`). Ztunnel forwards such names, so they reach this server through the proxy.
 */
function podAddress(snapshot: MeshSnapshot, name: string): string[] | undefined {
  const suffix = `.pod.${snapshot.clusterDomain}`;
  if (!name.endsWith(suffix)) return undefined;
  const [dashed = '', namespace, ...rest] = name.slice(0, -suffix.length).split('.');
  const ip = dashed.replaceAll('-', '.');
  const pod = snapshot.workloadsByIp.get(ip);
  return pod !== undefined && pod.entry === undefined && pod.namespace === namespace && rest.length === 0 ? [ip] : undefined;
}

/** A ClusterIP Service answers its VIPs; a headless one (clusterIP: None) its ready endpoints' addresses. */
function serviceAddresses(service: MeshService): string[] {
  return service.vips.length > 0 ? [...service.vips] : [...new Set(service.endpoints.map((e) => e.ip))];
}

const TYPE_NAMES: Readonly<Record<number, string>> = { [TYPE_A]: 'A', [TYPE_AAAA]: 'AAAA' };

/**
 * Serves the lab's Services on LAB_CLUSTER_DNS (UDP and TCP) until SIGTERM or SIGINT (`ambit lab
 * cluster-dns`, run by the supervisor in the fabric namespace), following the YAML as the user edits
 * it. Every query is logged with the address it came from: a test tells a pod's own query from one the
 * node's agent forwarded.
 */
export async function serveClusterDns(
  configPaths: readonly string[],
  settings: { readonly trustDomain: string; readonly clusterDomain: string },
  log: Logger,
): Promise<void> {
  // Loaded here, not with the module: `lab exec` and `lab logs` read this file's names and paths only.
  const [{ LocalFileSource }, { WorkloadStore }] = await Promise.all([import('../sources/local-files.js'), import('../state/store.js')]);
  const store = new WorkloadStore();
  const source = new LocalFileSource({ paths: configPaths, trustDomain: settings.trustDomain, clusterDomain: settings.clusterDomain }, store, log);
  await source.load();
  await source.watch();
  const listener = await listenDns(
    LAB_CLUSTER_DNS.ip,
    LAB_CLUSTER_DNS.port,
    async (message, client, transport) => {
      const parsed = parseQuery(message);
      if (!parsed.ok) return parsed.reason === 'malformed' && parsed.id !== undefined ? encodeFormatError(parsed.id) : undefined;
      const snapshot = store.current;
      if (!snapshot) return undefined;
      const { question } = parsed.query;
      const answer = clusterDnsAnswer(snapshot, question);
      const rcode = answer.rcode === RCODE_NXDOMAIN ? 'NXDOMAIN' : 'NOERROR';
      const type = TYPE_NAMES[question.type] ?? `TYPE${question.type}`;
      const fields = { client: client.ip, transport, name: question.name, type, rcode, answers: answer.records.length };
      log.info(fields, `${question.name} ${type} from ${client.ip} over ${transport}: ${rcode}`);
      return encodeResponse(parsed.query, answer.rcode, answer.records, CLUSTER_DNS_TTL, true);
    },
    log,
    false,
  );
  const address = `${LAB_CLUSTER_DNS.ip}:${LAB_CLUSTER_DNS.port}`;
  log.info({ address }, `cluster DNS listening on ${address} (UDP and TCP), serving the Services and pods of ${configPaths.join(', ')}`);
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info({ signal }, 'cluster DNS stopping');
      listener.close();
      source.close();
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

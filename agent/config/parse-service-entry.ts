// ServiceEntry and WorkloadEntry (networking.istio.io): services outside Kubernetes (external APIs, VMs)
// and the workloads behind them, parsed with istiod's validation so that buildSnapshot only sees entries
// the data path can carry.

import { readExportTo, readHost } from './istio-common.js';
import type { ExportTo, WorkloadSelector } from './istio-networking.js';
import type { Labels, ObjectBase } from './kubernetes.js';
import { type Field, type MapReader, PORT_RANGE } from './yaml-reader.js';

/** Istio's port protocols; HTTP-family ones make the port L7 as a Service port's name would. */
export const SERVICE_ENTRY_PROTOCOLS = ['HTTP', 'HTTPS', 'GRPC', 'GRPC-WEB', 'HTTP2', 'MONGO', 'REDIS', 'MYSQL', 'TCP', 'TLS', 'UDP'] as const;
export type ServiceEntryProtocol = (typeof SERVICE_ENTRY_PROTOCOLS)[number];

export interface ServiceEntryPort {
  readonly number: number;
  readonly name: string;
  readonly protocol?: ServiceEntryProtocol;
  readonly targetPort?: number;
}

/** An endpoint as written in a ServiceEntry or a WorkloadEntry's spec (the same WorkloadEntry message). */
export interface EntryEndpoint {
  /** An IP, or a host name for resolution DNS; absent: a network-gateway-only endpoint (refused here). */
  readonly address: string;
  /** Port name → the port this endpoint serves it on. */
  readonly ports: Readonly<Record<string, number>>;
  readonly labels: Labels;
  /** Present: the endpoint is a mesh workload with this identity and is reached over HBONE. */
  readonly serviceAccount?: string;
  readonly weight?: number;
  readonly locality?: string;
}

export type Resolution = 'NONE' | 'STATIC' | 'DNS' | 'DNS_ROUND_ROBIN';
export type MeshLocation = 'MESH_EXTERNAL' | 'MESH_INTERNAL';

export interface ServiceEntryObject extends ObjectBase<'ServiceEntry'> {
  readonly spec: {
    readonly hosts: readonly string[];
    /** IPs (CIDRs are kept for passthrough matching only by istiod's sidecars: refused here, see parser). */
    readonly addresses: readonly string[];
    readonly ports: readonly ServiceEntryPort[];
    readonly location: MeshLocation;
    readonly resolution: Resolution;
    readonly endpoints: readonly EntryEndpoint[];
    readonly workloadSelector?: WorkloadSelector;
    readonly exportTo: ExportTo;
    readonly subjectAltNames: readonly string[];
  };
}

export interface WorkloadEntryObject extends ObjectBase<'WorkloadEntry'> {
  readonly spec: EntryEndpoint;
}

/** The label that opts a ServiceEntry out of Istio's automatic VIP allocation. */
export const AUTOALLOCATE_LABEL = 'networking.istio.io/enable-autoallocate-ip';

export function parseServiceEntry(root: MapReader, base: ObjectBase<'ServiceEntry'>): ServiceEntryObject | undefined {
  const spec = root.require('spec')?.map();
  const hostsField = spec?.require('hosts');
  const hosts = spec?.strings('hosts', (item) => readHost(item, { wildcard: true })) ?? [];
  if (hostsField && hosts.length === 0) hostsField.fail('expected at least one host');
  const addresses = spec?.strings('addresses', (item) => item.ip()) ?? [];
  const portFields = spec?.maps('ports') ?? [];
  const ports = portFields.flatMap((p) => readPort(p) ?? []);
  const names = new Set<string>();
  const numbers = new Set<number>();
  for (const port of ports) {
    // istiod refuses both: endpoints name ports, and one number cannot be two services.
    if (names.has(port.name)) spec?.ctx.error(spec.line, `${spec.path}.ports`, `port name ${JSON.stringify(port.name)} is written twice`);
    if (numbers.has(port.number)) spec?.ctx.error(spec.line, `${spec.path}.ports`, `port number ${port.number} is written twice`);
    names.add(port.name);
    numbers.add(port.number);
  }
  const location = spec?.enum('location', ['MESH_EXTERNAL', 'MESH_INTERNAL']) ?? 'MESH_EXTERNAL';
  const resolution = spec?.enum('resolution', ['NONE', 'STATIC', 'DNS', 'DNS_ROUND_ROBIN']) ?? 'NONE';
  const endpoints = (spec?.list('endpoints') ?? []).flatMap((f) => readEndpoint(f, resolution === 'STATIC' ? 'ip' : 'ip-or-host') ?? []);
  // Unlike the security resources' selector (matchLabels), a ServiceEntry's workloadSelector has `labels`.
  const selectorField = spec?.map('workloadSelector');
  const selectorLabels = selectorField?.labels('labels');
  if (selectorField && selectorLabels && Object.keys(selectorLabels).length === 0) selectorField.ctx.error(selectorField.line, selectorField.path, 'expected workloadSelector.labels with at least one label');
  const workloadSelector: WorkloadSelector | undefined = selectorLabels && Object.keys(selectorLabels).length > 0 ? { matchLabels: selectorLabels } : undefined;
  if (spec && workloadSelector && endpoints.length > 0) spec.ctx.error(spec.line, spec.path, 'expected only one of workloadSelector and endpoints, got both');
  if (spec && resolution === 'STATIC' && endpoints.length === 0 && !workloadSelector) {
    spec.ctx.error(spec.line, `${spec.path}.resolution`, 'resolution STATIC needs endpoints or a workloadSelector: write the endpoints\' IPs, or use DNS or NONE');
  }
  if (spec && resolution === 'NONE' && workloadSelector) spec.get('resolution')?.warn('resolution NONE with a workloadSelector: connections go to the address dialled, the selected workloads are not used');
  const wildcard = hosts.some((h) => h.startsWith('*'));
  if (spec && wildcard && (resolution === 'DNS' || resolution === 'DNS_ROUND_ROBIN') && endpoints.length === 0) {
    spec.ctx.error(spec.line, `${spec.path}.hosts`, 'a wildcard host cannot be resolved by DNS: list endpoints, or use resolution NONE');
  }
  const exportTo = spec ? readExportTo(spec) : [];
  const subjectAltNames = spec?.strings('subjectAltNames', (item) => item.nonEmptyString()) ?? [];
  return {
    ...base,
    spec: { hosts, addresses, ports, location, resolution, endpoints, ...(workloadSelector ? { workloadSelector } : {}), exportTo, subjectAltNames },
  };
}

export function parseWorkloadEntry(root: MapReader, base: ObjectBase<'WorkloadEntry'>): WorkloadEntryObject | undefined {
  const spec = root.require('spec');
  const endpoint = spec ? readEndpoint(spec, 'ip') : undefined;
  return endpoint ? { ...base, spec: endpoint } : undefined;
}

function readPort(m: MapReader): ServiceEntryPort | undefined {
  const number = m.require('number')?.int(PORT_RANGE);
  const name = m.require('name')?.nonEmptyString();
  const protocol = m.enum('protocol', SERVICE_ENTRY_PROTOCOLS);
  const targetPort = m.int('targetPort', PORT_RANGE);
  if (number === undefined || name === undefined) return undefined;
  return { number, name, ...(protocol ? { protocol } : {}), ...(targetPort !== undefined ? { targetPort } : {}) };
}

function readEndpoint(field: Field, address: 'ip' | 'ip-or-host'): EntryEndpoint | undefined {
  const m = field.map();
  if (!m) return undefined;
  const addressField = m.get('address');
  // A WorkloadEntry without an address is reached through a network gateway (multi-network), which Ambit has not.
  if (!addressField) return m.require('address') && undefined;
  const text = address === 'ip' || /^[0-9.]+$|:/.test(addressField.string() ?? '') ? addressField.ip() : readHost(addressField, { wildcard: false });
  const ports: Record<string, number> = {};
  for (const [name, p] of m.map('ports')?.entries() ?? []) {
    const value = p.int(PORT_RANGE);
    if (value !== undefined) ports[name] = value;
  }
  const labels = m.labels('labels');
  const serviceAccount = m.get('serviceAccount')?.nonEmptyString();
  const weight = m.int('weight', { min: 0, max: 4294967295 });
  const locality = m.string('locality');
  m.ignore('network');
  if (text === undefined) return undefined;
  return {
    address: text,
    ports,
    labels,
    ...(serviceAccount !== undefined ? { serviceAccount } : {}),
    ...(weight !== undefined ? { weight } : {}),
    ...(locality !== undefined ? { locality } : {}),
  };
}

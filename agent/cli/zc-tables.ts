// The tables `istioctl ztunnel-config` prints from a config dump (istioctl/pkg/writer/ztunnel/
// configdump/*.go): the same columns, cells and row order, so `ambit zc` reads as istioctl does.

import { compareBytes } from '../admin/byte-order.js';
import type { CertDump, ConfigDump, ConnectionDump } from '../admin/config-dump.js';

export type Table = readonly (readonly string[])[];

export interface TableOptions {
  /** `wide`: extra columns Ambit knows beyond istioctl's. */
  readonly wide?: boolean;
  /** connections: only this direction. */
  readonly direction?: 'inbound' | 'outbound';
  /** connections: addresses as they are, not named after the workload or service that holds them. */
  readonly raw?: boolean;
  /** The clock, for VALID CERT and AGE. */
  readonly now?: Date;
}

/**
 * Byte-wise by `namespace.name` as one string, then node (PrintWorkloadSummary). Wide adds each
 * workload's cluster and network (none: `-`), which istioctl's table leaves to the JSON.
 */
export function workloads(dump: ConfigDump, options: TableOptions = {}): Table {
  const sorted = [...dump.workloads].sort((a, b) => compareBytes(`${a.namespace}.${a.name}`, `${b.namespace}.${b.name}`) || compareBytes(a.node ?? '', b.node ?? ''));
  const header = ['NAMESPACE', 'POD NAME', 'ADDRESS', 'NODE', 'WAYPOINT', 'PROTOCOL'];
  const row = (w: ConfigDump['workloads'][number]): string[] => [w.namespace, w.name, w.workloadIps.join(','), w.node ?? '', 'None', w.protocol];
  if (!options.wide) return [header, ...sorted.map(row)];
  return [
    [...header, 'CLUSTER', 'NETWORK'],
    ...sorted.map((w) => [...row(w), w.clusterId, w.network ?? '-']),
  ];
}

/** By namespace, name, hostname; ENDPOINTS counts endpoints whose workload is Healthy, of all (PrintServiceSummary). */
export function services(dump: ConfigDump): Table {
  const status = new Map(dump.workloads.map((w) => [w.uid, w.status]));
  const sorted = [...dump.services].sort((a, b) => compareBytes(a.namespace, b.namespace) || compareBytes(a.name, b.name) || compareBytes(a.hostname, b.hostname));
  return [
    ['NAMESPACE', 'SERVICE NAME', 'SERVICE VIP', 'WAYPOINT', 'ENDPOINTS'],
    ...sorted.map((s) => {
      const endpoints = Object.values(s.endpoints);
      const healthy = endpoints.filter((e) => status.get(e.workloadUid) === 'Healthy').length;
      return [s.namespace, s.name, s.vips.map(vipAddress).join(','), 'None', `${healthy}/${endpoints.length}`];
    }),
  ];
}

/** By namespace and name; action and scope as the dump spells them (PrintPolicySummary). */
export function policies(dump: ConfigDump): Table {
  const sorted = [...dump.policies].sort((a, b) => compareBytes(a.namespace, b.namespace) || compareBytes(a.name, b.name));
  return [['NAMESPACE', 'POLICY NAME', 'ACTION', 'SCOPE'], ...sorted.map((p) => [p.namespace, p.name, p.action, p.scope])];
}

/**
 * PrintSecretSummary: one row per certificate (Leaf, Intermediate…, Root), serial in hex, VALID CERT
 * true while now is inside its validity; an identity without certificates gets one NA row. Without
 * separate roots the chain's last certificate is the root (ztunnel's older dumps).
 */
export function certificates(dump: ConfigDump, options: TableOptions = {}): Table {
  const now = options.now ?? new Date();
  const rows: string[][] = [['CERTIFICATE NAME', 'TYPE', 'STATUS', 'VALID CERT', 'SERIAL NUMBER', 'NOT AFTER', 'NOT BEFORE']];
  for (const c of dump.certificates) {
    const status = c.state.includes('Unavailable') ? 'Unavailable' : c.state;
    if (c.certChain.length === 0) {
      rows.push([c.identity, 'NA', status, 'false', 'NA', 'NA', 'NA']);
      continue;
    }
    const row = (type: string, cert: CertDump): string[] => [c.identity, type, status, String(validAt(cert, now)), serialHex(cert.serialNumber), cert.expirationTime || 'NA', cert.validFrom || 'NA'];
    const legacy = c.rootCerts.length === 0;
    c.certChain.forEach((cert, i) => rows.push(row(i === 0 ? 'Leaf' : legacy && i === c.certChain.length - 1 ? 'Root' : 'Intermediate', cert)));
    for (const cert of c.rootCerts) rows.push(row('Root', cert));
  }
  return rows;
}

function validAt(cert: CertDump, now: Date): boolean {
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.expirationTime);
  return Number.isFinite(from) && Number.isFinite(to) && now.getTime() > from && now.getTime() < to;
}

/** fmt's %x of a big.Int read in base 10; `<nil>` when it does not read, as Go prints a nil *big.Int. */
function serialHex(decimal: string): string {
  return /^[+-]?\d+$/.test(decimal) ? BigInt(decimal).toString(16) : '<nil>';
}

/**
 * PrintConnectionsSummary: per local workload (by namespace, then name), inbound rows (LOCAL = the
 * pod's address, REMOTE = the client, REMOTE TARGET = the Service asked for) then outbound rows (LOCAL
 * = the client, REMOTE = where bytes go, REMOTE TARGET = where the pod connected), addresses named
 * after the service (by its first VIP) or else the workload (by its first IP) that holds them.
 * -o wide adds the peer's proven identity and how long the connection has been open.
 */
export function connections(dump: ConfigDump, options: TableOptions = {}): Table {
  const now = options.now ?? new Date();
  // Later entries win, as istioctl fills its maps; an object without an address is filed under None.
  const serviceNames = new Map(dump.services.map((s) => [(s.vips[0] && vipAddress(s.vips[0])) || 'None', s.hostname]));
  const workloadNames = new Map(dump.workloads.map((w) => [w.workloadIps[0] || 'None', `${w.name}.${w.namespace}`]));
  const name = (addr: string | null): string => {
    const text = addr ?? '';
    if (options.raw) return text;
    const split = splitHostPort(text);
    const known = split && (serviceNames.get(split.host) ?? workloadNames.get(split.host));
    return known && split ? joinHostPort(known, split.port) : text;
  };
  const header = ['WORKLOAD', 'DIRECTION', 'LOCAL', 'REMOTE', 'REMOTE TARGET', 'PROTOCOL'];
  const rows: string[][] = [options.wide ? [...header, 'REMOTE IDENTITY', 'AGE'] : header];
  const extra = (c: ConnectionDump, peer: string | undefined): string[] => (options.wide ? [peer ?? '-', age(now.getTime() - Date.parse(c.startedAt))] : []);
  const states = Object.values(dump.workloadState).sort((a, b) => compareBytes(a.info.namespace, b.info.namespace) || compareBytes(a.info.name, b.info.name));
  for (const wl of states) {
    const workload = `${wl.info.name}.${wl.info.namespace}`;
    if (options.direction !== 'outbound') {
      for (const c of wl.connections.inbound) rows.push([workload, 'Inbound', name(c.actualDst), name(c.src), c.originalDst ?? '', c.protocol, ...extra(c, c.srcIdentity)]);
    }
    if (options.direction !== 'inbound') {
      for (const c of wl.connections.outbound) rows.push([workload, 'Outbound', name(c.src), name(c.actualDst), name(c.originalDst), c.protocol, ...extra(c, c.dstIdentity)]);
    }
  }
  return rows;
}

/** The address of a `<network>/<ip>` VIP. */
function vipAddress(vip: string): string {
  const slash = vip.indexOf('/');
  return slash < 0 ? '' : vip.slice(slash + 1);
}

/** kubectl's short ages: 45s, 3m12s, 2h5m, 3d4h. */
function age(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '-';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}

/** Go's net.SplitHostPort: `[host]:port` or `host:port` with one colon; undefined where Go fails. */
function splitHostPort(addr: string): { host: string; port: string } | undefined {
  if (addr.startsWith('[')) {
    const close = addr.indexOf(']');
    return close > 0 && addr[close + 1] === ':' && !addr.slice(close + 2).includes(':') ? { host: addr.slice(1, close), port: addr.slice(close + 2) } : undefined;
  }
  const colon = addr.lastIndexOf(':');
  if (colon < 0 || addr.slice(0, colon).includes(':') || /[[\]]/.test(addr)) return undefined;
  return { host: addr.slice(0, colon), port: addr.slice(colon + 1) };
}

/** Go's net.JoinHostPort: brackets around a host with a colon. */
function joinHostPort(host: string, port: string): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

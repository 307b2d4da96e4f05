// From istiod's workload API to the agent's own model: each xDS resource is checked and converted on
// arrival (a resource that fails here is NACKed with the reason, and its last good version stays), and
// the accepted ones are turned into the same configuration objects local YAML produces, so that
// buildSnapshot gives the store exactly what it would give for the equivalent files.
//
// Two things istiod has already resolved and YAML leaves to the agent are carried through labels that
// only this translation writes: which Service a workload backs (istiod sends the membership, not the
// selector), and which selector-scoped Authorization applies to it (istiod lists them on the workload).

import { isIPv4 } from 'node:net';
import type { AuthorizationPolicyObject, AuthorizationRule, Condition, Operation, Source } from '../../config/istio-security.js';
import type { NodeObject, PodObject, ServiceObject, SourceLocation } from '../../config/kubernetes.js';
import type { MeshObject } from '../../config/objects.js';
import type { ConfigDiagnostic } from '../../config/diagnostics.js';
import { ROOT_NAMESPACE } from '../../policy/authorization.js';
import { DATAPLANE_MODE_LABEL, buildSnapshot } from '../../state/build.js';
import { type MeshService, type MeshSnapshot, type ObjectKey, type Workload, spiffeId } from '../../state/model.js';
import {
  type Address as RbacAddress,
  type Authorization,
  type Match,
  type StringMatch,
  Action,
  Scope,
} from '../../proto/istio/security/authorization_pb.js';
import {
  type Address,
  type GatewayAddress,
  type Service,
  type Workload as XdsWorkloadMessage,
  AppProtocol,
  TunnelProtocol,
  WorkloadStatus,
} from '../../proto/istio/workload/workload_pb.js';

/** A check that failed on one resource: the reason goes into the NACK and the log. */
export type Translated<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };

const ok = <T>(value: T): Translated<T> => ({ ok: true, value });
const reject = (reason: string): Translated<never> => ({ ok: false, reason });

/** Istio's defaults for a workload that leaves these empty. */
const DEFAULT_TRUST_DOMAIN = 'cluster.local';
const DEFAULT_SERVICE_ACCOUNT = 'default';

/** Labels this translation writes on workloads; never read from anywhere else. */
export const SERVICE_MEMBER_LABEL_PREFIX = 'xds.ambit.io/service:';
export const POLICY_SELECTED_LABEL_PREFIX = 'xds.ambit.io/authorization:';

// ------------------------------------------------------------------------------------------ Address

export interface XdsWorkload {
  readonly kind: 'workload';
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly ips: readonly string[];
  readonly trustDomain: string;
  readonly serviceAccount: string;
  readonly node?: string;
  /** Captured by a node agent (tunnel_protocol HBONE): in the mesh. */
  readonly hbone: boolean;
  readonly healthy: boolean;
  readonly canonicalName?: string;
  readonly canonicalRevision?: string;
  /** `namespace/hostname` → service port → this workload's target port (0: the service's). */
  readonly services: ReadonlyMap<string, ReadonlyMap<number, number>>;
  /** `namespace/name` of the selector-scoped policies that select it. */
  readonly authorizationPolicies: readonly string[];
  /** What Ambit does not do yet, reported as warnings. */
  readonly unsupported: readonly string[];
}

export interface XdsServicePort {
  readonly servicePort: number;
  /** 0 when the service's target port is a name: each workload says its own. */
  readonly targetPort: number;
  readonly appProtocol?: string;
}

export interface XdsService {
  readonly kind: 'service';
  readonly name: string;
  readonly namespace: string;
  readonly hostname: string;
  readonly vips: readonly string[];
  readonly ports: readonly XdsServicePort[];
  readonly unsupported: readonly string[];
}

export type XdsAddress = XdsWorkload | XdsService;

/** Checks one `istio.workload.Address` and keeps what the agent uses. */
export function translateAddress(address: Address): Translated<XdsAddress> {
  switch (address.type.case) {
    case 'workload':
      return translateWorkload(address.type.value);
    case 'service':
      return translateService(address.type.value);
    default:
      return reject('the Address holds neither a workload nor a service');
  }
}

function translateWorkload(w: XdsWorkloadMessage): Translated<XdsWorkload> {
  if (w.uid === '') return reject('workload has no uid');
  if (w.name === '' || w.namespace === '') return reject(`workload ${w.uid} has no ${w.name === '' ? 'name' : 'namespace'}`);
  const ips: string[] = [];
  for (const [i, bytes] of w.addresses.entries()) {
    const ip = ipFromBytes(bytes);
    if (ip === undefined) return reject(`workload ${w.uid}: addresses[${i}] has ${bytes.length} bytes; an IPv4 address has 4 and an IPv6 address 16`);
    ips.push(ip);
  }
  if (!(w.tunnelProtocol in TunnelProtocol)) return reject(`workload ${w.uid}: unknown tunnel_protocol ${w.tunnelProtocol}`);
  if (!(w.status in WorkloadStatus)) return reject(`workload ${w.uid}: unknown status ${w.status}`);
  const services = new Map<string, Map<number, number>>();
  for (const [key, list] of Object.entries(w.services)) {
    if (!/^[^/]+\/[^/]+$/.test(key)) return reject(`workload ${w.uid}: services key ${JSON.stringify(key)} is not "<namespace>/<hostname>"`);
    const ports = new Map<number, number>();
    for (const port of list.ports) {
      const problem = portProblem(port.servicePort, false) ?? portProblem(port.targetPort, true);
      if (problem) return reject(`workload ${w.uid}: services[${key}]: ${problem}`);
      ports.set(port.servicePort, port.targetPort);
    }
    services.set(key, ports);
  }
  for (const key of w.authorizationPolicies) {
    if (!/^[^/]+\/[^/]+$/.test(key)) return reject(`workload ${w.uid}: authorization_policies entry ${JSON.stringify(key)} is not "<namespace>/<name>"`);
  }
  const unsupported: string[] = [];
  if (w.waypoint) unsupported.push(`it uses waypoint ${gatewayName(w.waypoint)}, which Ambit does not route through yet; its traffic goes direct`);
  if (w.networkGateway) unsupported.push(`it is reached through network gateway ${gatewayName(w.networkGateway)}, which Ambit does not support yet`);
  if (w.applicationTunnel) unsupported.push('it asks for an application tunnel (PROXY protocol), which Ambit does not send yet');
  if (w.tunnelProtocol === TunnelProtocol.LEGACY_ISTIO_MTLS) unsupported.push('it is a sidecar workload (legacy Istio mTLS), which Ambit cannot reach with mTLS');
  return ok({
    kind: 'workload',
    uid: w.uid,
    name: w.name,
    namespace: w.namespace,
    ips,
    trustDomain: w.trustDomain || DEFAULT_TRUST_DOMAIN,
    serviceAccount: w.serviceAccount || DEFAULT_SERVICE_ACCOUNT,
    ...(w.node ? { node: w.node } : {}),
    hbone: w.tunnelProtocol === TunnelProtocol.HBONE,
    healthy: w.status === WorkloadStatus.HEALTHY,
    ...(w.canonicalName ? { canonicalName: w.canonicalName } : {}),
    ...(w.canonicalRevision ? { canonicalRevision: w.canonicalRevision } : {}),
    services,
    authorizationPolicies: [...w.authorizationPolicies],
    unsupported,
  });
}

const APP_PROTOCOLS: ReadonlyMap<AppProtocol, string> = new Map([
  [AppProtocol.HTTP11, 'http'],
  [AppProtocol.HTTP2, 'http2'],
  [AppProtocol.GRPC, 'grpc'],
  [AppProtocol.TCP, 'tcp'],
  [AppProtocol.TLS, 'tls'],
]);

function translateService(s: Service): Translated<XdsService> {
  const id = `${s.namespace}/${s.hostname}`;
  if (s.name === '' || s.namespace === '' || s.hostname === '') return reject(`service ${id} lacks a name, namespace or hostname`);
  const vips: string[] = [];
  const unsupported: string[] = [];
  for (const [i, a] of s.addresses.entries()) {
    const ip = ipFromBytes(a.address);
    if (ip === undefined) return reject(`service ${id}: addresses[${i}] has ${a.address.length} bytes; an IPv4 address has 4 and an IPv6 address 16`);
    const full = isIPv4(ip) ? 32 : 128;
    if (a.length !== undefined && a.length !== full) {
      if (a.length > full) return reject(`service ${id}: addresses[${i}] has prefix length ${a.length}, longer than ${full}`);
      unsupported.push(`its address range ${ip}/${a.length} is not matched by Ambit yet`);
      continue;
    }
    vips.push(ip);
  }
  const ports: XdsServicePort[] = [];
  const seen = new Set<number>();
  for (const [i, p] of s.ports.entries()) {
    const problem = portProblem(p.servicePort, false) ?? portProblem(p.targetPort, true);
    if (problem) return reject(`service ${id}: ports[${i}]: ${problem}`);
    if (seen.has(p.servicePort)) return reject(`service ${id}: port ${p.servicePort} is listed twice`);
    seen.add(p.servicePort);
    if (!(p.appProtocol in AppProtocol)) return reject(`service ${id}: ports[${i}]: unknown app_protocol ${p.appProtocol}`);
    const appProtocol = APP_PROTOCOLS.get(p.appProtocol);
    ports.push({ servicePort: p.servicePort, targetPort: p.targetPort, ...(appProtocol ? { appProtocol } : {}) });
  }
  if (s.waypoint || s.weightedWaypoints.length > 0) {
    unsupported.push(`it uses waypoint ${s.waypoint ? gatewayName(s.waypoint) : 'weighted waypoints'}, which Ambit does not route through yet; its traffic goes direct`);
  }
  return ok({ kind: 'service', name: s.name, namespace: s.namespace, hostname: s.hostname, vips, ports, unsupported });
}

function portProblem(port: number, zeroAllowed: boolean): string | undefined {
  if (port > 65535 || (port === 0 && !zeroAllowed)) return `port ${port} is outside 1-65535`;
  return undefined;
}

function gatewayName(g: GatewayAddress): string {
  if (g.destination.case === 'hostname') return `${g.destination.value.namespace}/${g.destination.value.hostname}`;
  if (g.destination.case === 'address') return ipFromBytes(g.destination.value.address) ?? '(unreadable address)';
  return '(none)';
}

/** 4 or 16 bytes as an address string; undefined for any other length. */
export function ipFromBytes(bytes: Uint8Array): string | undefined {
  if (bytes.length === 4) return [...bytes].join('.');
  if (bytes.length !== 16) return undefined;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  // The URL parser writes IPv6 in its canonical compressed form.
  return new URL(`http://[${groups.join(':')}]`).hostname.slice(1, -1);
}

// ------------------------------------------------------------------------------------ Authorization

export interface XdsAuthorization {
  /** `namespace/name`, the resource name and how workloads refer to it. */
  readonly key: string;
  readonly scope: Scope;
  readonly dryRun: boolean;
  readonly policy: AuthorizationPolicyObject;
}

/**
 * Converts one `istio.security.Authorization` into the AuthorizationPolicy the policy engine
 * evaluates, with the same outcome for every connection (see ruleFromGroup). Scope becomes placement:
 * GLOBAL goes to the root namespace, NAMESPACE to its namespace, WORKLOAD_SELECTOR selects the
 * workloads that list it.
 */
export function translateAuthorization(a: Authorization): Translated<XdsAuthorization> {
  const key = `${a.namespace}/${a.name}`;
  if (a.name === '' || a.namespace === '') return reject(`authorization ${key} lacks a name or namespace`);
  if (!(a.scope in Scope)) return reject(`authorization ${key}: unknown scope ${a.scope}`);
  if (a.action !== Action.ALLOW && a.action !== Action.DENY) return reject(`authorization ${key}: unknown action ${a.action}`);
  const rules: AuthorizationRule[] = [];
  for (const [g, group] of a.groups.entries()) {
    const rule = ruleFromGroup(group.rules.map((r) => r.matches));
    if (!rule.ok) return reject(`authorization ${key}: groups[${g}]: ${rule.reason}`);
    if (rule.value !== 'never') rules.push(rule.value);
  }
  const placement = a.scope === Scope.GLOBAL ? ROOT_NAMESPACE : a.namespace;
  const selector = a.scope === Scope.WORKLOAD_SELECTOR ? { matchLabels: { [`${POLICY_SELECTED_LABEL_PREFIX}${key}`]: 'true' } } : undefined;
  const policy: AuthorizationPolicyObject = {
    kind: 'AuthorizationPolicy',
    apiVersion: 'security.istio.io/v1',
    metadata: { name: a.name, namespace: placement, labels: {}, annotations: a.dryRun ? { 'istio.io/dry-run': 'true' } : {} },
    source: xdsLocation('Authorization', key),
    spec: { ...(selector ? { selector } : {}), targetRefs: [], action: a.action === Action.DENY ? 'DENY' : 'ALLOW', rules },
  };
  return ok({ key, scope: a.scope, dryRun: a.dryRun, policy });
}

type MatchKind = 'source' | 'port' | 'other';

/**
 * One group (clauses ANDed, each clause's matches ORed) as one rule (`from` ORed, `to` ORed, every
 * `when` ANDed). A clause whose matches all speak of the source becomes `from`, one about ports
 * becomes `to`, and a clause with a single match becomes `when` conditions, one per field: together
 * these cover every group istiod writes. A group that can never match comes back as 'never'.
 */
function ruleFromGroup(clauses: readonly (readonly Match[])[]): Translated<AuthorizationRule | 'never'> {
  let from: Source[] | undefined;
  let to: Operation[] | undefined;
  const when: Condition[] = [];
  for (const [c, all] of clauses.entries()) {
    if (all.length === 0) continue; // a clause without matches matches everything
    const matches = all.filter((m) => !matchIsEmpty(m)); // an empty match never matches
    if (matches.length === 0) return ok('never');
    const kinds = new Set(matches.map(matchKind));
    const only = kinds.size === 1 ? [...kinds][0] : undefined;
    try {
      if (only === 'source' && from === undefined) from = matches.map(toSource);
      else if (only === 'port' && to === undefined) to = matches.map(toOperation);
      else if (matches.length === 1) when.push(...toConditions(matches[0]!));
      else return reject(`rules[${c}] ORs ${matches.length} matches that mix kinds of fields, which the policy engine cannot express`);
    } catch (err) {
      return reject(`rules[${c}]: ${(err as Error).message}`);
    }
  }
  return ok({ from: from ?? [], to: to ?? [], when });
}

function matchIsEmpty(m: Match): boolean {
  return (
    m.namespaces.length + m.notNamespaces.length + m.principals.length + m.notPrincipals.length + m.sourceIps.length + m.notSourceIps.length +
      m.destinationIps.length + m.notDestinationIps.length + m.destinationPorts.length + m.notDestinationPorts.length +
      m.serviceAccounts.length + m.notServiceAccounts.length ===
    0
  );
}

function matchKind(m: Match): MatchKind {
  const destination = m.destinationIps.length + m.notDestinationIps.length;
  const ports = m.destinationPorts.length + m.notDestinationPorts.length;
  const source =
    m.namespaces.length + m.notNamespaces.length + m.principals.length + m.notPrincipals.length + m.sourceIps.length + m.notSourceIps.length +
    m.serviceAccounts.length + m.notServiceAccounts.length;
  if (destination === 0 && ports === 0) return 'source';
  if (destination === 0 && source === 0) return 'port';
  return 'other';
}

// The converters below throw Error for values that cannot be represented; ruleFromGroup turns that
// into a rejection of the whole resource.

function toSource(m: Match): Source {
  return {
    principals: patterns(m.principals),
    notPrincipals: patterns(m.notPrincipals),
    requestPrincipals: [],
    notRequestPrincipals: [],
    namespaces: patterns(m.namespaces),
    notNamespaces: patterns(m.notNamespaces),
    serviceAccounts: m.serviceAccounts.map((sa) => `${sa.namespace}/${sa.serviceAccount}`),
    notServiceAccounts: m.notServiceAccounts.map((sa) => `${sa.namespace}/${sa.serviceAccount}`),
    ipBlocks: m.sourceIps.map(cidr),
    notIpBlocks: m.notSourceIps.map(cidr),
    remoteIpBlocks: [],
    notRemoteIpBlocks: [],
  };
}

function toOperation(m: Match): Operation {
  return {
    hosts: [],
    notHosts: [],
    ports: m.destinationPorts.map(port),
    notPorts: m.notDestinationPorts.map(port),
    methods: [],
    notMethods: [],
    paths: [],
    notPaths: [],
  };
}

/** One match as conditions: each non-empty field, and each non-empty not_ field, is one condition. */
function toConditions(m: Match): Condition[] {
  const out: Condition[] = [];
  const add = (key: string, values: string[], notValues: string[]): void => {
    if (values.length > 0) out.push({ key, values, notValues: [] });
    if (notValues.length > 0) out.push({ key, values: [], notValues });
  };
  add('source.namespace', patterns(m.namespaces), patterns(m.notNamespaces));
  add('source.principal', patterns(m.principals), patterns(m.notPrincipals));
  add('source.serviceAccount', m.serviceAccounts.map((sa) => `${sa.namespace}/${sa.serviceAccount}`), m.notServiceAccounts.map((sa) => `${sa.namespace}/${sa.serviceAccount}`));
  add('source.ip', m.sourceIps.map(cidr), m.notSourceIps.map(cidr));
  add('destination.ip', m.destinationIps.map(cidr), m.notDestinationIps.map(cidr));
  add('destination.port', m.destinationPorts.map((p) => String(port(p))), m.notDestinationPorts.map((p) => String(port(p))));
  return out;
}

/**
 * StringMatches as the policy engine's patterns (`exact`, `prefix*`, `*suffix`, `*` for presence).
 * A StringMatch with nothing set is dropped, as ztunnel drops it.
 */
function patterns(list: readonly StringMatch[]): string[] {
  return list.flatMap((s) => {
    const m = s.matchType;
    switch (m.case) {
      case 'exact':
        if (m.value.startsWith('*') || m.value.endsWith('*')) throw new Error(`exact match ${JSON.stringify(m.value)} begins or ends with "*", which would read as a wildcard`);
        return [m.value];
      case 'prefix':
        if (m.value.startsWith('*')) throw new Error(`prefix match ${JSON.stringify(m.value)} begins with "*", which would read as a suffix wildcard`);
        return [`${m.value}*`];
      case 'suffix':
        return [`*${m.value}`];
      case 'presence':
        return ['*'];
      default:
        return [];
    }
  });
}

function cidr(a: RbacAddress): string {
  const ip = ipFromBytes(a.address);
  if (ip === undefined) throw new Error(`address has ${a.address.length} bytes; an IPv4 address has 4 and an IPv6 address 16`);
  const full = isIPv4(ip) ? 32 : 128;
  if (a.length > full) throw new Error(`address ${ip} has prefix length ${a.length}, longer than ${full}`);
  return `${ip}/${a.length}`;
}

function port(p: number): number {
  if (p < 1 || p > 65535) throw new Error(`destination port ${p} is outside 1-65535`);
  return p;
}

// ----------------------------------------------------------------------------------------- Snapshot

export interface XdsSnapshotOptions {
  readonly version: number;
  readonly trustDomain: string;
  readonly clusterDomain: string;
  /** This agent's node and its address: istiod sends no Node objects, and capture needs the address. */
  readonly node?: { readonly name: string; readonly ip?: string };
}

/**
 * The accepted resources as one MeshSnapshot, built by the same code as local YAML. Dry-run policies
 * are left out (they are never enforced) and counted in `dryRun`.
 */
export function buildXdsSnapshot(
  addresses: ReadonlyMap<string, XdsAddress>,
  authorizations: ReadonlyMap<string, XdsAuthorization>,
  options: XdsSnapshotOptions,
): { snapshot: MeshSnapshot; dryRun: number } {
  const diagnostics: ConfigDiagnostic[] = [];
  const workloads = [...addresses.entries()].filter((e): e is [string, XdsWorkload] => e[1].kind === 'workload').sort(([a], [b]) => a.localeCompare(b));
  const services = [...addresses.entries()].filter((e): e is [string, XdsService] => e[1].kind === 'service').sort(([a], [b]) => a.localeCompare(b));

  for (const [name, entry] of [...workloads, ...services]) {
    for (const why of entry.unsupported) {
      diagnostics.push({
        severity: 'warning',
        location: xdsLocation('Address', name),
        object: { kind: entry.kind === 'workload' ? 'Pod' : 'Service', namespace: entry.namespace, name: entry.name },
        message: why,
      });
    }
  }

  // Each service's target port per workload, so that differing ones can be given as named ports.
  const servicesByKey = new Map(services.map(([, s]) => [`${s.namespace}/${s.hostname}`, s]));
  const targetsOf = (w: XdsWorkload, s: XdsService): Map<number, number> => {
    const own = w.services.get(`${s.namespace}/${s.hostname}`);
    return new Map(s.ports.map((p) => [p.servicePort, own?.get(p.servicePort) || p.targetPort || p.servicePort]));
  };
  const namedTargetPorts = new Set<string>();
  for (const [, w] of workloads) {
    for (const key of w.services.keys()) {
      const s = servicesByKey.get(key);
      if (!s) continue;
      for (const [servicePort, target] of targetsOf(w, s)) {
        const declared = s.ports.find((p) => p.servicePort === servicePort)?.targetPort ?? 0;
        if (declared === 0 || declared !== target) namedTargetPorts.add(targetPortName(s, servicePort));
      }
    }
  }

  const objects: MeshObject[] = [];
  if (options.node) {
    const node: NodeObject = {
      kind: 'Node',
      apiVersion: 'v1',
      metadata: { name: options.node.name, namespace: '', labels: {}, annotations: {} },
      spec: { podCIDRs: [] },
      status: { addresses: options.node.ip ? [{ type: 'InternalIP', address: options.node.ip }] : [] },
      source: { file: 'agent options', line: 0 },
    };
    objects.push(node);
  }

  const byKey = new Map<ObjectKey, XdsWorkload>();
  for (const [name, w] of workloads) {
    const key = `${w.namespace}/${w.name}`;
    const taken = byKey.get(key);
    if (taken) {
      diagnostics.push({
        severity: 'error',
        location: xdsLocation('Address', name),
        object: { kind: 'Pod', namespace: w.namespace, name: w.name },
        message: `workload ${w.uid} has the same namespace and name as ${taken.uid}; it is ignored`,
      });
      continue;
    }
    byKey.set(key, w);
    const labels: Record<string, string> = {};
    if (w.hbone) labels[DATAPLANE_MODE_LABEL] = 'ambient';
    if (w.canonicalName) labels['service.istio.io/canonical-name'] = w.canonicalName;
    if (w.canonicalRevision) labels['service.istio.io/canonical-revision'] = w.canonicalRevision;
    for (const policy of w.authorizationPolicies) labels[`${POLICY_SELECTED_LABEL_PREFIX}${policy}`] = 'true';
    const containerPorts: { name: string; containerPort: number; protocol: 'TCP' }[] = [];
    for (const serviceKey of w.services.keys()) {
      labels[`${SERVICE_MEMBER_LABEL_PREFIX}${serviceKey}`] = 'true';
      const s = servicesByKey.get(serviceKey);
      if (!s) continue;
      for (const [servicePort, target] of targetsOf(w, s)) {
        const portName = targetPortName(s, servicePort);
        if (namedTargetPorts.has(portName)) containerPorts.push({ name: portName, containerPort: target, protocol: 'TCP' });
      }
    }
    const pod: PodObject = {
      kind: 'Pod',
      apiVersion: 'v1',
      metadata: { name: w.name, namespace: w.namespace, labels, annotations: {} },
      spec: {
        ...(w.node ? { nodeName: w.node } : {}),
        serviceAccountName: w.serviceAccount,
        containers: [{ name: 'workload', command: [], args: [], env: [], ports: containerPorts }],
      },
      status: {
        phase: 'Running',
        ...(w.ips[0] ? { podIP: w.ips[0] } : {}),
        podIPs: [...w.ips],
        conditions: [{ type: 'Ready', status: w.healthy ? 'True' : 'False' }],
      },
      source: xdsLocation('Address', name),
    };
    objects.push(pod);
  }

  const serviceNames = new Map<ObjectKey, XdsService>();
  for (const [name, s] of services) {
    const serviceKey = `${s.namespace}/${s.hostname}`;
    const taken = serviceNames.get(`${s.namespace}/${s.name}`);
    if (taken) {
      diagnostics.push({
        severity: 'error',
        location: xdsLocation('Address', name),
        object: { kind: 'Service', namespace: s.namespace, name: s.name },
        message: `service ${serviceKey} has the same namespace and name as ${taken.namespace}/${taken.hostname}; it is ignored`,
      });
      continue;
    }
    serviceNames.set(`${s.namespace}/${s.name}`, s);
    const service: ServiceObject = {
      kind: 'Service',
      apiVersion: 'v1',
      metadata: { name: s.name, namespace: s.namespace, labels: {}, annotations: {} },
      spec: {
        type: 'ClusterIP',
        selector: { [`${SERVICE_MEMBER_LABEL_PREFIX}${serviceKey}`]: 'true' },
        ...(s.vips[0] ? { clusterIP: s.vips[0] } : { clusterIP: 'None' }),
        clusterIPs: [...s.vips],
        ports: s.ports.map((p) => {
          const named = targetPortName(s, p.servicePort);
          return {
            port: p.servicePort,
            targetPort: namedTargetPorts.has(named) ? named : p.targetPort || p.servicePort,
            protocol: 'TCP' as const,
            ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}),
          };
        }),
      },
      source: xdsLocation('Address', name),
    };
    objects.push(service);
  }

  let dryRun = 0;
  for (const [, a] of [...authorizations.entries()].sort(([x], [y]) => x.localeCompare(y))) {
    if (a.dryRun) dryRun++;
    else objects.push(a.policy);
  }

  const built = buildSnapshot(objects, { version: options.version, trustDomain: options.trustDomain, clusterDomain: options.clusterDomain });
  return { snapshot: withXdsIdentities(built, byKey, [...serviceNames.values()], diagnostics), dryRun };
}

/** A service's named target port, for workloads whose target port differs from the service's. */
function targetPortName(s: XdsService, servicePort: number): string {
  return `xds:${s.namespace}/${s.hostname}:${servicePort}`;
}

function xdsLocation(type: 'Address' | 'Authorization', name: string): SourceLocation {
  return { file: `xds:${type}/${name}`, line: 0 };
}

/**
 * What istiod states and YAML derives: each workload's uid and trust domain, each service's hostname
 * (ServiceEntry hosts are not `<name>.<namespace>.svc`). The rest of the snapshot is kept as built.
 */
function withXdsIdentities(
  snapshot: MeshSnapshot,
  workloads: ReadonlyMap<ObjectKey, XdsWorkload>,
  services: readonly XdsService[],
  diagnostics: readonly ConfigDiagnostic[],
): MeshSnapshot {
  const fixedWorkloads = new Map<ObjectKey, Workload>();
  const workloadsByIp = new Map<string, Workload>();
  for (const [key, w] of snapshot.workloads) {
    const x = workloads.get(key);
    const fixed: Workload = x ? { ...w, uid: x.uid, identity: spiffeId(x.trustDomain, w.namespace, w.serviceAccount) } : w;
    fixedWorkloads.set(key, fixed);
  }
  for (const [ip, w] of snapshot.workloadsByIp) workloadsByIp.set(ip, fixedWorkloads.get(w.key) ?? w);

  const hostnames = new Map(services.map((s) => [`${s.namespace}/${s.name}`, s.hostname]));
  const fixedServices = new Map<ObjectKey, MeshService>();
  const servicesByVip = new Map<string, MeshService>();
  const servicesByHostname = new Map<string, MeshService>();
  for (const [key, s] of snapshot.services) {
    const hostname = hostnames.get(key) ?? s.hostname;
    const fixed: MeshService = hostname === s.hostname ? s : { ...s, hostname };
    fixedServices.set(key, fixed);
    servicesByHostname.set(fixed.hostname, fixed);
    for (const vip of fixed.vips) servicesByVip.set(vip, fixed);
  }
  return {
    ...snapshot,
    workloads: fixedWorkloads,
    workloadsByIp,
    services: fixedServices,
    servicesByVip,
    servicesByHostname,
    diagnostics: [...diagnostics, ...snapshot.diagnostics.filter((d) => !isSyntheticNoise(d))],
  };
}

/**
 * buildSnapshot's warnings that do not apply to istiod's state: selectors over the labels this
 * translation invented (a service with no endpoints is normal here), and ServiceAccount and Node
 * objects, which the workload API never sends.
 */
function isSyntheticNoise(d: ConfigDiagnostic): boolean {
  if (d.severity !== 'warning') return false;
  if (d.field === 'spec.serviceAccountName' || d.field === 'spec.nodeName') return true;
  return d.message.includes(SERVICE_MEMBER_LABEL_PREFIX) || d.message.includes(POLICY_SELECTED_LABEL_PREFIX);
}

/** Labels a workload carries only because of this translation; hidden where operators read labels. */
export function isXdsLabel(key: string): boolean {
  return key.startsWith(SERVICE_MEMBER_LABEL_PREFIX) || key.startsWith(POLICY_SELECTED_LABEL_PREFIX);
}

// AuthorizationPolicies as ztunnel dumps them (src/rbac.rs Authorization): only those istiod would send
// a node proxy, converted as istiod converts them (pilot/pkg/serviceregistry/ambient/authorization.go),
// so that `istioctl ztunnel-config policies` shows for an Ambit node what it shows for ztunnel.

import { isIP } from 'node:net';
import type { AuthorizationPolicyObject, AuthorizationRule, Condition, Operation, Source } from '../config/istio-security.js';
import { ROOT_NAMESPACE, policiesFor } from '../policy/authorization.js';
import type { MeshSnapshot, Workload } from '../state/model.js';
import { compareBytes } from './byte-order.js';

/** ztunnel's StringMatch, serialized as serde's externally tagged enum. */
export type StringMatchDump = { readonly Exact: string } | { readonly Prefix: string } | { readonly Suffix: string } | { readonly Presence: readonly [] };

export interface ServiceAccountMatchDump {
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** One match (ztunnel's RbacMatch): every field present is ANDed; an empty list is left out. */
export interface RbacMatchDump {
  readonly namespaces?: readonly StringMatchDump[];
  readonly notNamespaces?: readonly StringMatchDump[];
  readonly serviceAccounts?: readonly ServiceAccountMatchDump[];
  readonly notServiceAccounts?: readonly ServiceAccountMatchDump[];
  readonly principals?: readonly StringMatchDump[];
  readonly notPrincipals?: readonly StringMatchDump[];
  /** `address/prefix length`, as ztunnel prints an IpNet. */
  readonly sourceIps?: readonly string[];
  readonly notSourceIps?: readonly string[];
  readonly destinationIps?: readonly string[];
  readonly notDestinationIps?: readonly string[];
  readonly destinationPorts?: readonly number[];
  readonly notDestinationPorts?: readonly number[];
}

export interface PolicyDump {
  readonly name: string;
  readonly namespace: string;
  readonly scope: 'Global' | 'Namespace' | 'WorkloadSelector';
  readonly action: 'Allow' | 'Deny';
  /** Rules ORed; each rule's clauses ANDed; each clause's matches ORed (istiod's groups, rules, matches). */
  readonly rules: readonly (readonly (readonly RbacMatchDump[])[])[];
  readonly dryRun: boolean;
}

/** The condition keys istiod lets a node proxy enforce; any other `when` key needs HTTP. */
const L4_CONDITION_KEYS = new Set(['source.ip', 'source.namespace', 'source.principal', 'destination.ip', 'destination.port']);

/**
 * What istiod sends: ALLOW and DENY policies bound by selector, namespace or root namespace. Policies
 * with targetRefs are for waypoints, AUDIT and CUSTOM ones are refused for ztunnel. Sorted by
 * `namespace/name`, as ztunnel's policy store. Dry-run policies stay in: Ambit enforces them.
 */
export function policiesDump(snapshot: MeshSnapshot): PolicyDump[] {
  return snapshot.istio.authorizationPolicies
    .filter(sentToNodeProxies)
    .map(policyDump)
    .sort((a, b) => compareBytes(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`));
}

/**
 * A workload's `authorizationPolicies`: as istiod, only the selector-bound policies (of its own or the
 * root namespace) that select it, sorted; namespace-wide and global ones apply by their scope.
 */
export function workloadPolicies(snapshot: MeshSnapshot, w: Workload): string[] {
  return policiesFor(snapshot, w)
    .filter((p) => p.spec.selector !== undefined && sentToNodeProxies(p))
    .map((p) => `${p.metadata.namespace}/${p.metadata.name}`)
    .sort(compareBytes);
}

function sentToNodeProxies(p: AuthorizationPolicyObject): boolean {
  return p.spec.targetRefs.length === 0 && (p.spec.action === 'ALLOW' || p.spec.action === 'DENY');
}

function policyDump(p: AuthorizationPolicyObject): PolicyDump {
  const action = p.spec.action === 'DENY' ? 'Deny' : 'Allow';
  const scope = p.spec.selector ? 'WorkloadSelector' : p.metadata.namespace === ROOT_NAMESPACE ? 'Global' : 'Namespace';
  const rules = p.spec.rules.flatMap((rule) => {
    const clauses = convertRule(rule, action, p.metadata.namespace);
    return clauses ? [clauses] : [];
  });
  return { name: p.metadata.name, namespace: p.metadata.namespace, scope, action, rules, dryRun: false };
}

/**
 * One rule as istiod's handleRule: a clause of the `to` operations, a clause of the `from` sources,
 * then one clause per `when` condition. HTTP-only fields are left out; an ALLOW rule that had any is
 * dropped whole (it can never match a connection), a DENY keeps what is left.
 */
function convertRule(rule: AuthorizationRule, action: PolicyDump['action'], policyNamespace: string): RbacMatchDump[][] | undefined {
  let needsHttp = false;
  const clauses: RbacMatchDump[][] = [];
  if (rule.to.length > 0) {
    needsHttp ||= rule.to.some(operationNeedsHttp);
    clauses.push(rule.to.map((o) => match({ destinationPorts: o.ports, notDestinationPorts: o.notPorts })));
  }
  if (rule.from.length > 0) {
    needsHttp ||= rule.from.some(sourceNeedsHttp);
    clauses.push(rule.from.map((s) => sourceMatch(s, policyNamespace)));
  }
  for (const c of rule.when) {
    needsHttp ||= !L4_CONDITION_KEYS.has(c.key);
    clauses.push([conditionMatch(c)]);
  }
  return action === 'Allow' && needsHttp ? undefined : clauses;
}

function operationNeedsHttp(o: Operation): boolean {
  return [o.hosts, o.notHosts, o.methods, o.notMethods, o.paths, o.notPaths].some((v) => v.length > 0);
}

function sourceNeedsHttp(s: Source): boolean {
  return [s.remoteIpBlocks, s.notRemoteIpBlocks, s.requestPrincipals, s.notRequestPrincipals].some((v) => v.length > 0);
}

function sourceMatch(s: Source, policyNamespace: string): RbacMatchDump {
  return match({
    namespaces: s.namespaces.map(stringMatch),
    notNamespaces: s.notNamespaces.map(stringMatch),
    serviceAccounts: s.serviceAccounts.map((a) => serviceAccountMatch(a, policyNamespace)),
    notServiceAccounts: s.notServiceAccounts.map((a) => serviceAccountMatch(a, policyNamespace)),
    principals: s.principals.map(stringMatch),
    notPrincipals: s.notPrincipals.map(stringMatch),
    sourceIps: s.ipBlocks.flatMap(ipNet),
    notSourceIps: s.notIpBlocks.flatMap(ipNet),
  });
}

/** One condition as one match; a key other than the five a node proxy knows gives an empty match. */
function conditionMatch(c: Condition): RbacMatchDump {
  const on = (key: string, values: readonly string[]): readonly string[] => (c.key === key ? values : []);
  const ports = (values: readonly string[]): number[] => values.flatMap((v) => (/^\d+$/.test(v) && Number(v) <= 65535 ? [Number(v)] : []));
  return match({
    namespaces: on('source.namespace', c.values).map(stringMatch),
    principals: on('source.principal', c.values).map(stringMatch),
    sourceIps: on('source.ip', c.values).flatMap(ipNet),
    destinationPorts: ports(on('destination.port', c.values)),
    destinationIps: on('destination.ip', c.values).flatMap(ipNet),
    notNamespaces: on('source.namespace', c.notValues).map(stringMatch),
    notPrincipals: on('source.principal', c.notValues).map(stringMatch),
    notSourceIps: on('source.ip', c.notValues).flatMap(ipNet),
    notDestinationPorts: ports(on('destination.port', c.notValues)),
    notDestinationIps: on('destination.ip', c.notValues).flatMap(ipNet),
  });
}

/** ztunnel's field order, each empty list left out (serde's skip_serializing_if = Vec::is_empty). */
const MATCH_FIELDS = [
  'namespaces', 'notNamespaces', 'serviceAccounts', 'notServiceAccounts', 'principals', 'notPrincipals',
  'sourceIps', 'notSourceIps', 'destinationIps', 'notDestinationIps', 'destinationPorts', 'notDestinationPorts',
] as const satisfies readonly (keyof RbacMatchDump)[];

function match(fields: RbacMatchDump): RbacMatchDump {
  const out: Record<string, readonly unknown[]> = {};
  for (const key of MATCH_FIELDS) {
    const values = fields[key];
    if (values && values.length > 0) out[key] = values;
  }
  return out as RbacMatchDump;
}

/** istiod's stringToMatch: `*` is presence, a leading `*` a suffix, a trailing one a prefix. */
function stringMatch(v: string): StringMatchDump {
  if (v === '*') return { Presence: [] };
  if (v.startsWith('*')) return { Suffix: v.slice(1) };
  if (v.endsWith('*')) return { Prefix: v.slice(0, -1) };
  return { Exact: v };
}

/** `name` is a service account of the policy's namespace; `namespace/name` names its own. */
function serviceAccountMatch(account: string, policyNamespace: string): ServiceAccountMatchDump {
  const slash = account.indexOf('/');
  return slash < 0 ? { namespace: policyNamespace, serviceAccount: account } : { namespace: account.slice(0, slash), serviceAccount: account.slice(slash + 1) };
}

/** An address or CIDR as ztunnel prints an IpNet (a bare address gets its full length); invalid: none. */
function ipNet(block: string): string[] {
  const [address = '', length] = block.split('/', 2);
  const family = isIP(address);
  if (family === 0) return [];
  const max = family === 4 ? 32 : 128;
  const bits = length === undefined ? max : /^\d+$/.test(length) ? Number(length) : NaN;
  if (!(bits >= 0 && bits <= max)) return [];
  return [`${family === 6 ? canonicalIpv6(address) : address}/${bits}`];
}

/** RFC 5952's compressed lower-case form, as Rust prints an Ipv6Addr (the URL parser writes it so). */
function canonicalIpv6(address: string): string {
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}

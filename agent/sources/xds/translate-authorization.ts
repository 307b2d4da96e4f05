// istiod's Authorization resources checked and converted into the agent's AuthorizationPolicy rules,
// following ztunnel's matching semantics. An entry that cannot be read is dropped from its match with a
// warning, as ztunnel drops it; a rule the policy engine cannot express refuses the policy, not guessed.

import { isIPv4 } from 'node:net';
import type { AuthorizationPolicyObject, AuthorizationRule, Condition, Operation, Source } from '../../config/istio-security.js';
import { ROOT_NAMESPACE } from '../../policy/authorization.js';
import {
  type Address as RbacAddress,
  type Authorization,
  type Match,
  type ServiceAccountMatch,
  type StringMatch,
  Action,
  Scope,
} from '../../proto/istio/security/authorization_pb.js';
import { type Translated, POLICY_SELECTED_LABEL_PREFIX, ok, reject, xdsLocation } from './translated.js';
import { ipFromBytes } from './translate-address.js';

export interface XdsAuthorization {
  /** `namespace/name`, the resource name and how workloads refer to it. */
  readonly key: string;
  readonly scope: Scope;
  readonly dryRun: boolean;
  readonly policy: AuthorizationPolicyObject;
  /** Entries dropped from their matches, each with where and why: warned, while the rest applies. */
  readonly dropped: readonly string[];
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
  const dropped: string[] = [];
  for (const [g, group] of a.groups.entries()) {
    const clauses = group.rules.map((r, c) => r.matches.map((m, i) => readMatch(m, `groups[${g}].rules[${c}].matches[${i}]`, dropped)));
    const rule = ruleFromGroup(clauses);
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
  return ok({ key, scope: a.scope, dryRun: a.dryRun, policy, dropped });
}

type MatchKind = 'source' | 'port' | 'other';

/** A Match with every entry read into the policy engine's terms; what could not be read is gone. */
interface ReadMatch {
  readonly namespaces: string[];
  readonly notNamespaces: string[];
  readonly principals: string[];
  readonly notPrincipals: string[];
  readonly serviceAccounts: string[];
  readonly notServiceAccounts: string[];
  readonly sourceIps: string[];
  readonly notSourceIps: string[];
  readonly destinationIps: string[];
  readonly notDestinationIps: string[];
  readonly destinationPorts: number[];
  readonly notDestinationPorts: number[];
}

type Entry<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly problem: string } | { readonly ok: 'absent' };

/**
 * Reads one Match, dropping each entry that cannot be read and saying so in `dropped` (ztunnel drops an
 * address it cannot parse and a string match with no kind; the rest of the policy stays in force).
 */
function readMatch(m: Match, at: string, dropped: string[]): ReadMatch {
  const keep = <S, T>(field: string, list: readonly S[], read: (s: S) => Entry<T>): T[] =>
    list.flatMap((entry, i) => {
      const r = read(entry);
      if (r.ok === true) return [r.value];
      if (r.ok === false) dropped.push(`${at}.${field}[${i}]: ${r.problem}; this entry is dropped and the rest of the policy applies, as ztunnel drops entries it cannot read`);
      return [];
    });
  return {
    namespaces: keep('namespaces', m.namespaces, pattern),
    notNamespaces: keep('not_namespaces', m.notNamespaces, pattern),
    principals: keep('principals', m.principals, pattern),
    notPrincipals: keep('not_principals', m.notPrincipals, pattern),
    serviceAccounts: keep('service_accounts', m.serviceAccounts, serviceAccount),
    notServiceAccounts: keep('not_service_accounts', m.notServiceAccounts, serviceAccount),
    sourceIps: keep('source_ips', m.sourceIps, cidr),
    notSourceIps: keep('not_source_ips', m.notSourceIps, cidr),
    destinationIps: keep('destination_ips', m.destinationIps, cidr),
    notDestinationIps: keep('not_destination_ips', m.notDestinationIps, cidr),
    destinationPorts: keep('destination_ports', m.destinationPorts, port),
    notDestinationPorts: keep('not_destination_ports', m.notDestinationPorts, port),
  };
}

/**
 * One group (clauses ANDed, each clause's matches ORed) as one rule (`from` ORed, `to` ORed, every
 * `when` ANDed). A clause whose matches all speak of the source becomes `from`, one about ports
 * becomes `to`, and a clause with a single match becomes `when` conditions, one per field: together
 * these cover every group istiod writes. A group that can never match comes back as 'never'.
 */
function ruleFromGroup(clauses: readonly (readonly ReadMatch[])[]): Translated<AuthorizationRule | 'never'> {
  let from: Source[] | undefined;
  let to: Operation[] | undefined;
  const when: Condition[] = [];
  for (const [c, all] of clauses.entries()) {
    if (all.length === 0) continue; // a clause without matches matches everything
    const matches = all.filter((m) => !matchIsEmpty(m)); // an empty match never matches
    if (matches.length === 0) return ok('never');
    const kinds = new Set(matches.map(matchKind));
    const only = kinds.size === 1 ? [...kinds][0] : undefined;
    if (only === 'source' && from === undefined) from = matches.map(toSource);
    else if (only === 'port' && to === undefined) to = matches.map(toOperation);
    else if (matches.length === 1) when.push(...toConditions(matches[0]!));
    else return reject(`rules[${c}] ORs ${matches.length} matches that mix kinds of fields, which the policy engine cannot express`);
  }
  return ok({ from: from ?? [], to: to ?? [], when });
}

function matchIsEmpty(m: ReadMatch): boolean {
  return Object.values(m).every((list: readonly unknown[]) => list.length === 0);
}

function matchKind(m: ReadMatch): MatchKind {
  const destination = m.destinationIps.length + m.notDestinationIps.length;
  const ports = m.destinationPorts.length + m.notDestinationPorts.length;
  const source =
    m.namespaces.length + m.notNamespaces.length + m.principals.length + m.notPrincipals.length + m.sourceIps.length + m.notSourceIps.length +
    m.serviceAccounts.length + m.notServiceAccounts.length;
  if (destination === 0 && ports === 0) return 'source';
  if (destination === 0 && source === 0) return 'port';
  return 'other';
}

function toSource(m: ReadMatch): Source {
  return {
    principals: m.principals,
    notPrincipals: m.notPrincipals,
    requestPrincipals: [],
    notRequestPrincipals: [],
    namespaces: m.namespaces,
    notNamespaces: m.notNamespaces,
    serviceAccounts: m.serviceAccounts,
    notServiceAccounts: m.notServiceAccounts,
    ipBlocks: m.sourceIps,
    notIpBlocks: m.notSourceIps,
    remoteIpBlocks: [],
    notRemoteIpBlocks: [],
  };
}

function toOperation(m: ReadMatch): Operation {
  return { hosts: [], notHosts: [], ports: m.destinationPorts, notPorts: m.notDestinationPorts, methods: [], notMethods: [], paths: [], notPaths: [] };
}

/** One match as conditions: each non-empty field, and each non-empty not_ field, is one condition. */
function toConditions(m: ReadMatch): Condition[] {
  const out: Condition[] = [];
  const add = (key: string, values: string[], notValues: string[]): void => {
    if (values.length > 0) out.push({ key, values, notValues: [] });
    if (notValues.length > 0) out.push({ key, values: [], notValues });
  };
  add('source.namespace', m.namespaces, m.notNamespaces);
  add('source.principal', m.principals, m.notPrincipals);
  add('source.serviceAccount', m.serviceAccounts, m.notServiceAccounts);
  add('source.ip', m.sourceIps, m.notSourceIps);
  add('destination.ip', m.destinationIps, m.notDestinationIps);
  add('destination.port', m.destinationPorts.map(String), m.notDestinationPorts.map(String));
  return out;
}

/**
 * A StringMatch as the policy engine's pattern (`exact`, `prefix*`, `*suffix`, `*` for presence). One
 * with nothing set is absent, as ztunnel drops it without a word; one whose value would read as a
 * wildcard cannot be matched literally here, so it is dropped and said.
 */
function pattern(s: StringMatch): Entry<string> {
  const m = s.matchType;
  switch (m.case) {
    case 'exact':
      if (m.value.startsWith('*') || m.value.endsWith('*')) return { ok: false, problem: `exact match ${JSON.stringify(m.value)} begins or ends with "*", which would read as a wildcard` };
      return { ok: true, value: m.value };
    case 'prefix':
      if (m.value.startsWith('*')) return { ok: false, problem: `prefix match ${JSON.stringify(m.value)} begins with "*", which would read as a suffix wildcard` };
      return { ok: true, value: `${m.value}*` };
    case 'suffix':
      return { ok: true, value: `*${m.value}` };
    case 'presence':
      return { ok: true, value: '*' };
    default:
      return { ok: 'absent' };
  }
}

function serviceAccount(sa: ServiceAccountMatch): Entry<string> {
  return { ok: true, value: `${sa.namespace}/${sa.serviceAccount}` };
}

function cidr(a: RbacAddress): Entry<string> {
  const ip = ipFromBytes(a.address);
  if (ip === undefined) return { ok: false, problem: `address has ${a.address.length} bytes; an IPv4 address has 4 and an IPv6 address 16` };
  const full = isIPv4(ip) ? 32 : 128;
  if (a.length > full) return { ok: false, problem: `address ${ip} has prefix length ${a.length}, longer than ${full}` };
  return { ok: true, value: `${ip}/${a.length}` };
}

/** ztunnel truncates a port to 16 bits (70000 would become 4464); a port outside 1-65535 is dropped here instead. */
function port(p: number): Entry<number> {
  if (p < 1 || p > 65535) return { ok: false, problem: `destination port ${p} is outside 1-65535` };
  return { ok: true, value: p };
}

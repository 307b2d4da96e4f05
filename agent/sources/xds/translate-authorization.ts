// istiod's Authorization resources checked and converted into the agent's AuthorizationPolicy rules,
// following ztunnel's matching semantics; what the policy engine cannot express is refused, not guessed.

import { isIPv4 } from 'node:net';
import type { AuthorizationPolicyObject, AuthorizationRule, Condition, Operation, Source } from '../../config/istio-security.js';
import { ROOT_NAMESPACE } from '../../policy/authorization.js';
import {
  type Address as RbacAddress,
  type Authorization,
  type Match,
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

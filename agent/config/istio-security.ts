// Typed Istio security resources (security.istio.io AuthorizationPolicy and PeerAuthentication) and their
// parsers, with istiod's validation rules: what the policy engine evaluates is exactly what was accepted.

import { readWorkloadSelector } from './istio-common.js';
import { ipFamily, isCidr } from './formats.js';
import type { WorkloadSelector } from './istio-networking.js';
import type { ObjectBase } from './kubernetes.js';
import type { Field, MapReader } from './yaml-reader.js';

// ---------------------------------------------------------------------------------- AuthorizationPolicy

/** Who sends the request. Every list is an OR of its values; the fields of one Source are ANDed. */
export interface Source {
  /** Peer identities without `spiffe://`, e.g. `cluster.local/ns/default/sa/sleep`; `*` prefix/suffix wildcards. */
  readonly principals: readonly string[];
  readonly notPrincipals: readonly string[];
  /** JWT `iss/sub` principals: HTTP only. */
  readonly requestPrincipals: readonly string[];
  readonly notRequestPrincipals: readonly string[];
  readonly namespaces: readonly string[];
  readonly notNamespaces: readonly string[];
  /** `name` or `namespace/name` service accounts. */
  readonly serviceAccounts: readonly string[];
  readonly notServiceAccounts: readonly string[];
  /** IPs or CIDRs of the peer connection's source address. */
  readonly ipBlocks: readonly string[];
  readonly notIpBlocks: readonly string[];
  /** IPs or CIDRs of the original client (X-Forwarded-For or PROXY protocol): HTTP only. */
  readonly remoteIpBlocks: readonly string[];
  readonly notRemoteIpBlocks: readonly string[];
}

/** What the request does. Ports are L4; hosts, methods and paths need HTTP. */
export interface Operation {
  readonly hosts: readonly string[];
  readonly notHosts: readonly string[];
  readonly ports: readonly number[];
  readonly notPorts: readonly number[];
  readonly methods: readonly string[];
  readonly notMethods: readonly string[];
  readonly paths: readonly string[];
  readonly notPaths: readonly string[];
}

/** An extra condition, e.g. `key: source.ip, values: [10.0.0.0/8]`. */
export interface Condition {
  readonly key: string;
  readonly values: readonly string[];
  readonly notValues: readonly string[];
}

/**
 * A rule matches when any of `from` matches, and any of `to`, and all of `when`. An empty list places no
 * constraint, so `{}` matches every request.
 */
export interface AuthorizationRule {
  readonly from: readonly Source[];
  readonly to: readonly Operation[];
  readonly when: readonly Condition[];
}

export type AuthorizationAction = 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';

/**
 * A Gateway API style reference. Where Istio binds such a policy to the waypoint of a Service (or of every
 * Service that uses a Gateway of class istio-waypoint), Ambit applies it in the destination's agent to
 * requests for that Service (agent/policy/policy-targets.ts).
 */
export interface PolicyTargetReference {
  readonly group: string;
  readonly kind: 'Service' | 'ServiceEntry' | 'Gateway';
  readonly name: string;
}

export interface AuthorizationPolicyObject extends ObjectBase<'AuthorizationPolicy'> {
  readonly spec: {
    /** undefined applies to every workload in the namespace (the whole mesh in the root namespace). */
    readonly selector?: WorkloadSelector;
    readonly targetRefs: readonly PolicyTargetReference[];
    /** ALLOW when not written. */
    readonly action: AuthorizationAction;
    /** The extension provider of a CUSTOM policy. */
    readonly provider?: string;
    /** No rules: an ALLOW policy matches nothing (so it denies everything it selects). */
    readonly rules: readonly AuthorizationRule[];
  };
}

// Istio's condition keys (security.ValidateAttribute); `[...]` keys take a name in brackets.
const CONDITION_KEYS = [
  'source.ip', 'remote.ip', 'source.namespace', 'source.serviceAccount', 'source.principal', 'request.auth.principal',
  'request.auth.audiences', 'request.auth.presenter', 'destination.ip', 'destination.port', 'connection.sni',
];
const CONDITION_MAP_KEYS = ['request.headers', 'request.experimental.inline.headers', 'request.auth.claims', 'experimental.envoy.filters.'];
const SOURCE_FIELDS = [
  'principals', 'notPrincipals', 'requestPrincipals', 'notRequestPrincipals', 'namespaces', 'notNamespaces',
  'serviceAccounts', 'notServiceAccounts', 'ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks',
] as const;
const OPERATION_FIELDS = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'] as const;

export function parseAuthorizationPolicy(root: MapReader, base: ObjectBase<'AuthorizationPolicy'>): AuthorizationPolicyObject | undefined {
  // An empty spec is valid: an ALLOW policy with no rules, denying everything in the namespace.
  const spec = root.map('spec');
  const selector = spec && readWorkloadSelector(spec, 'selector');
  const targetRefs = spec ? readTargetRefs(spec) : [];
  if (spec && selector && targetRefs.length > 0) root.ctx.error(spec.line, spec.path, 'expected only one of selector and targetRefs, got both');

  const action = spec?.enum('action', ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM']) ?? 'ALLOW';
  const providerField = spec?.get('provider');
  const provider = providerField?.map()?.require('name')?.nonEmptyString();
  if (action === 'CUSTOM') {
    if (!providerField) root.ctx.error(spec?.line ?? root.line, 'spec.provider', 'required field is missing (a CUSTOM policy names its provider)');
  } else if (providerField) {
    providerField.fail(`provider is only for the CUSTOM action, got action ${action}`);
  }
  const rulesField = spec?.get('rules');
  const rules = rulesField?.list()?.flatMap((f) => parseRule(f) ?? []) ?? [];
  if ((action === 'DENY' || action === 'CUSTOM') && !rulesField) {
    root.ctx.error(spec?.line ?? root.line, 'spec.rules', `required field is missing (a ${action} policy without rules never applies; write \`rules: [{}]\` to match every request)`);
  }
  return {
    ...base,
    spec: { ...(selector ? { selector } : {}), targetRefs, action, ...(provider !== undefined ? { provider } : {}), rules },
  };
}

/** The kinds a policy attaches to in ambient, by group: Ambit applies each in its agents (no waypoint hop). */
const TARGET_KINDS: readonly { readonly group: string; readonly kind: PolicyTargetReference['kind'] }[] = [
  { group: '', kind: 'Service' },
  { group: 'core', kind: 'Service' },
  { group: 'networking.istio.io', kind: 'ServiceEntry' },
  { group: 'gateway.networking.k8s.io', kind: 'Gateway' },
];

/** `targetRefs` and the older single `targetRef`, as AuthorizationPolicy and RequestAuthentication write them. */
export function readTargetRefs(spec: MapReader): PolicyTargetReference[] {
  const targetRef = spec.map('targetRef');
  return [...spec.maps('targetRefs'), ...(targetRef ? [targetRef] : [])].flatMap((r) => parseTargetRef(r) ?? []);
}

function parseTargetRef(m: MapReader): PolicyTargetReference | undefined {
  const group = m.string('group') ?? '';
  const kindField = m.require('kind');
  const kind = kindField?.nonEmptyString();
  const name = m.require('name')?.nonEmptyString();
  if (m.has('namespace')) m.get('namespace')?.fail('cross-namespace targetRefs are not supported (Istio neither)');
  if (kind === undefined || name === undefined) return undefined;
  const known = TARGET_KINDS.find((t) => t.kind === kind && t.group === group);
  if (!known) {
    const kinds = [...new Set(TARGET_KINDS.map((t) => t.kind))];
    const expected = kinds.map((k) => `${k} (group ${TARGET_KINDS.filter((t) => t.kind === k).map((t) => JSON.stringify(t.group)).join(' or ')})`).join(', ');
    return kindField?.fail(`expected a target of kind ${expected}, got ${kind} in group ${JSON.stringify(group)}`);
  }
  return { group, kind: known.kind, name };
}

function parseRule(field: Field): AuthorizationRule | undefined {
  const m = field.map();
  if (!m) return undefined;
  const from = nonEmptyList(m, 'from', 'source', parseSource);
  const to = nonEmptyList(m, 'to', 'operation', parseOperation);
  const when = m.maps('when').flatMap((c) => parseCondition(c) ?? []);
  return { from, to, when };
}

/** `from` and `to`: if written, non-empty lists of `{source: ...}` / `{operation: ...}`, each non-empty. */
function nonEmptyList<T>(m: MapReader, key: string, inner: string, parse: (m: MapReader) => T | undefined): T[] {
  const field = m.get(key);
  const items = field?.list();
  if (items?.length === 0) field?.fail(`expected at least one ${inner}, got an empty list (omit \`${key}\` to match any)`);
  return (items ?? []).flatMap((item) => {
    const value = item.map()?.require(inner)?.map();
    if (value?.size === 0) return item.fail(`${inner} has no fields; it would match everything, so omit it instead`) ?? [];
    return (value && parse(value)) ?? [];
  });
}

function parseSource(m: MapReader): Source {
  const source = Object.fromEntries(SOURCE_FIELDS.map((key) => [key, m.strings(key, (item) => sourceValue(key, item))])) as Record<
    (typeof SOURCE_FIELDS)[number],
    string[]
  >;
  const identities = source.principals.length + source.notPrincipals.length + source.namespaces.length + source.notNamespaces.length;
  if (identities > 0 && source.serviceAccounts.length + source.notServiceAccounts.length > 0) {
    // istiod's rule: serviceAccounts is a shorthand for principals, and the two must not be mixed.
    m.ctx.error(m.line, m.path, 'serviceAccounts cannot be combined with principals or namespaces');
  }
  return source;
}

function sourceValue(key: (typeof SOURCE_FIELDS)[number], item: Field): string | undefined {
  const lower = key.toLowerCase();
  if (lower.endsWith('ipblocks')) return item.ipOrCidr();
  const value = item.nonEmptyString();
  if (value !== undefined && lower.endsWith('serviceaccounts') && (value.includes('*') || value.split('/').length > 2)) {
    return item.fail(`expected "name" or "namespace/name" without wildcards, got ${JSON.stringify(value)}`);
  }
  return value;
}

function parseOperation(m: MapReader): Operation {
  const lists = Object.fromEntries(OPERATION_FIELDS.map((key) => [key, m.strings(key, (item) => item.nonEmptyString())]));
  return {
    ...(lists as Record<(typeof OPERATION_FIELDS)[number], string[]>),
    ports: m.strings('ports', portString).map(Number),
    notPorts: m.strings('notPorts', portString).map(Number),
  };
}

/** Istio writes ports in policies as strings ("8080"); 0 to 65535 as istiod accepts. */
function portString(item: Field): string | undefined {
  const value = item.scalar;
  if (typeof value === 'string' && /^\d{1,5}$/.test(value) && Number(value) <= 65535) return value;
  return item.fail(`expected a port as a string such as "8080", got ${typeof value === 'string' ? JSON.stringify(value) : String(value)}`);
}

function parseCondition(m: MapReader): Condition | undefined {
  const keyField = m.require('key');
  const key = keyField?.nonEmptyString();
  const values = m.strings('values', (item) => item.nonEmptyString());
  const notValues = m.strings('notValues', (item) => item.nonEmptyString());
  if (key === undefined || !keyField) return undefined;
  const isMapKey = CONDITION_MAP_KEYS.some((prefix) => key.startsWith(prefix));
  if (!CONDITION_KEYS.includes(key) && !isMapKey) {
    return keyField.fail(`unknown condition key ${JSON.stringify(key)}; expected one of ${[...CONDITION_KEYS, ...CONDITION_MAP_KEYS.map((k) => `${k}[...]`)].join(', ')}`);
  }
  if (isMapKey && !/^[^[]+\[.+\]$/.test(key)) return keyField.fail(`expected the form ${key.split('[')[0]}[<name>], got ${JSON.stringify(key)}`);
  if (values.length === 0 && notValues.length === 0) {
    m.ctx.error(m.line, m.path, `expected values or notValues for key ${key}, got neither`);
    return undefined;
  }
  const check = conditionValueCheck(key);
  for (const value of check ? [...values, ...notValues] : []) {
    if (!check?.valid(value)) m.ctx.error(m.line, m.path, `invalid value ${JSON.stringify(value)} for key ${key}: expected ${check?.expected}`);
  }
  return { key, values, notValues };
}

/** IP and port keys take the same values as ipBlocks and ports. */
function conditionValueCheck(key: string): { valid: (value: string) => boolean; expected: string } | undefined {
  if (key.endsWith('.ip')) return { valid: (v) => ipFamily(v) !== undefined || isCidr(v), expected: 'an IP address or CIDR' };
  if (key === 'destination.port') return { valid: (v) => /^\d{1,5}$/.test(v) && Number(v) <= 65535, expected: 'a port number' };
  return undefined;
}

// ----------------------------------------------------------------------------------- PeerAuthentication

/** UNSET inherits from the namespace policy, then the mesh policy (PERMISSIVE when none). */
export type MtlsMode = 'UNSET' | 'DISABLE' | 'PERMISSIVE' | 'STRICT';

export interface PeerAuthenticationObject extends ObjectBase<'PeerAuthentication'> {
  readonly spec: {
    /** undefined applies to the namespace (the whole mesh in the root namespace). */
    readonly selector?: WorkloadSelector;
    readonly mtls: { readonly mode: MtlsMode };
    /** Per workload port (the pod's port, not the Service's); only with a selector. */
    readonly portLevelMtls: readonly { readonly port: number; readonly mode: MtlsMode }[];
  };
}

const MTLS_MODES: readonly MtlsMode[] = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'];

export function parsePeerAuthentication(root: MapReader, base: ObjectBase<'PeerAuthentication'>): PeerAuthenticationObject | undefined {
  const spec = root.map('spec');
  const selector = spec && readWorkloadSelector(spec, 'selector');
  const mode = spec?.map('mtls')?.enum('mode', MTLS_MODES) ?? 'UNSET';
  const portsField = spec?.get('portLevelMtls');
  const portEntries = portsField?.map()?.entries();
  const portLevelMtls = (portEntries ?? []).flatMap(([port, value]) => {
    const number = Number(port);
    if (!/^\d+$/.test(port) || number < 1 || number > 65535) return value.fail(`expected a port number from 1 to 65535 as the key, got ${JSON.stringify(port)}`) ?? [];
    const portMode = value.map()?.enum('mode', MTLS_MODES) ?? 'UNSET';
    return [{ port: number, mode: portMode }];
  });
  if (portEntries?.length === 0) portsField?.fail('expected at least one port, got an empty mapping');
  if (portsField && (!selector || Object.keys(selector.matchLabels).length === 0)) {
    // Ports are a workload's ports: a namespace- or mesh-wide policy has no single workload to name them on.
    portsField.fail('portLevelMtls needs a selector; namespace-wide and mesh-wide policies cannot set port-level mTLS');
  }
  return { ...base, spec: { ...(selector ? { selector } : {}), mtls: { mode }, portLevelMtls } };
}

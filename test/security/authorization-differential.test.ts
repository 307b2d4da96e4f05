// Differential property test of AuthorizationPolicy (fast-check): random policies, written as the YAML a
// user applies and read by agent/config, decide random connections and requests exactly as a plain
// reference written here from Istio's documented semantics does:
// - a policy applies when it lives in the root namespace (istio-system) or the workload's, and its
//   selector's labels are all on the workload (no selector: every workload);
// - CUSTOM first: it delegates to an external authorizer, which neither ztunnel nor Ambit calls, so it
//   never decides here (Ambit warns when it loads one); then any matching DENY denies; then, if any
//   ALLOW applies, one of its rules must match, else the request is allowed;
// - a rule matches when some source matches (or it has none), some operation matches (or none), and
//   every condition holds; a field's values need one match, its not-values none; strings match
//   exactly, as `prefix*`, `*suffix`, or `*` (anything but nothing); an identity-based field never
//   matches a peer without one;
// - on a connection (no HTTP seen, ztunnel's L4 rules) a field only HTTP can decide makes an ALLOW rule
//   fail and is ignored by a DENY rule, so that not seeing HTTP never widens access.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { parseConfigFile } from '../../agent/config/load.js';
import { authorizeConnection } from '../../agent/policy/authorization.js';
import { authorizeRequest } from '../../agent/policy/http-authorization.js';
import { buildSnapshot } from '../../agent/state/build.js';
import type { MeshSnapshot, SpiffeId, Workload } from '../../agent/state/model.js';
import { fuzzTarget } from '../fuzz/property.js';

const fuzz = fuzzTarget('authorization');

// ---- the world: three workloads, a few peers -------------------------------------------------------

const WORKLOADS = [
  { namespace: 'shop', name: 'web', labels: { app: 'web', tier: 'front' }, ip: '10.1.0.1' },
  { namespace: 'shop', name: 'db', labels: { app: 'db', tier: 'back' }, ip: '10.1.0.2' },
  { namespace: 'other', name: 'api', labels: { app: 'api', tier: 'front' }, ip: '10.1.0.3' },
] as const;
const PODS = WORKLOADS.map(
  (w) => `apiVersion: v1
kind: Pod
metadata: { name: ${w.name}, namespace: ${w.namespace}, labels: ${JSON.stringify(w.labels)} }
spec: { containers: [{ name: c, command: [x] }] }
status: { podIP: ${w.ip} }
`,
).join('---\n');

const IDENTITIES = ['cluster.local/ns/shop/sa/web', 'cluster.local/ns/shop/sa/admin', 'cluster.local/ns/other/sa/api', 'example.org/ns/shop/sa/web'];
const IPS = ['10.2.0.5', '10.9.1.1', '::ffff:10.2.0.5', 'fd00::5', '192.168.1.1'];
const PORTS = [80, 8080, 9090];

interface Peer {
  readonly identity?: string;
  readonly ip: string;
  readonly port: number;
}
interface Request {
  readonly method: string;
  readonly path: string;
  readonly host: string;
}

const peer: fc.Arbitrary<Peer> = fc.record(
  { identity: fc.constantFrom(...IDENTITIES), ip: fc.constantFrom(...IPS), port: fc.constantFrom(...PORTS) },
  { requiredKeys: ['ip', 'port'] },
);
const request: fc.Arbitrary<Request> = fc.record({
  method: fc.constantFrom('GET', 'POST', 'DELETE'),
  path: fc.constantFrom('/', '/api/v1/items', '/admin/users', '/public/index.html', '/api'),
  host: fc.constantFrom('web', 'web:8080', 'Web.Shop.svc.cluster.local', 'db'),
});

// ---- policies ------------------------------------------------------------------------------------------

interface SourceSpec {
  principals?: string[];
  notPrincipals?: string[];
  namespaces?: string[];
  notNamespaces?: string[];
  ipBlocks?: string[];
  notIpBlocks?: string[];
  remoteIpBlocks?: string[];
  notRemoteIpBlocks?: string[];
}
interface OperationSpec {
  ports?: string[];
  notPorts?: string[];
  methods?: string[];
  notMethods?: string[];
  paths?: string[];
  notPaths?: string[];
  hosts?: string[];
  notHosts?: string[];
}
interface ConditionSpec {
  key: string;
  values?: string[];
  notValues?: string[];
}
interface RuleSpec {
  from?: { source: SourceSpec }[];
  to?: { operation: OperationSpec }[];
  when?: ConditionSpec[];
}
interface PolicySpec {
  namespace: string;
  name: string;
  action: 'ALLOW' | 'DENY' | 'CUSTOM' | 'AUDIT';
  selector?: Record<string, string>;
  rules?: RuleSpec[];
}

const some = <T>(values: fc.Arbitrary<T>): fc.Arbitrary<T[] | undefined> => fc.option(fc.array(values, { minLength: 1, maxLength: 2 }), { nil: undefined, freq: 2 });
const principal = fc.constantFrom(...IDENTITIES, 'cluster.local/ns/shop/*', '*/sa/api', '*', 'cluster.local/*');
const namespacePattern = fc.constantFrom('shop', 'other', 'sh*', '*er', '*');
const block = fc.constantFrom('10.2.0.0/16', '10.0.0.0/8', '10.2.0.5', 'fd00::/8', '192.168.0.0/16');
const portText = fc.constantFrom('80', '8080', '9090');

const hasField = (o: object): boolean => Object.values(o).some((v) => v !== undefined);
const source: fc.Arbitrary<SourceSpec> = fc.record(
  {
    principals: some(principal),
    notPrincipals: some(principal),
    namespaces: some(namespacePattern),
    notNamespaces: some(namespacePattern),
    ipBlocks: some(block),
    notIpBlocks: some(block),
    remoteIpBlocks: some(block),
    notRemoteIpBlocks: some(block),
  },
  { requiredKeys: [] },
).filter(hasField); // an empty source is refused, as Istio's validation does
const operation: fc.Arbitrary<OperationSpec> = fc.record(
  {
    ports: some(portText),
    notPorts: some(portText),
    methods: some(fc.constantFrom('GET', 'POST')),
    notMethods: some(fc.constantFrom('DELETE', 'POST')),
    paths: some(fc.constantFrom('/api/*', '/admin/users', '*.html', '*', '/')),
    notPaths: some(fc.constantFrom('/admin/*', '/api')),
    hosts: some(fc.constantFrom('web', 'web:*', '*.svc.cluster.local', 'WEB')),
    notHosts: some(fc.constantFrom('db', 'web:8080')),
  },
  { requiredKeys: [] },
).filter(hasField);
/** Each condition key with values of the kind agent/config accepts for it. */
const CONDITION_VALUES: Readonly<Record<string, readonly string[]>> = {
  'source.ip': ['10.0.0.0/8', '10.2.0.5', 'fd00::/8', '192.168.0.0/16'],
  'destination.port': ['80', '8080', '9090'],
  'source.namespace': ['shop', 'other', 'sh*', '*'],
  'source.principal': ['cluster.local/ns/shop/sa/web', 'cluster.local/ns/other/*', '*', '*/sa/admin'],
  'request.headers[x-user]': ['alice', 'adm*', '*'],
};
const condition: fc.Arbitrary<ConditionSpec> = fc
  .constantFrom(...Object.keys(CONDITION_VALUES))
  .chain((key) => {
    const value = fc.constantFrom(...CONDITION_VALUES[key]!);
    return fc.record({ key: fc.constant(key), values: some(value), notValues: some(value) });
  })
  .filter((c) => c.values !== undefined || c.notValues !== undefined);
const rule: fc.Arbitrary<RuleSpec> = fc.record(
  {
    from: fc.option(fc.array(source.map((s) => ({ source: s })), { minLength: 1, maxLength: 2 }), { nil: undefined }),
    to: fc.option(fc.array(operation.map((o) => ({ operation: o })), { minLength: 1, maxLength: 2 }), { nil: undefined }),
    when: fc.option(fc.array(condition, { minLength: 1, maxLength: 2 }), { nil: undefined }),
  },
  { requiredKeys: [] },
);
const policy: fc.Arbitrary<Omit<PolicySpec, 'name'>> = fc
  .record({
    namespace: fc.constantFrom('shop', 'other', 'istio-system'),
    action: fc.constantFrom('ALLOW', 'ALLOW', 'DENY', 'DENY', 'CUSTOM', 'AUDIT'),
    selector: fc.option(fc.constantFrom<Record<string, string>>({ app: 'web' }, { tier: 'front' }, { app: 'db', tier: 'back' }, { app: 'none' }), { nil: undefined }),
    rules: fc.option(fc.array(rule, { minLength: 1, maxLength: 3 }), { nil: undefined }),
  })
  // DENY and CUSTOM need rules (agent/config refuses them otherwise, and Istio applies them to nothing).
  .map((p) => (p.action === 'DENY' || p.action === 'CUSTOM') && !p.rules ? { ...p, rules: [{}] } : p);
const policies = fc.array(policy, { maxLength: 4 }).map((ps) => ps.map((p, i) => ({ ...p, name: `p${i}` })));

function toYaml(p: PolicySpec): string {
  const spec: Record<string, unknown> = { action: p.action };
  if (p.action === 'CUSTOM') spec['provider'] = { name: 'ext-authz' };
  if (p.selector) spec['selector'] = { matchLabels: p.selector };
  if (p.rules) spec['rules'] = p.rules;
  return stringify({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: p.name, namespace: p.namespace }, spec });
}

function mesh(specs: readonly PolicySpec[]): MeshSnapshot {
  const parsed = parseConfigFile([PODS, ...specs.map(toYaml)].join('---\n'), 'policies.yaml');
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error'), []);
  return buildSnapshot(parsed.objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
}

// ---- the reference -------------------------------------------------------------------------------------

/** Istio's string match. */
function matches(pattern: string, value: string | undefined): boolean {
  if (value === undefined) return false;
  if (pattern === '*') return value.length > 0;
  if (pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  if (pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  return value === pattern;
}

/** An address in a block, IPv4-mapped IPv6 read as IPv4 (written for the few shapes generated here). */
function inBlock(ip: string, cidr: string): boolean {
  const address = ip.startsWith('::ffff:') ? ip.slice('::ffff:'.length) : ip;
  if (cidr.includes(':') || address.includes(':')) return cidr === 'fd00::/8' && address.toLowerCase().startsWith('fd');
  const [base, bits] = cidr.split('/');
  const value = (a: string): number => a.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
  const unit = 2 ** (32 - (bits === undefined ? 32 : Number(bits)));
  return Math.floor(value(address) / unit) === Math.floor(value(base!) / unit);
}

/** A field: one of `values` must match (if any), none of `notValues` may. */
function fieldHolds(values: readonly string[] | undefined, notValues: readonly string[] | undefined, test: (v: string) => boolean): boolean {
  return (!values || values.some(test)) && !(notValues ?? []).some(test);
}

type Mode = 'allow' | 'deny';

/** A field only HTTP can decide, on a bare connection: fails an ALLOW rule, ignored by a DENY rule. */
function unseen(values: readonly string[] | undefined, notValues: readonly string[] | undefined, mode: Mode): boolean {
  return mode === 'deny' || (values === undefined && notValues === undefined);
}

function referenceDecision(specs: readonly PolicySpec[], workload: (typeof WORKLOADS)[number], from: Peer, http: Request | undefined): boolean {
  const namespaceOf = from.identity?.split('/')[2];
  const applies = (p: PolicySpec): boolean =>
    (p.namespace === 'istio-system' || p.namespace === workload.namespace) &&
    Object.entries(p.selector ?? {}).every(([k, v]) => (workload.labels as Record<string, string>)[k] === v);

  const sourceHolds = (s: SourceSpec, mode: Mode): boolean =>
    fieldHolds(s.principals, s.notPrincipals, (p) => matches(p, from.identity)) &&
    fieldHolds(s.namespaces, s.notNamespaces, (n) => matches(n, namespaceOf)) &&
    fieldHolds(s.ipBlocks, s.notIpBlocks, (b) => inBlock(from.ip, b)) &&
    (http ? fieldHolds(s.remoteIpBlocks, s.notRemoteIpBlocks, (b) => inBlock(from.ip, b)) : unseen(s.remoteIpBlocks, s.notRemoteIpBlocks, mode));
  const operationHolds = (o: OperationSpec, mode: Mode): boolean =>
    fieldHolds(o.ports, o.notPorts, (p) => Number(p) === from.port) &&
    (http
      ? fieldHolds(o.methods, o.notMethods, (m) => m === http.method) &&
        fieldHolds(o.paths, o.notPaths, (p) => matches(p, http.path)) &&
        fieldHolds(o.hosts, o.notHosts, (h) => matches(h.toLowerCase(), http.host.toLowerCase()))
      : unseen(o.methods, o.notMethods, mode) && unseen(o.paths, o.notPaths, mode) && unseen(o.hosts, o.notHosts, mode));
  const conditionHolds = (c: ConditionSpec, mode: Mode): boolean => {
    const test = (t: (v: string) => boolean): boolean => fieldHolds(c.values, c.notValues, t);
    switch (c.key) {
      case 'source.ip':
        return test((v) => inBlock(from.ip, v));
      case 'destination.port':
        return test((v) => Number(v) === from.port);
      case 'source.namespace':
        return test((v) => matches(v, namespaceOf));
      case 'source.principal':
        return test((v) => matches(v, from.identity));
      default:
        // request.headers[x-user]: the requests here carry no such header, so no value matches it.
        return http ? test(() => false) : mode === 'deny';
    }
  };
  const ruleHolds = (r: RuleSpec, mode: Mode): boolean =>
    (!r.from || r.from.some((f) => sourceHolds(f.source, mode))) &&
    (!r.to || r.to.some((t) => operationHolds(t.operation, mode))) &&
    (r.when ?? []).every((c) => conditionHolds(c, mode));

  const applying = specs.filter(applies);
  // CUSTOM: no external authorizer is called (see the header); AUDIT only logs.
  if (applying.some((p) => p.action === 'DENY' && (p.rules ?? []).some((r) => ruleHolds(r, 'deny')))) return false;
  const allows = applying.filter((p) => p.action === 'ALLOW');
  return allows.length === 0 || allows.some((p) => (p.rules ?? []).some((r) => ruleHolds(r, 'allow')));
}

// ---- the properties ------------------------------------------------------------------------------------

function workloadIn(snapshot: MeshSnapshot, w: (typeof WORKLOADS)[number]): Workload {
  const found = snapshot.workloads.get(`${w.namespace}/${w.name}`);
  assert.ok(found);
  return found;
}

const attributes = (snapshot: MeshSnapshot, w: (typeof WORKLOADS)[number], from: Peer) => ({
  ...(from.identity ? { sourceIdentity: `spiffe://${from.identity}` as SpiffeId } : {}),
  sourceIp: from.ip,
  destination: workloadIn(snapshot, w),
  destinationIp: w.ip,
  destinationPort: from.port,
});

describe('AuthorizationPolicy against a reference from Istio\'s documentation', () => {
  it('decides every connection as the reference does (L4: ztunnel\'s rules for what needs HTTP)', async () => {
    await fuzz.assert('l4-decisions',
      fc.property(policies, fc.constantFrom(...WORKLOADS), fc.array(peer, { minLength: 1, maxLength: 6 }), (specs, w, peers) => {
        const snapshot = mesh(specs);
        for (const from of peers) {
          const decision = authorizeConnection(snapshot, attributes(snapshot, w, from));
          assert.equal(decision.allowed, referenceDecision(specs, w, from, undefined), JSON.stringify({ from, to: w.name }));
        }
      }),
      { numRuns: 600 },
    );
  });

  it('decides every HTTP request as the reference does', async () => {
    await fuzz.assert('http-decisions',
      fc.property(policies, fc.constantFrom(...WORKLOADS), fc.array(fc.tuple(peer, request), { minLength: 1, maxLength: 6 }), (specs, w, requests) => {
        const snapshot = mesh(specs);
        for (const [from, http] of requests) {
          const decision = authorizeRequest(snapshot, { ...attributes(snapshot, w, from), method: http.method, authority: http.host, path: http.path, headers: new Map() });
          assert.equal(decision.allowed, referenceDecision(specs, w, from, http), JSON.stringify({ from, http, to: w.name }));
        }
      }),
      { numRuns: 600 },
    );
  });
});

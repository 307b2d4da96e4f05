// Which DestinationRule shapes traffic to a host for a given client, its subsets, and the traffic policy
// in force for one (subset, port), with Istio's rules:
// - lookup path: the client's namespace, then the host's Service namespace, then the root namespace;
//   the first namespace with a rule for the host decides (rules are never combined across namespaces);
// - within a namespace the most specific host wins; several rules for that host are merged as istiod
//   merges them: subsets are pooled (the first of a name wins) and the first top-level trafficPolicy wins;
//   rules whose workloadSelector selects the client come before rules without one;
// - policy precedence (istiod's MergeTrafficPolicy): top level, then the top level's port settings, then
//   the subset's policy, then the subset's port settings, each replacing whole fields, never merging inside.

import type { Labels } from '../config/kubernetes.js';
import type {
  ClientTLSSettings,
  ConnectionPoolSettings,
  DestinationRuleObject,
  LoadBalancerSettings,
  OutlierDetection,
  Subset,
  TrafficPolicy,
} from '../config/istio-networking.js';
import { ROOT_NAMESPACE } from '../policy/authorization.js';
import { matchesLabels } from '../state/build.js';
import type { MeshService, MeshSnapshot, ServiceEndpoint } from '../state/model.js';
import { hostMatches, hostSpecificity, resolveHost, serviceNamespaceOf, visibleTo } from './hosts.js';

/** The rule in force for one host and client, after merging; `sources` names the rules merged into it. */
export interface EffectiveDestinationRule {
  readonly host: string;
  readonly namespace: string;
  readonly trafficPolicy?: TrafficPolicy;
  readonly subsets: readonly Subset[];
  readonly sources: readonly string[];
}

export interface RuleClient {
  readonly namespace: string;
  readonly labels: Labels;
}

export function findDestinationRule(snapshot: MeshSnapshot, host: string, client: RuleClient): EffectiveDestinationRule | undefined {
  const target = host.toLowerCase();
  const path = [client.namespace, serviceNamespaceOf(target, snapshot.clusterDomain), ROOT_NAMESPACE];
  const seen = new Set<string>();
  for (const ns of path) {
    if (ns === undefined || seen.has(ns)) continue;
    seen.add(ns);
    const rule = ruleInNamespace(snapshot, target, ns, client);
    if (rule) return rule;
  }
  return undefined;
}

function ruleInNamespace(snapshot: MeshSnapshot, host: string, namespace: string, client: RuleClient): EffectiveDestinationRule | undefined {
  const matching: { dr: DestinationRuleObject; host: string; order: number; selected: boolean }[] = [];
  snapshot.istio.destinationRules.forEach((dr, order) => {
    if (dr.metadata.namespace !== namespace) return;
    if (!visibleTo(dr.spec.exportTo, namespace, client.namespace)) return;
    const selector = dr.spec.workloadSelector?.matchLabels;
    // A workloadSelector applies to workloads of the rule's own namespace only.
    if (selector && (client.namespace !== namespace || !matchesLabels(selector, client.labels))) return;
    const resolved = resolveHost(dr.spec.host, namespace, snapshot.clusterDomain);
    if (hostMatches(resolved, host)) matching.push({ dr, host: resolved, order, selected: selector !== undefined });
  });
  if (matching.length === 0) return undefined;
  const best = Math.max(...matching.map((m) => hostSpecificity(m.host)));
  const rules = matching
    .filter((m) => hostSpecificity(m.host) === best)
    .sort((a, b) => Number(b.selected) - Number(a.selected) || a.order - b.order);
  let trafficPolicy: TrafficPolicy | undefined;
  const subsets: Subset[] = [];
  for (const { dr } of rules) {
    trafficPolicy ??= dr.spec.trafficPolicy;
    for (const s of dr.spec.subsets) if (!subsets.some((x) => x.name === s.name)) subsets.push(s);
  }
  return {
    host: rules[0]!.host,
    namespace,
    ...(trafficPolicy ? { trafficPolicy } : {}),
    subsets,
    sources: rules.map(({ dr }) => `${dr.metadata.namespace}/${dr.metadata.name}`),
  };
}

/** The four policies after precedence is applied; each undefined field means Istio's default. */
export interface ResolvedTrafficPolicy {
  readonly loadBalancer?: LoadBalancerSettings;
  readonly connectionPool?: ConnectionPoolSettings;
  readonly outlierDetection?: OutlierDetection;
  readonly tls?: ClientTLSSettings;
}

export function resolveTrafficPolicy(rule: EffectiveDestinationRule | undefined, subsetName: string | undefined, port: number): ResolvedTrafficPolicy {
  let out: ResolvedTrafficPolicy = {};
  const layer = (policy: TrafficPolicy | undefined): void => {
    if (!policy) return;
    out = overlay(out, policy);
    const portLevel = policy.portLevelSettings.find((p) => p.port === port);
    if (portLevel) out = overlay(out, portLevel);
  };
  layer(rule?.trafficPolicy);
  if (subsetName !== undefined) layer(rule?.subsets.find((s) => s.name === subsetName)?.trafficPolicy);
  return out;
}

function overlay(base: ResolvedTrafficPolicy, top: ResolvedTrafficPolicy): ResolvedTrafficPolicy {
  return {
    ...base,
    ...(top.loadBalancer ? { loadBalancer: top.loadBalancer } : {}),
    ...(top.connectionPool ? { connectionPool: top.connectionPool } : {}),
    ...(top.outlierDetection ? { outlierDetection: top.outlierDetection } : {}),
    ...(top.tls ? { tls: top.tls } : {}),
  };
}

export type SubsetEndpoints =
  | { readonly ok: true; readonly endpoints: readonly ServiceEndpoint[] }
  /** The route names a subset no DestinationRule defines: Envoy has no such cluster and answers 503 NC. */
  | { readonly ok: false; readonly reason: 'unknown-subset'; readonly message: string };

/** A Service's endpoints in a subset (all of them without one): those whose workload has the subset's labels. */
export function subsetEndpoints(snapshot: MeshSnapshot, service: MeshService, rule: EffectiveDestinationRule | undefined, subsetName: string | undefined): SubsetEndpoints {
  if (subsetName === undefined) return { ok: true, endpoints: service.endpoints };
  const subset = rule?.subsets.find((s) => s.name === subsetName);
  if (!subset) {
    const where = rule ? `DestinationRule ${rule.sources.join(', ')} defines ${rule.subsets.map((s) => s.name).join(', ') || 'no subsets'}` : 'no DestinationRule applies';
    return { ok: false, reason: 'unknown-subset', message: `subset "${subsetName}" of ${service.hostname} is not defined (${where})` };
  }
  const endpoints = service.endpoints.filter((e) => {
    const labels = snapshot.workloads.get(e.workload)?.labels;
    return labels !== undefined && matchesLabels(subset.labels, labels);
  });
  return { ok: true, endpoints };
}

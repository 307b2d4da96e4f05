// Istio's host names: short names resolved in a resource's namespace, FQDNs, `*.suffix` wildcards, and
// which resources a client namespace may see (exportTo). Shared by VirtualService and DestinationRule
// lookup so that both resolve a host the same way.

import { ipFamily } from '../config/formats.js';
import type { ExportTo } from '../config/istio-networking.js';
import type { MeshSnapshot } from '../state/model.js';
import { authorityHost } from './request.js';

/**
 * Istio's ResolveShortnameToFQDN: a name without a dot ("reviews") is a Service in the resource's own
 * namespace; a name with a dot is taken as written, so "reviews.other" is *not* expanded (as in Istio).
 */
export function resolveHost(host: string, namespace: string, clusterDomain: string): string {
  const h = host.toLowerCase();
  if (h === '*' || h.includes('.')) return h;
  return `${h}.${namespace}.svc.${clusterDomain}`;
}

/** Whether a (resolved) host pattern covers a concrete host: exact, `*`, or `*.suffix` (any depth). */
export function hostMatches(pattern: string, host: string): boolean {
  if (pattern === '*') return true;
  if (pattern.startsWith('*.')) return host.endsWith(pattern.slice(1));
  return pattern === host;
}

/**
 * How specific a pattern is, for "the most specific host wins" (Envoy picks an exact virtual-host
 * domain before any wildcard, and a longer wildcard before a shorter one).
 */
export function hostSpecificity(pattern: string): number {
  if (pattern === '*') return 0;
  if (pattern.startsWith('*.')) return pattern.length;
  return Number.MAX_SAFE_INTEGER;
}

/**
 * exportTo as Istio reads it: [] and "*" mean every namespace, "." the resource's own, "~" none, and
 * names list namespaces.
 */
export function visibleTo(exportTo: ExportTo, resourceNamespace: string, clientNamespace: string): boolean {
  if (exportTo.length === 0) return true;
  return exportTo.some((e) => e === '*' || (e === '.' && resourceNamespace === clientNamespace) || e === clientNamespace);
}

/**
 * Istio's order of visibility when several resources claim a host: ones private to the client's
 * namespace first, then ones exported to it by name, then public ones (istiod's SelectVirtualServices).
 */
export function visibilityRank(exportTo: ExportTo, resourceNamespace: string, clientNamespace: string): number {
  if (exportTo.includes('.') && resourceNamespace === clientNamespace) return 0;
  if (exportTo.includes(clientNamespace)) return 1;
  return 2;
}

/**
 * The mesh host an authority names, as a sidecar's virtual-host domains would resolve it: a Service VIP,
 * a short name in the client's namespace, `name.namespace`, `name.namespace.svc`, or the full name.
 * Anything else is returned as written (lowercased, without port): a host outside the mesh.
 */
export function requestHost(snapshot: MeshSnapshot, authority: string, clientNamespace: string): string {
  const host = authorityHost(authority);
  if (ipFamily(host)) return snapshot.servicesByVip.get(host)?.hostname ?? host;
  const domain = snapshot.clusterDomain;
  const candidates = host.includes('.')
    ? [host, `${host}.svc.${domain}`, `${host}.${domain}`]
    : [`${host}.${clientNamespace}.svc.${domain}`];
  return candidates.find((c) => snapshot.servicesByHostname.has(c)) ?? (host.includes('.') ? host : candidates[0]!);
}

/** The namespace a `<name>.<namespace>.svc.<domain>` host belongs to, if it has that shape. */
export function serviceNamespaceOf(host: string, clusterDomain: string): string | undefined {
  const suffix = `.svc.${clusterDomain}`;
  if (!host.endsWith(suffix)) return undefined;
  const parts = host.slice(0, -suffix.length).split('.');
  return parts.length === 2 ? parts[1] : undefined;
}

// Which RateLimit resources and which of their routes apply to a request: shared by the local token
// buckets (rate-limit.ts), the global limits (global-rate-limit.ts) and `ambit explain`. Pure.

import type { RateLimitMatch, RateLimitObject, RateLimitRoute } from '../config/rate-limit.js';
import { stringMatches } from '../l7/match.js';
import { pathOnly } from '../l7/request.js';
import { matchesLabels } from '../state/build.js';
import { type MeshSnapshot, type Workload, kubernetesServiceHostname, serviceKey } from '../state/model.js';
import type { RateLimitRequest } from './rate-limit.js';

/** The RateLimits of the workload's namespace that select it on this port: by Service (and port) or by labels. */
export function rateLimitsFor(snapshot: MeshSnapshot, workload: Workload, port: number): RateLimitObject[] {
  return snapshot.ambit.rateLimits.filter((limit) => {
    if (limit.metadata.namespace !== workload.namespace) return false;
    const target = limit.spec.target;
    if (target.kind === 'selector') return matchesLabels(target.selector.matchLabels, workload.labels);
    const service = snapshot.services.get(serviceKey(workload.namespace, kubernetesServiceHostname(target.name, workload.namespace, snapshot.clusterDomain)));
    if (!service?.selector || !matchesLabels(service.selector, workload.labels)) return false;
    return service.ports.some((p) => {
      if (target.port !== undefined && p.port !== target.port) return false;
      const targetPort = typeof p.targetPort === 'number' ? p.targetPort : workload.namedPorts.get(p.targetPort);
      return targetPort === port;
    });
  });
}

/** The first route whose match holds, else "default" (the resource's own bucket and descriptors). */
export function routeFor(limit: RateLimitObject, request: RateLimitRequest): RateLimitRoute | 'default' {
  const path = pathOnly(request.path);
  return limit.spec.routes.find((route) => route.match.length === 0 || route.match.some((m) => matchHolds(m, request, path))) ?? 'default';
}

function matchHolds(m: RateLimitMatch, request: RateLimitRequest, path: string): boolean {
  if (m.path && !stringMatches(m.path, path)) return false;
  if (m.method && !stringMatches(m.method, request.method)) return false;
  for (const [name, match] of Object.entries(m.headers)) {
    // Value by value: sending a header twice never moves a request out of a route's bucket.
    if (!(request.headers.get(name) ?? []).some((v) => stringMatches(match, v))) return false;
  }
  return true;
}

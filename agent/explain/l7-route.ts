// The L7 step of `ambit explain`: the VirtualService rule the data path's router (routeHttpRequest) picks
// for the given request (or the HTTPRoute or GRPCRoute rule, which the router runs as a VirtualService
// synthesized from it, agent/config/gateway-api/to-virtual-service.ts), with what that rule carries (destinations and weights, rewrite, retries,
// timeout, fault, mirrors), and the endpoint the DestinationRule's balancer picks for it
// (UpstreamClusters, as forward.ts resolves and chooses). A fresh set of clusters is used, so explain
// never moves the live balancer, its outlier ejections or its health checks: those are not shown.

import type { HTTPRoute, VirtualServiceObject } from '../config/istio-networking.js';
import { systemClock } from '../l7/clock.js';
import { findDestinationRule } from '../l7/destination-rule.js';
import { routeHttpRequest } from '../l7/http-router.js';
import type { HttpRequestAttributes } from '../l7/request.js';
import type { HttpRouteDecision } from '../l7/route-decision.js';
import { UpstreamClusters, clusterName } from '../l7/upstream-cluster.js';
import type { GatewayApiResources, MeshService, MeshSnapshot, Workload } from '../state/model.js';
import type { Address } from '../tunnel/destination.js';
import { type DecidedBy, type ExplainStep, byDefault, byMeshObject, byObject } from './explanation.js';

export type L7Outcome =
  /** The request goes to this endpoint (a workload of the mesh, or an address the cluster passes through). */
  | { readonly kind: 'endpoint'; readonly workload?: Workload; readonly address: Address; readonly service?: MeshService; readonly path: string; readonly authority: string }
  /** The source agent answers it itself (redirect, direct response): nothing reaches a destination. */
  | { readonly kind: 'answered'; readonly status: number }
  | { readonly kind: 'unreachable'; readonly reason: string };

export interface L7Result {
  readonly steps: readonly ExplainStep[];
  readonly outcome: L7Outcome;
}

/** The route and the endpoint for one request from `source` to a Service port that speaks HTTP. */
export function explainHttpRoute(snapshot: MeshSnapshot, node: string, source: Workload, request: HttpRequestAttributes): L7Result {
  const decision = routeHttpRequest(snapshot, request);
  // The user's VirtualServices first, then those synthesized from Gateway API routes, as the router looks.
  const vs = decision.route.virtualService
    ? [...snapshot.istio.virtualServices, ...snapshot.gatewayApi.virtualServices].find((v) => `${v.metadata.namespace}/${v.metadata.name}` === decision.route.virtualService)
    : undefined;
  const route = vs && decision.route.routeIndex !== undefined ? vs.spec.http[decision.route.routeIndex] : undefined;
  const gatewayRoute = gatewayRouteOf(snapshot, vs, route);
  const routeDecidedBy: DecidedBy = gatewayRoute ? byObject(gatewayRoute) : vs ? byObject(vs) : byDefault(`no VirtualService or HTTPRoute for ${request.host}: the Service itself`);
  const routeStep = (outcome: string, details: string[], ends?: 'unreachable'): ExplainStep => ({
    step: 'l7-route',
    outcome,
    decidedBy: routeDecidedBy,
    node,
    details: [...whichRule(decision, vs, route, gatewayRoute !== undefined), ...details],
    ...(ends ? { ends } : {}),
  });
  switch (decision.kind) {
    case 'noRoute':
      return { steps: [routeStep('no-route', ['the client gets 404 (flag NR)'], 'unreachable')], outcome: { kind: 'unreachable', reason: `no route of ${decision.route.virtualService} matches` } };
    case 'redirect':
      return { steps: [routeStep('redirect', [`answered ${decision.status}, Location ${decision.location}, by the source agent`])], outcome: { kind: 'answered', status: decision.status } };
    case 'directResponse':
      return { steps: [routeStep('direct-response', [`answered ${decision.status} by the source agent`])], outcome: { kind: 'answered', status: decision.status } };
    case 'forward':
      break;
  }
  const details = route ? routeLines(route) : [`to ${decision.destination.host}:${decision.destination.port}; Istio's default retries (2 on connect-failure, refused-stream, unavailable, cancelled, 503), no timeout`];
  details.push(`this request: to ${clusterName(decision.destination)}${decision.path !== request.path ? `, path rewritten to ${decision.path}` : ''}${decision.authority !== request.authority ? `, authority ${decision.authority}` : ''}`);
  const steps: ExplainStep[] = [routeStep('forward', details)];

  const clusters = new UpstreamClusters({ clock: systemClock, node });
  try {
    const resolved = clusters.resolve(snapshot, decision.destination, source);
    if (!resolved.ok) {
      steps.push({ step: 'destination', outcome: 'no-cluster', decidedBy: vs ? routeDecidedBy : byDefault('routing'), node, details: [resolved.message, 'the client gets 503 (flag NC)'], ends: 'unreachable' });
      return { steps, outcome: { kind: 'unreachable', reason: resolved.message } };
    }
    const cluster = resolved.cluster;
    const service = cluster.service;
    const effective = findDestinationRule(snapshot, decision.destination.host, source);
    const rule = effective ? snapshot.istio.destinationRules.find((r) => effective.sources.includes(`${r.metadata.namespace}/${r.metadata.name}`)) : undefined;
    const lines = cluster.allEndpoints().map((e) => `${e.key} ${snapshot.workloads.get(e.workload)?.key ?? e.workload} (locality rank ${e.priority})`);
    const choice = cluster.choose(request);
    const decidedBy = rule ? byObject(rule) : service ? byMeshObject('Service', `${service.namespace}/${service.name}`, service.source) : byDefault('routing');
    if (choice.kind === 'noHealthyUpstream') {
      steps.push({ step: 'destination', outcome: 'no-endpoint', decidedBy, node, details: [`cluster ${cluster.name}: ${lines.length === 0 ? 'no endpoint' : lines.join('; ')}`, choice.message, 'the client gets 503 (flag UH)'], ends: 'unreachable' });
      return { steps, outcome: { kind: 'unreachable', reason: choice.message } };
    }
    if (choice.kind === 'passthrough') {
      const address = { ip: request.host, port: request.port };
      steps.push({ step: 'destination', outcome: 'passthrough', decidedBy, node, details: ['the DestinationRule balances PASSTHROUGH: the address the client dialled'] });
      return { steps, outcome: { kind: 'endpoint', address, path: decision.path, authority: decision.authority } };
    }
    const workload = snapshot.workloads.get(choice.endpoint.workload);
    steps.push({
      step: 'destination',
      outcome: 'endpoint',
      decidedBy,
      node,
      details: [`cluster ${cluster.name}: ${lines.join('; ')}`, `picked ${choice.endpoint.key} (${workload?.key ?? choice.endpoint.workload})${lines.length > 1 ? ' by the balancer, this time' : ''}`],
    });
    return { steps, outcome: { kind: 'endpoint', ...(workload ? { workload } : {}), address: { ip: choice.endpoint.ip, port: choice.endpoint.port }, ...(service ? { service } : {}), path: decision.path, authority: decision.authority } };
  } finally {
    clusters.close();
  }
}

function whichRule(decision: HttpRouteDecision, vs: VirtualServiceObject | undefined, route: HTTPRoute | undefined, fromGatewayApi: boolean): string[] {
  if (!vs) return [];
  const ref = decision.route;
  if (ref.routeIndex === undefined) return [`no ${fromGatewayApi ? 'rule of the routes bound to the Service' : `http[] route of ${ref.virtualService}`} matches the request`];
  const name = route?.name !== undefined ? ` "${route.name}"` : '';
  if (fromGatewayApi) return [`${route?.name ?? `rule ${ref.routeIndex}`}: ${ref.matchIndex === undefined || ref.matchIndex < 0 ? 'it matches every request' : `its matches[${ref.matchIndex}] holds`}`];
  const match = ref.matchIndex === undefined || ref.matchIndex < 0 ? 'it matches every request' : `its match[${ref.matchIndex}] holds`;
  return [`http[${ref.routeIndex}]${name}: ${match}`];
}

/**
 * The HTTPRoute or GRPCRoute a synthesized VirtualService's rule came from: each such rule is named
 * `<Kind> <namespace>/<name> rule <rule>` (to-virtual-service.ts), and the route object is what a user edits.
 */
function gatewayRouteOf(snapshot: MeshSnapshot, vs: VirtualServiceObject | undefined, route: HTTPRoute | undefined): GatewayApiResources['httpRoutes' | 'grpcRoutes'][number] | undefined {
  if (!vs || !snapshot.gatewayApi.virtualServices.includes(vs) || route?.name === undefined) return undefined;
  const name = route.name;
  return [...snapshot.gatewayApi.httpRoutes, ...snapshot.gatewayApi.grpcRoutes].find((r) => name.startsWith(`${r.kind} ${r.metadata.namespace}/${r.metadata.name} rule `));
}

/** What a rule carries, as a reader checks it against the YAML. */
export function routeLines(route: HTTPRoute): string[] {
  const lines: string[] = [];
  if (route.action.kind === 'route') {
    const total = route.action.destinations.reduce((sum, d) => sum + d.weight, 0);
    const several = route.action.destinations.length > 1;
    lines.push(
      `destinations: ${route.action.destinations
        .map((d) => `${d.destination.host}${d.destination.subset ? ` subset ${d.destination.subset}` : ''}${d.destination.port ? `:${d.destination.port}` : ''}${several ? ` ${total > 0 ? Math.round((d.weight / total) * 100) : 0}%` : ''}`)
        .join(', ')}`,
    );
  }
  if (route.rewrite) lines.push(`rewrite: ${[route.rewrite.uri !== undefined ? `uri ${route.rewrite.uri}` : '', route.rewrite.authority !== undefined ? `authority ${route.rewrite.authority}` : ''].filter(Boolean).join(', ')}`);
  lines.push(`timeout: ${route.timeoutMs !== undefined ? `${route.timeoutMs} ms` : 'none'}`);
  const r = route.retries;
  lines.push(r ? `retries: ${r.attempts}${r.perTryTimeoutMs !== undefined ? `, ${r.perTryTimeoutMs} ms per try` : ''}${r.retryOn.length > 0 ? `, on ${r.retryOn.join(',')}` : ''}` : "retries: Istio's default (2)");
  const f = route.fault;
  if (f?.delay) lines.push(`fault: delay ${f.delay.fixedDelayMs} ms for ${f.delay.percentage ?? 0}% of requests`);
  if (f?.abort) lines.push(`fault: abort ${f.abort.kind === 'httpStatus' ? `HTTP ${f.abort.httpStatus}` : `gRPC ${f.abort.grpcStatus}`} for ${f.abort.percentage ?? 0}% of requests`);
  for (const m of route.mirrors) lines.push(`mirror: ${m.destination.host}${m.destination.subset ? ` subset ${m.destination.subset}` : ''} for ${m.percentage ?? 100}%`);
  return lines;
}

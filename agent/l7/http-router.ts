// HTTP routing for the source-side agent: which VirtualService applies to the request's host, which of
// its http[] routes matches first, and everything that route says (destination by weight, rewrite,
// redirect, direct response, header operations, timeout, retries, fault, mirrors), resolved into one
// HttpRouteDecision. Pure: the snapshot and the random source are the only inputs beside the request.

import type { HTTPFaultInjection, HTTPRoute, HTTPRouteDestination, VirtualServiceObject } from '../config/istio-networking.js';
import type { MeshSnapshot } from '../state/model.js';
import { defaultDestination, pickWeighted, resolveDestination } from './destination.js';
import { mutationsFor } from './header-mutation.js';
import { firstMatchingBlock, matchInput } from './match.js';
import { type Random, chance, mathRandom } from './random.js';
import type { HttpRequestAttributes } from './request.js';
import type { FaultDecision, HttpRouteDecision, RouteRef } from './route-decision.js';
import { applyRewrite, redirectLocation } from './rewrite.js';
import { ISTIO_DEFAULT_RETRY_POLICY, type RetryPolicy, retryPolicy } from './retry-policy.js';
import type { HeaderMutation } from './header-mutation.js';
import { selectVirtualService, virtualServiceName } from './virtual-service.js';

export function routeHttpRequest(snapshot: MeshSnapshot, request: HttpRequestAttributes, random: Random = mathRandom): HttpRouteDecision {
  const choice = selectVirtualService(snapshot, request.host, request.source.namespace);
  // A VirtualService with only tcp routes says nothing about HTTP: the default route applies, as in Istio.
  if (!choice || choice.virtualService.spec.http.length === 0) return defaultRoute(snapshot, request);
  const vs = choice.virtualService;
  const input = matchInput(request);
  for (const [routeIndex, route] of vs.spec.http.entries()) {
    const block = firstMatchingBlock(route.match, input);
    if (!block) continue;
    const ref: RouteRef = {
      virtualService: virtualServiceName(vs),
      ...(route.name !== undefined ? { routeName: route.name } : {}),
      routeIndex,
      matchIndex: block.index,
    };
    return decide(snapshot, vs, route, block.match, ref, request, random);
  }
  return { kind: 'noRoute', route: { virtualService: virtualServiceName(vs) }, status: 404, responseFlag: 'NR' };
}

function defaultRoute(snapshot: MeshSnapshot, request: HttpRequestAttributes): HttpRouteDecision {
  return {
    kind: 'forward',
    route: {},
    destination: defaultDestination(snapshot, request.host, request.port),
    path: request.path,
    authority: request.authority,
    requestHeaders: [],
    responseHeaders: [],
    retry: ISTIO_DEFAULT_RETRY_POLICY,
    mirrors: [],
  };
}

function decide(
  snapshot: MeshSnapshot,
  vs: VirtualServiceObject,
  route: HTTPRoute,
  match: HTTPRoute['match'][number] | undefined,
  ref: RouteRef,
  request: HttpRequestAttributes,
  random: Random,
): HttpRouteDecision {
  const ns = vs.metadata.namespace;
  const action = route.action;
  if (action.kind === 'redirect') {
    const location = redirectLocation(action.redirect, request, match);
    return { kind: 'redirect', route: ref, status: action.redirect.redirectCode, location, responseHeaders: mutationsFor(undefined, route.headers).response };
  }
  if (action.kind === 'directResponse') {
    const { status, body } = action.directResponse;
    return { kind: 'directResponse', route: ref, status, ...(body !== undefined ? { body } : {}), responseHeaders: mutationsFor(undefined, route.headers).response };
  }
  const chosen = action.destinations[pickWeighted(action.destinations.map((d) => d.weight), random)]!;
  const headers = cachedMutations(chosen, route);
  // A Gateway API backendRef that could not be resolved takes its share of requests and answers them.
  if (chosen.unresolved) return { kind: 'directResponse', route: ref, status: chosen.unresolved.status, body: `${chosen.unresolved.reason}\n`, responseHeaders: headers.response };
  const target = applyRewrite(route.rewrite, match, request.path, request.authority);
  const fault = route.fault ? sampleFault(route.fault, random) : undefined;
  const mirrors = route.mirrors
    .filter((m) => chance(random, m.percentage ?? 100))
    .map((m) => resolveDestination(snapshot, m.destination, ns, request.port));
  return {
    kind: 'forward',
    route: ref,
    destination: resolveDestination(snapshot, chosen.destination, ns, request.port),
    path: target.path,
    authority: target.authority,
    requestHeaders: headers.request,
    responseHeaders: headers.response,
    ...(route.timeoutMs !== undefined ? { timeoutMs: route.timeoutMs } : {}),
    retry: cachedRetryPolicy(route),
    ...(fault ? { fault } : {}),
    mirrors,
  };
}

/**
 * Delay and abort are sampled independently, each at its own percentage; an unset percentage injects
 * nothing, because istiod passes it to Envoy as an empty (0%) fraction.
 */
function sampleFault(fault: HTTPFaultInjection, random: Random): FaultDecision | undefined {
  const delay = fault.delay && chance(random, fault.delay.percentage ?? 0) ? fault.delay.fixedDelayMs : undefined;
  let abort: FaultDecision['abort'];
  if (fault.abort && chance(random, fault.abort.percentage ?? 0)) {
    abort = fault.abort.kind === 'httpStatus' ? { kind: 'httpStatus', status: fault.abort.httpStatus } : { kind: 'grpcStatus', grpcStatus: fault.abort.grpcStatus };
  }
  if (delay === undefined && abort === undefined) return undefined;
  return { ...(delay !== undefined ? { delayMs: delay } : {}), ...(abort ? { abort } : {}) };
}

// Parsed configuration objects live as long as their snapshot and never change, so what is derived from
// them alone (retry policies, header mutations) is derived once, not per request.
const retryCache = new WeakMap<HTTPRoute, RetryPolicy>();
const mutationCache = new WeakMap<HTTPRouteDestination, { request: HeaderMutation[]; response: HeaderMutation[] }>();

function cachedRetryPolicy(route: HTTPRoute): RetryPolicy {
  let policy = retryCache.get(route);
  if (!policy) retryCache.set(route, (policy = retryPolicy(route.retries)));
  return policy;
}

function cachedMutations(destination: HTTPRouteDestination, route: HTTPRoute): { request: HeaderMutation[]; response: HeaderMutation[] } {
  let m = mutationCache.get(destination);
  if (!m) mutationCache.set(destination, (m = mutationsFor(destination.headers, route.headers)));
  return m;
}

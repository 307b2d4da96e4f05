// Gateway API routes bound to Services (GAMMA), translated into the route model the L7 path already
// runs (a VirtualService per Service and per binding namespace), as istiod translates them for its
// proxies, so that one router serves both APIs. Each route's status per parentRef is decided on the way
// (parent-status.ts), for the Kubernetes source to write back.
//
// Producer routes (in the Service's namespace) apply to every client; consumer routes (elsewhere)
// only to clients in their own namespace, and for those clients they replace the producer's (GEP-1294).
// On one Service port, GRPCRoute wins over HTTPRoute and both over TCPRoute; the losers are Conflicted.

import { compileRe2 } from '../formats.js';
import type {
  Destination,
  HTTPMatchRequest,
  HTTPRetry,
  HTTPRoute,
  HTTPRouteDestination,
  HeaderManipulation,
  HeaderOperations,
  StringMatch,
  TCPRoute,
  VirtualServiceObject,
} from '../istio-networking.js';
import {
  type RouteParentStatus,
  type RouteStatus,
  type ServiceFacts,
  type ServiceLookup,
  accepted,
  backendProblem,
  parentStatus,
  portProblem,
  resolvedRefs,
} from './parent-status.js';
import { type RankedMatch, compareRoutes, sortGrpcMatches, sortHttpMatches } from './precedence.js';
import type { BackendRef, GatewayRouteObject, GrpcRouteMatch, GrpcRouteObject, HttpRouteMatch, HttpRouteObject, NamedMatch, ParentRef, TcpRouteObject } from './types.js';

export interface GatewayRouteTranslation {
  /** Synthesized, never written by a user; named `gateway-api:<service>` so that logs tell them apart. */
  readonly virtualServices: readonly VirtualServiceObject[];
  readonly statuses: readonly RouteStatus[];
}

type Kind = GatewayRouteObject['kind'];
// GEP-1294's order of route types on one Service port: the first one wins.
const KIND_RANK: Readonly<Record<Kind, number>> = { GRPCRoute: 0, HTTPRoute: 1, TCPRoute: 2 };

interface Binding {
  readonly route: GatewayRouteObject;
  readonly parent: ParentRef;
  readonly service: ServiceFacts;
  /** "" for producer routes, else the consumer namespace. */
  readonly consumer: string;
  /** The Service ports this binding covers; undefined: all of them (no port constraint needed). */
  ports: readonly number[] | undefined;
}

export function translateGatewayRoutes(routes: readonly GatewayRouteObject[], services: ServiceLookup, clusterDomain: string): GatewayRouteTranslation {
  const statuses: RouteStatus[] = [];
  const bindings: Binding[] = [];
  for (const route of routes) {
    const parents: RouteParentStatus[] = [];
    const refs = resolvedRefs(route, services);
    for (const parent of route.spec.parentRefs) {
      if (parent.group !== '' || parent.kind !== 'Service') {
        // A Gateway parent is north-south (some other controller's), or a waypoint, which Ambit does not deploy.
        if (parent.kind === 'Gateway') continue;
        parents.push(parentStatus(parent, accepted(false, 'NotAllowedByListeners', `Ambit binds mesh routes to a core Service; ${parent.kind} ${parent.group}/${parent.name} is not one`), refs));
        continue;
      }
      const service = services(parent.namespace, parent.name);
      const problem = service ? portProblem(parent, service) : `Service ${parent.namespace}/${parent.name} does not exist`;
      if (problem || !service) {
        parents.push(parentStatus(parent, accepted(false, 'NoMatchingParent', problem ?? ''), refs));
        continue;
      }
      const port = parent.port ?? (parent.sectionName !== undefined ? service.ports.find((p) => p.name === parent.sectionName)?.port : undefined);
      bindings.push({ route, parent, service, consumer: parent.namespace === route.metadata.namespace ? '' : route.metadata.namespace, ports: port !== undefined ? [port] : undefined });
      parents.push(parentStatus(parent, accepted(true, 'Accepted', 'bound to the Service; applied by every Ambit agent on its clients\' side'), refs));
    }
    statuses.push({ route, parents });
  }
  const conflicted = resolveConflicts(bindings);
  const applied = bindings.filter((b) => !conflicted.has(b));
  for (const b of conflicted) {
    const entry = statuses.find((s) => s.route === b.route)!;
    const i = entry.parents.findIndex((p) => p.parentRef === b.parent);
    const refs = entry.parents[i]!.conditions[1];
    (entry.parents as RouteParentStatus[])[i] = { parentRef: b.parent, conditions: [accepted(false, 'Conflicted', `a route of a more specific type (GRPCRoute, then HTTPRoute, then TCPRoute) binds the same Service port`), refs] };
  }
  return { virtualServices: buildVirtualServices(applied, services, clusterDomain), statuses };
}

/**
 * Per Service, binding namespace and port, only the most specific route type applies. A binding that
 * loses every port it covers is Conflicted; one that loses some keeps the others, named explicitly.
 */
function resolveConflicts(bindings: Binding[]): Set<Binding> {
  const conflicted = new Set<Binding>();
  const groups = new Map<string, Binding[]>();
  for (const b of bindings) {
    const key = `${b.service.hostname}|${b.consumer}`;
    groups.set(key, [...(groups.get(key) ?? []), b]);
  }
  for (const group of groups.values()) {
    const winner = new Map<number, number>();
    for (const b of group) {
      for (const port of b.ports ?? b.service.ports.map((p) => p.port)) winner.set(port, Math.min(winner.get(port) ?? 9, KIND_RANK[b.route.kind]));
    }
    for (const b of group) {
      const covered = b.ports ?? b.service.ports.map((p) => p.port);
      const kept = covered.filter((port) => winner.get(port) === KIND_RANK[b.route.kind]);
      if (kept.length === 0) conflicted.add(b);
      else if (kept.length < covered.length) b.ports = kept;
    }
  }
  return conflicted;
}

function buildVirtualServices(bindings: readonly Binding[], services: ServiceLookup, clusterDomain: string): VirtualServiceObject[] {
  const groups = new Map<string, Binding[]>();
  for (const b of bindings) {
    const key = `${b.service.hostname}|${b.consumer}`;
    groups.set(key, [...(groups.get(key) ?? []), b]);
  }
  const out: VirtualServiceObject[] = [];
  for (const group of groups.values()) {
    const first = group[0]!;
    const namespace = first.consumer === '' ? first.parent.namespace : first.consumer;
    const grpc = sortGrpcMatches(group.filter((b) => b.route.kind === 'GRPCRoute').flatMap((b) => grpcEntries(b)));
    const http = sortHttpMatches(group.filter((b) => b.route.kind === 'HTTPRoute').flatMap((b) => httpEntries(b)));
    const tcp = group.filter((b) => b.route.kind === 'TCPRoute').sort((a, b) => compareRoutes({ route: a.route, ruleIndex: 0, matchIndex: 0 }, { route: b.route, ruleIndex: 0, matchIndex: 0 }));
    const ctx = { services, clusterDomain };
    out.push({
      kind: 'VirtualService',
      apiVersion: 'networking.istio.io/v1',
      metadata: { name: `gateway-api:${first.parent.name}`, namespace, labels: {}, annotations: {} },
      source: first.route.source,
      spec: {
        hosts: [first.service.hostname],
        gateways: [],
        // Consumer routes are for their own namespace only; producer routes for everyone.
        exportTo: first.consumer === '' ? [] : ['.'],
        http: [...grpc.map((e) => grpcRoute(e, ctx)), ...http.map((e) => httpRoute(e, ctx)), ...uncoveredPorts(group)],
        tcp: tcp.flatMap((b) => tcpRoute(b, ctx)),
      },
    });
  }
  return out;
}

/**
 * A route bound to some ports only must leave the others as they were: the Service itself, as if no
 * route were bound there (GEP-1294: "the implementation MUST associate the route only with that port").
 */
function uncoveredPorts(group: readonly Binding[]): HTTPRoute[] {
  const l7 = group.filter((b) => b.route.kind !== 'TCPRoute');
  if (l7.length === 0 || l7.some((b) => b.ports === undefined)) return [];
  const covered = new Set(l7.flatMap((b) => b.ports ?? []));
  const service = l7[0]!.service;
  return service.ports
    .filter((p) => !covered.has(p.port))
    .map((p) => ({
      name: `Service ${l7[0]!.parent.namespace}/${l7[0]!.parent.name} port ${p.port} (no route bound)`,
      match: [{ ...baseMatch(undefined, [], []), port: p.port }],
      action: { kind: 'route', destinations: [{ destination: { host: service.hostname, port: p.port }, weight: 1, headers: { request: NO_HEADERS, response: NO_HEADERS } }] },
      mirrors: [],
      headers: { request: NO_HEADERS, response: NO_HEADERS },
    }));
}

interface Entry<M> extends RankedMatch<M> {
  readonly binding: Binding;
}

function httpEntries(b: Binding): Entry<HttpRouteMatch>[] {
  const route = b.route as HttpRouteObject;
  return route.spec.rules.flatMap((rule, ruleIndex) => rule.matches.map((match, matchIndex) => ({ route, ruleIndex, matchIndex, match, binding: b })));
}

function grpcEntries(b: Binding): Entry<GrpcRouteMatch | undefined>[] {
  const route = b.route as GrpcRouteObject;
  return route.spec.rules.flatMap((rule, ruleIndex): Entry<GrpcRouteMatch | undefined>[] =>
    rule.matches.length === 0 ? [{ route, ruleIndex, matchIndex: 0, match: undefined, binding: b }] : rule.matches.map((match, matchIndex) => ({ route, ruleIndex, matchIndex, match, binding: b })),
  );
}

interface Ctx {
  readonly services: ServiceLookup;
  readonly clusterDomain: string;
}

const NO_HEADERS: HeaderOperations = { set: {}, add: {}, remove: [] };

/** One translated match block per bound port (none: any port). */
function matchBlocks(b: Binding, base: Omit<HTTPMatchRequest, 'port'>): HTTPMatchRequest[] {
  return b.ports === undefined ? [base] : b.ports.map((port) => ({ ...base, port }));
}

function baseMatch(uri: StringMatch | undefined, headers: readonly NamedMatch[], queryParams: readonly NamedMatch[], method?: string): Omit<HTTPMatchRequest, 'port'> {
  return {
    ...(uri ? { uri } : {}),
    ...(method !== undefined ? { method: { kind: 'exact', value: method } } : {}),
    headers: Object.fromEntries(headers.map((h) => [h.name, h.match])),
    withoutHeaders: {},
    queryParams: Object.fromEntries(queryParams.map((q) => [q.name, q.match])),
    sourceLabels: {},
    gateways: [],
    ignoreUriCase: false,
  };
}

function pathMatch(m: HttpRouteMatch): StringMatch {
  switch (m.path.type) {
    case 'Exact':
      return { kind: 'exact', value: m.path.value };
    case 'PathPrefix':
      return { kind: 'pathPrefix', value: m.path.value };
    case 'RegularExpression':
      return { kind: 'regex', value: m.path.value, regex: m.path.regex };
  }
}

function routeName(e: RankedMatch<unknown>): string {
  const rule = e.route.spec.rules[e.ruleIndex]!;
  return `${e.route.kind} ${e.route.metadata.namespace}/${e.route.metadata.name} rule ${rule.name ?? e.ruleIndex}`;
}

function httpRoute(e: Entry<HttpRouteMatch>, ctx: Ctx): HTTPRoute {
  const rule = (e.route as HttpRouteObject).spec.rules[e.ruleIndex]!;
  const match = matchBlocks(e.binding, baseMatch(pathMatch(e.match), e.match.headers, e.match.queryParams, e.match.method));
  const headers = routeHeaders(rule.filters);
  const mirrors = rule.filters.flatMap((f) => (f.type === 'RequestMirror' ? [{ destination: destinationOf(f.mirror.backend, ctx.clusterDomain), ...(f.mirror.percentage !== undefined ? { percentage: f.mirror.percentage } : {}) }] : []));
  const redirect = rule.filters.find((f) => f.type === 'RequestRedirect');
  const rewrite = rule.filters.find((f) => f.type === 'URLRewrite');
  const common = { name: routeName(e), match, headers, mirrors };
  if (redirect?.type === 'RequestRedirect') {
    const r = redirect.redirect;
    return {
      ...common,
      mirrors: [],
      action: {
        kind: 'redirect',
        redirect: {
          ...(r.hostname !== undefined ? { authority: r.hostname } : {}),
          // The API: with a scheme, that scheme's well-known port; without, the port the request came to.
          port: r.port ?? (r.scheme ? 'FROM_PROTOCOL_DEFAULT' : 'FROM_REQUEST_PORT'),
          ...(r.scheme ? { scheme: r.scheme } : {}),
          redirectCode: r.statusCode,
          ...(r.path ? { path: r.path } : {}),
        },
      },
    };
  }
  const retries = retryOf(rule.retry, rule.backendRequestTimeoutMs);
  return {
    ...common,
    action: destinationsOf(rule.backendRefs, ctx, 500),
    ...(rewrite?.type === 'URLRewrite' && (rewrite.hostname !== undefined || rewrite.path)
      ? { rewrite: { ...(rewrite.hostname !== undefined ? { authority: rewrite.hostname } : {}), ...(rewrite.path ? { path: rewrite.path } : {}) } }
      : {}),
    ...(rule.requestTimeoutMs ? { timeoutMs: rule.requestTimeoutMs } : {}),
    ...(retries ? { retries } : {}),
  };
}

/** A gRPC method match as the path it is: `/<service>/<method>`. */
function grpcPath(m: GrpcRouteMatch | undefined): StringMatch | undefined {
  const method = m?.method;
  if (!method) return undefined;
  if (method.type === 'Exact') {
    if (method.service !== undefined && method.method !== undefined) return { kind: 'exact', value: `/${method.service}/${method.method}` };
    if (method.service !== undefined) return { kind: 'pathPrefix', value: `/${method.service}` };
    return regexMatch(`/[^/]+/${escapeRegex(method.method!)}`);
  }
  return regexMatch(`/${method.service ?? '[^/]+'}/${method.method ?? '[^/]+'}`);
}

function regexMatch(source: string): StringMatch {
  // The parts were compiled once at parse time (RE2 syntax such as (?P<name>...) included), so this holds;
  // should it not, the match matches nothing rather than everything.
  const compiled = compileRe2(source, { fullMatch: true });
  return { kind: 'regex', value: source, regex: compiled.ok ? compiled.regex : /(?!)/ };
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function grpcRoute(e: Entry<GrpcRouteMatch | undefined>, ctx: Ctx): HTTPRoute {
  const rule = (e.route as GrpcRouteObject).spec.rules[e.ruleIndex]!;
  const match = matchBlocks(e.binding, baseMatch(grpcPath(e.match), e.match?.headers ?? [], []));
  const mirrors = rule.filters.flatMap((f) => (f.type === 'RequestMirror' ? [{ destination: destinationOf(f.mirror.backend, ctx.clusterDomain), ...(f.mirror.percentage !== undefined ? { percentage: f.mirror.percentage } : {}) }] : []));
  // gRPC clients read an HTTP 503 as UNAVAILABLE, the status the API asks for when no backend can be used.
  return { name: routeName(e), match, headers: routeHeaders(rule.filters), mirrors, action: destinationsOf(rule.backendRefs, ctx, 503) };
}

function tcpRoute(b: Binding, ctx: Ctx): TCPRoute[] {
  const rule = (b.route as TcpRouteObject).spec.rules[0];
  if (!rule || !rule.backendRefs.some((r) => r.weight > 0)) return [];
  return [
    {
      match: (b.ports ?? []).map((port) => ({ port, destinationSubnets: [], sourceLabels: {}, gateways: [] })),
      // An unusable backend stays as written: a connection sent to it fails, as the API requires.
      route: rule.backendRefs.map((ref) => ({ destination: destinationOf(ref, ctx.clusterDomain), weight: ref.weight })),
    },
  ];
}

function destinationOf(ref: BackendRef, clusterDomain: string): Destination {
  // Fully qualified, so that the VirtualService's own namespace never changes which Service is meant.
  return { host: `${ref.name}.${ref.namespace}.svc.${clusterDomain}`, ...(ref.port !== undefined ? { port: ref.port } : {}) };
}

function destinationsOf(refs: readonly BackendRef[], ctx: Ctx, unusableStatus: number): HTTPRoute['action'] {
  const usable = refs.some((r) => r.weight > 0);
  // No backend at all, or every weight 0: nothing can be forwarded, and the API asks for an error status.
  if (!usable) return { kind: 'directResponse', directResponse: { status: unusableStatus, body: 'no backend for this route (Gateway API: every backendRef is missing or weighs 0)\n' } };
  const destinations: HTTPRouteDestination[] = refs.map((ref) => {
    const problem = backendProblem(ref, ctx.services);
    return {
      destination: destinationOf(ref, ctx.clusterDomain),
      weight: ref.weight,
      headers: { request: ref.requestHeaders ?? NO_HEADERS, response: ref.responseHeaders ?? NO_HEADERS },
      ...(problem ? { unresolved: { status: unusableStatus, reason: problem.message } } : {}),
    };
  });
  return { kind: 'route', destinations };
}

function routeHeaders(filters: readonly { readonly type: string; readonly modifier?: HeaderOperations }[]): HeaderManipulation {
  const request = filters.find((f) => f.type === 'RequestHeaderModifier')?.modifier ?? NO_HEADERS;
  const response = filters.find((f) => f.type === 'ResponseHeaderModifier')?.modifier ?? NO_HEADERS;
  return { request, response };
}

/**
 * retry: the API's codes (and, as it says implementations SHOULD, connection failures and resets) with
 * Istio's default of 2 attempts when unset. backendRequest is the per-try timeout; with no retry stanza
 * Istio's default retry policy keeps applying around it.
 */
function retryOf(retry: HttpRouteObject['spec']['rules'][number]['retry'], backendRequestMs: number | undefined): HTTPRetry | undefined {
  const perTry = backendRequestMs ? { perTryTimeoutMs: backendRequestMs } : {};
  if (retry) {
    return { attempts: retry.attempts ?? 2, retryOn: ['connect-failure', 'refused-stream', 'reset', ...retry.codes.map(String)], retryRemoteLocalities: false, ...perTry };
  }
  if (backendRequestMs) return { attempts: 2, retryOn: [], retryRemoteLocalities: false, ...perTry };
  return undefined;
}

// What a Gateway API route's status says for each parent it names, in the API's own condition types and
// reasons (shared_types.go): Accepted (Accepted, NoMatchingParent, NotAllowedByListeners, Conflicted)
// and ResolvedRefs (ResolvedRefs, BackendNotFound, InvalidKind); and the Service facts they are judged on.

import type { AppProtocol } from '../../state/protocol.js';
import type { BackendRef, GatewayRouteObject, ParentRef } from './types.js';

/** What the translation needs to know of a Service. */
export interface ServiceFacts {
  readonly hostname: string;
  readonly ports: readonly { readonly port: number; readonly name?: string; readonly protocol: AppProtocol }[];
}

export type ServiceLookup = (namespace: string, name: string) => ServiceFacts | undefined;

/** One condition of a route's status for one parent, as the API spells it. */
export interface RouteCondition {
  readonly type: 'Accepted' | 'ResolvedRefs';
  readonly status: 'True' | 'False';
  readonly reason: string;
  readonly message: string;
}

export interface RouteParentStatus {
  readonly parentRef: ParentRef;
  readonly conditions: readonly [RouteCondition, RouteCondition];
}

export interface RouteStatus {
  readonly route: GatewayRouteObject;
  readonly parents: readonly RouteParentStatus[];
}

export function accepted(ok: boolean, reason: string, message: string): RouteCondition {
  return { type: 'Accepted', status: ok ? 'True' : 'False', reason, message };
}

export function parentStatus(parentRef: ParentRef, acceptedCondition: RouteCondition, refs: RouteCondition): RouteParentStatus {
  return { parentRef, conditions: [acceptedCondition, refs] };
}

export function portProblem(parent: ParentRef, service: ServiceFacts): string | undefined {
  if (parent.port !== undefined && !service.ports.some((p) => p.port === parent.port)) return `Service ${parent.namespace}/${parent.name} has no port ${parent.port}`;
  if (parent.sectionName !== undefined && !service.ports.some((p) => p.name === parent.sectionName)) return `Service ${parent.namespace}/${parent.name} has no port named ${parent.sectionName}`;
  return undefined;
}

/** Every backendRef of the route (mirrors included) must be a Service that exists. */
export function resolvedRefs(route: GatewayRouteObject, services: ServiceLookup): RouteCondition {
  const problems: { reason: string; message: string }[] = [];
  for (const ref of allBackendRefs(route)) {
    const problem = backendProblem(ref, services);
    if (problem) problems.push(problem);
  }
  if (problems.length === 0) return { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'every backendRef names a Service that exists' };
  return { type: 'ResolvedRefs', status: 'False', reason: problems[0]!.reason, message: problems.map((p) => p.message).join('; ') };
}

function allBackendRefs(route: GatewayRouteObject): BackendRef[] {
  if (route.kind === 'TCPRoute') return route.spec.rules.flatMap((r) => r.backendRefs);
  return route.spec.rules.flatMap((r) => [...r.backendRefs, ...r.filters.flatMap((f) => (f.type === 'RequestMirror' ? [f.mirror.backend] : []))]);
}

export function backendProblem(ref: BackendRef, services: ServiceLookup): { reason: string; message: string } | undefined {
  if (ref.group !== '' || ref.kind !== 'Service') return { reason: 'InvalidKind', message: `backendRef ${ref.kind} ${ref.group}/${ref.name}: Ambit routes to core Services only` };
  const service = services(ref.namespace, ref.name);
  if (!service) return { reason: 'BackendNotFound', message: `backendRef Service ${ref.namespace}/${ref.name} does not exist` };
  if (ref.port !== undefined && !service.ports.some((p) => p.port === ref.port)) return { reason: 'BackendNotFound', message: `backendRef Service ${ref.namespace}/${ref.name} has no port ${ref.port}` };
  return undefined;
}

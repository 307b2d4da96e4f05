// One request through the source-side agent, as a short list of phases over one per-request context
// (outbound-request.ts), the way Envoy's router and Pingora's phases run it: the target (what
// downstream.ts refused is answered), route (VirtualService: no route, redirect, direct response, a
// rewrite), fault injection (delay, then abort), the cluster (DestinationRule), then the upstream tries
// (upstream-attempts.ts). Each phase hands the next what it decided or ends the request, and the
// request ends in one place, `finishRequest`. Mirrors get a copy and their answers are dropped. A
// CLIENT span covers the whole exchange, and its context goes upstream, so the destination's SERVER
// span is its child.

import type { MeshSnapshot, Workload } from '../../state/model.js';
import type { RequestTracer } from '../../telemetry/tracing.js';
import { ISTIO_DEFAULT_CONNECT_TIMEOUT_MS } from '../connection-pool.js';
import { routeHttpRequest } from '../http-router.js';
import type { Random } from '../random.js';
import type { FaultDecision } from '../route-decision.js';
import { type PathNormalization, normalizeOriginForm } from '../request-target.js';
import { ISTIO_DEFAULT_RETRY_POLICY } from '../retry-policy.js';
import type { UpstreamClusters } from '../upstream-cluster.js';
import { refusalReply } from './downstream.js';
import type { Upstream } from './endpoint-pick.js';
import type { HttpDestination } from './http-destination.js';
import { GONE, type OutboundRequest, type Phase, type RequestEnding, answer, finishRequest, next, startRequest } from './outbound-request.js';
import type { DownstreamRequest } from './downstream.js';
import type { RequestCompleteHook } from './request-record.js';
import { sleep } from './timeouts.js';
import { type Forward, tryUpstreams } from './upstream-attempts.js';
import type { UpstreamConnections } from './upstream-connections.js';

export interface ForwardContext {
  readonly snapshot: MeshSnapshot;
  readonly source: Workload;
  readonly sourceIp: string;
  readonly sourcePort: number;
  readonly destination: HttpDestination;
  readonly node: string;
  readonly upstream: UpstreamConnections;
  readonly clusters: UpstreamClusters;
  readonly random: Random;
  readonly onComplete: RequestCompleteHook;
  readonly tracer: RequestTracer;
  /** The mode the request's path was normalized with, applied again to a rewritten path. */
  readonly pathNormalization: PathNormalization;
}

export async function forwardRequest(ctx: ForwardContext, d: DownstreamRequest): Promise<void> {
  const req = startRequest(ctx, d);
  finishRequest(req, await phases(req));
}

async function phases(req: OutboundRequest): Promise<RequestEnding> {
  const refused = target(req);
  if (refused) return refused;
  const routed = route(req);
  if (routed.kind !== 'next') return routed;
  // Most routes inject no fault: no await (a promise and a microtask turn) for them.
  const faulted = routed.value.fault ? await fault(req, routed.value.fault) : undefined;
  if (faulted) return faulted;
  const upstream = cluster(req, routed.value);
  if (upstream.kind !== 'next') return upstream;
  return tryUpstreams(req, routed.value, upstream.value);
}

/** The target as downstream.ts normalized it: what it refused is answered here (404s match no route). */
function target(req: OutboundRequest): RequestEnding | undefined {
  const { refused } = req.d;
  if (!refused) return undefined;
  if (refused.status === 404) req.flags.push('NR');
  return answer(refusalReply(refused), refused.reason);
}

/** The VirtualService's route; a pod dialled directly takes Istio's defaults. */
function route(req: OutboundRequest): Phase<Forward> {
  const { ctx, d, attrs } = req;
  if (!req.service) {
    return next({ kind: 'forward', route: {}, destination: { host: attrs.host, port: attrs.port }, path: d.path, authority: d.authority, requestHeaders: [], responseHeaders: [], retry: ISTIO_DEFAULT_RETRY_POLICY, mirrors: [] });
  }
  const routed = routeHttpRequest(ctx.snapshot, attrs, ctx.random);
  req.route = routed.route;
  switch (routed.kind) {
    case 'noRoute':
      req.flags.push('NR');
      return answer({ status: 404 }, `no route of ${routed.route.virtualService} matches`);
    case 'redirect':
      return answer({ status: routed.status, headers: new Map([['location', [routed.location]]]), responseHeaders: routed.responseHeaders });
    case 'directResponse':
      return answer({ status: routed.status, ...(routed.body !== undefined ? { body: routed.body } : {}), responseHeaders: routed.responseHeaders });
    case 'forward':
      if (routed.path === d.path) return next(routed);
  }
  // A rewrite may make a path the destination would read differently (dots, "//"): send what it will read.
  const rewritten = normalizeOriginForm(routed.path, ctx.pathNormalization);
  if (!rewritten.ok) return answer({ status: 500, body: `the route's rewrite made a path the destination would refuse: ${rewritten.reason}` }, rewritten.reason);
  return next({ ...routed, path: rewritten.path });
}

/** Fault injection: the delay first, then the abort, as Envoy's fault filter. */
async function fault(req: OutboundRequest, injected: FaultDecision): Promise<RequestEnding | undefined> {
  if (injected.delayMs !== undefined) {
    req.flags.push('DI');
    if (!(await sleep(injected.delayMs, req.d.gone))) return GONE;
  }
  if (!injected.abort) return undefined;
  req.flags.push('FI');
  const { abort } = injected;
  return answer(abort.kind === 'httpStatus' ? { status: abort.status, body: 'fault filter abort' } : { status: 200, grpcStatus: abort.grpcStatus, body: 'fault filter abort' });
}

/** The DestinationRule's cluster for a Service; the dialled pod itself otherwise. */
function cluster(req: OutboundRequest, decision: Forward): Phase<Upstream> {
  const { ctx } = req;
  const { destination } = ctx;
  if (destination.kind === 'workload') {
    const { workload, address } = destination;
    const pod = { key: `${address.ip}:${address.port}`, address, workload, service: undefined, breaker: undefined, connectTimeoutMs: ISTIO_DEFAULT_CONNECT_TIMEOUT_MS, tls: undefined };
    return next({ cluster: undefined, pod });
  }
  // The source workload itself: it names the DestinationRule client and becomes the cluster's probe source.
  const resolved = ctx.clusters.resolve(ctx.snapshot, decision.destination, ctx.source);
  if (!resolved.ok) {
    req.flags.push('NC');
    return answer({ status: 503, body: resolved.message }, resolved.message);
  }
  req.clusterName = resolved.cluster.name;
  return next({ cluster: resolved.cluster, pod: undefined });
}

// The source side of `ambit explain`: whether the source pod is captured and why (its Enrollment, as
// buildSnapshot decided it for the eBPF programs), where the connection goes and how it is carried, as
// the outbound listener's planOutbound decides it (HBONE to which node and identity, same node,
// passthrough, or the L7 proxy, where routeHttpRequest picks the route and planEndpoint carries the
// upstream). It ends with what the destination agent must be asked: the connection as it arrives.

import { systemClock } from '../l7/clock.js';
import { type TcpRouteTarget, tcpRouteTarget } from '../l7/proxy/tcp-route-target.js';
import type { HttpRequestAttributes } from '../l7/request.js';
import { requestHeaders } from '../l7/request.js';
import { DEFAULT_PATH_NORMALIZATION, type PathNormalization, normalizeOriginForm } from '../l7/request-target.js';
import { UpstreamClusters } from '../l7/upstream-cluster.js';
import { matchesLabels } from '../state/build.js';
import { ClusterTier, clusterTier, rankEndpoints } from '../state/locality.js';
import type { MeshService, MeshSnapshot, ServiceEndpoint, Workload } from '../state/model.js';
import { type OutboundTarget, resolveOutbound } from '../tunnel/destination.js';
import { formatAuthority } from '../tunnel/hbone/connect-headers.js';
import { HBONE_PORT } from '../tunnel/hbone/settings.js';
import { type EndpointChoice, type OutboundPlan, type OutboundSource, type PlanContext, planEndpoint, planOutbound } from '../tunnel/outbound-plan.js';
import type { AdmissionQuery, ExplainHttpRequest } from './admission.js';
import { type DecidedBy, type ExplainStep, byDefault, byMeshObject } from './explanation.js';
import { explainHttpRoute } from './l7-route.js';
import type { ExplainDestination, ExplainSource } from './subjects.js';

export interface SourceSideResult {
  readonly steps: readonly ExplainStep[];
  /** What the destination agent judges; absent when nothing reaches a pod of the mesh. */
  readonly admission?: AdmissionQuery;
  /** The node whose agent admits it. */
  readonly destinationNode?: string;
  /** Why nothing is reached, for the fix line. */
  readonly unreachable?: string;
}

export function explainSourceSide(snapshot: MeshSnapshot, source: ExplainSource, destination: ExplainDestination, http: ExplainHttpRequest | undefined, normalization: PathNormalization = DEFAULT_PATH_NORMALIZATION): SourceSideResult {
  const steps: ExplainStep[] = [captureStep(snapshot, source)];
  const captured = source.kind === 'pod' && source.workload.enrollment.enrolled ? source.workload : undefined;
  const dial = destination.dial;
  const request = http ?? (destination.kind === 'outside' ? undefined : { method: 'GET', path: '/', authority: authorityOf(destination), headers: [] });

  if (!captured) return uncaptured(snapshot, source, destination, request, steps);
  const node = captured.node ?? '';
  const from: OutboundSource = { workload: captured, ip: source.ip, port: 0 };

  // The outbound listener's own decision. A tcp[] route's pick (a balancer's) and a VIP's pick are
  // made once here and kept, so the destination step shows the endpoint the plan was made for.
  const clusters = new UpstreamClusters({ clock: systemClock, node });
  let routed: TcpRouteTarget | undefined;
  const context: PlanContext = { node, clusterId: '', l7: true, inboundHttp: true, pick: () => 0, routeTcp: (s, src, dst) => (routed = tcpRouteTarget(s, clusters, src, dst)) };
  let plan: OutboundPlan;
  try {
    plan = planOutbound(snapshot, from, dial, context);
  } finally {
    clusters.close();
  }

  if (plan.transport === 'http') {
    const target = plan.destination;
    const req = request ?? { method: 'GET', path: '/', authority: authorityOf(destination), headers: [] };
    const why = target.kind === 'service' ? `Service ${target.service.hostname} port ${dial.port} is ${target.protocol} (its name or appProtocol)` : `pod ${target.workload.key} names port ${dial.port} ${target.protocol}`;
    steps.push({ step: 'transport', outcome: 'http', decidedBy: decidedByDestination(destination), node, details: [`${why}: the source agent's L7 proxy routes each request`] });
    const normalized = normalizeOriginForm(req.path, normalization);
    const attrs: HttpRequestAttributes = {
      host: target.kind === 'service' ? target.service.hostname : dial.ip,
      authority: req.authority,
      port: dial.port,
      method: req.method,
      path: normalized.ok ? normalized.path : req.path,
      scheme: 'http',
      headers: requestHeaders(req.headers.flat()),
      source: { namespace: captured.namespace, labels: captured.labels, ip: source.ip },
    };
    if (target.kind === 'workload') return carried(snapshot, steps, from, context, { workload: target.workload, address: dial }, { ...req, path: attrs.path });
    const routedHttp = explainHttpRoute(snapshot, node, captured, attrs);
    steps.push(...routedHttp.steps);
    const o = routedHttp.outcome;
    if (o.kind === 'unreachable') return { steps, unreachable: o.reason };
    if (o.kind === 'answered') return { steps };
    return carried(snapshot, steps, from, context, { ...(o.workload ? { workload: o.workload } : {}), address: o.address, ...(o.service ? { service: o.service } : {}) }, { ...req, path: o.path, authority: o.authority });
  }

  const target: OutboundTarget = routed ?? resolveOutbound(snapshot, dial, node, context.pick);
  steps.push(destinationStep(snapshot, destination, target, node));
  if (target.kind === 'refused') return { steps, unreachable: target.reason };
  if (target.kind === 'dns') return { steps: [...steps, resolvedTransportStep(target, from, node)] };
  const endpoint: EndpointChoice = target.kind === 'workload' ? { workload: target.workload, address: target.address, ...(target.service ? { service: target.service } : {}) } : { address: target.address };
  return transportOf(steps, plan, from, endpoint, http, node, '');
}

function authorityOf(destination: ExplainDestination): string {
  if (destination.kind === 'service') return `${destination.service.name}.${destination.service.namespace}:${destination.dial.port}`;
  return `${destination.dial.ip}:${destination.dial.port}`;
}

function captureStep(snapshot: MeshSnapshot, source: ExplainSource): ExplainStep {
  if (source.kind === 'outside') {
    return { step: 'capture', outcome: 'not-a-pod', decidedBy: byDefault('outside the mesh'), details: [`${source.ip} is no pod of the mesh: nothing captures its connections; they arrive at the destination as plain TCP`] };
  }
  const w = source.workload;
  const pod = byWorkload(w);
  // The snapshot keeps a namespace's labels, not its object's origin.
  const declared = snapshot.namespaces.get(w.namespace)?.source;
  const namespace: DecidedBy = declared ? byMeshObject('Namespace', w.namespace, declared) : { object: `Namespace ${w.namespace}`, from: 'no Namespace object (no labels)' };
  const e = w.enrollment;
  const node = w.node ?? '';
  if (e.enrolled) {
    const why = e.reason === 'namespace-label' ? `namespace ${w.namespace} is labelled istio.io/dataplane-mode=ambient` : e.reason === 'workload-entry' ? `${w.key} names serviceAccount ${w.serviceAccount}` : 'the pod is labelled istio.io/dataplane-mode=ambient';
    return { step: 'capture', outcome: 'captured', decidedBy: e.reason === 'namespace-label' ? namespace : pod, node, details: [`${why}: node ${node}'s agent captures ${w.key}'s connections (cgroup connect hooks to 15001) as ${w.identity}`] };
  }
  const why: Record<typeof e.reason, [string, DecidedBy]> = {
    'pod-opt-out': ['the pod is labelled istio.io/dataplane-mode=none (opted out)', pod],
    'namespace-not-ambient': [`namespace ${w.namespace} is not labelled istio.io/dataplane-mode=ambient, nor is the pod`, namespace],
    'no-pod-ip': ['the pod has no IP yet', pod],
    'host-network': ["the pod runs on its node's network (hostNetwork: true)", pod],
    sidecar: ['the pod has an Istio sidecar (sidecar.istio.io/status): the sidecar wins', pod],
    'no-identity': ['it is a ServiceEntry endpoint or WorkloadEntry with no serviceAccount (or MESH_EXTERNAL): no mesh identity', pod],
  };
  const [text, decidedBy] = why[e.reason];
  return { step: 'capture', outcome: 'not-captured', decidedBy, node, details: [`${text}: its connections leave as plain TCP, with no identity`] };
}

/**
 * `decidedBy` for a workload: a pod, or what a ServiceEntry or WorkloadEntry made one of, by the keys
 * agent/state/service-entries.ts gives them (`WorkloadEntry/<ns>/<name>`, `ServiceEntry/<ns>/<name>/<i>`).
 */
function byWorkload(w: Workload): DecidedBy {
  const [kind, namespace, name, index] = w.key.split('/');
  if (kind === 'WorkloadEntry') return byMeshObject('WorkloadEntry', `${namespace}/${name}`, w.source);
  if (kind === 'ServiceEntry') return byMeshObject('ServiceEntry', `${namespace}/${name} endpoint ${index}`, w.source);
  return byMeshObject('Pod', w.key, w.source);
}

/** Where an endpoint runs: a ServiceEntry's or WorkloadEntry's may be on no node of the cluster. */
function onNode(node: string | undefined): string {
  return node ? `on node ${node}` : '(on no node of the cluster)';
}

/** For a workload of another cluster (docs/multicluster.md): which one, and how it is reached. */
function inCluster(snapshot: MeshSnapshot, w: Workload | undefined): string {
  if (!w?.cluster || w.cluster === snapshot.ownCluster) return '';
  const tier = clusterTier(snapshot, w);
  const how = tier === ClusterTier.ThroughGateway ? ` (network ${w.network}, through its east-west gateway)` : tier === ClusterTier.Unreachable ? ` (network ${w.network}, which has no east-west gateway: unreachable)` : '';
  return ` in cluster ${w.cluster}${how}`;
}

function decidedByDestination(destination: ExplainDestination): DecidedBy {
  const service = destination.kind === 'service' ? destination.service : undefined;
  if (service) return byMeshObject(service.entry ? 'ServiceEntry' : 'Service', `${service.namespace}/${service.name}`, service.source);
  if (destination.kind === 'pod') return byWorkload(destination.workload);
  return byDefault('outside the mesh');
}

/**
 * A Service's endpoints as the resolver sees them, each with the locality rank rankEndpoints gives it for
 * a client on `clientNode` (0 is preferred; absent: left out by internalTrafficPolicy Local), and the
 * pods its selector matches that are not ready.
 */
function endpointLines(snapshot: MeshSnapshot, service: MeshService, port: number, clientNode?: string): string[] {
  const ranks = new Map(rankEndpoints(snapshot, service.loadBalancing, service.endpoints, clientNode).map((r) => [r.endpoint, r.priority]));
  // Ranks mean something under a locality policy, or when clusters' tiers set endpoints apart.
  const ranked = clientNode !== undefined && (service.loadBalancing !== undefined || new Set(ranks.values()).size > 1);
  const rank = (e: ServiceEndpoint): string => (!ranked ? '' : ranks.has(e) ? `, locality rank ${ranks.get(e)}` : ', not eligible from this node');
  const lines = service.endpoints.map((e) => {
    const w = snapshot.workloads.get(e.workload);
    return `endpoint ${e.workload} ${e.ip}${e.ports.has(port) ? `:${e.ports.get(port)}` : ` (no port for ${port})`} ${onNode(w?.node)}${inCluster(snapshot, w)}${rank(e)}`;
  });
  for (const e of service.hostnameEndpoints ?? []) {
    lines.push(`endpoint ${e.workload ?? service.hostname} known by name ${e.hostname}${e.ports.has(port) ? `:${e.ports.get(port)}` : ` (no port for ${port})`}, resolved when a connection picks it`);
  }
  const listed = new Set(service.endpoints.map((e) => e.workload));
  if (service.selector) {
    const selector = service.selector;
    for (const w of snapshot.workloads.values()) {
      if (w.namespace !== service.namespace || listed.has(w.key) || !matchesLabels(selector, w.labels)) continue;
      const remote = w.cluster !== undefined && w.cluster !== snapshot.ownCluster;
      const why = w.ips.length === 0 ? 'no IP' : !w.ready ? 'not ready' : remote ? `in cluster ${w.cluster}, and the Service is not shared across clusters (not global)` : 'not ready';
      lines.push(`not an endpoint: ${w.key} (${why})`);
    }
  }
  if (service.loadBalancing) lines.push(`locality: ${service.loadBalancing.mode} by ${service.loadBalancing.routingPreference.join(', ')}${service.loadBalancing.mode === 'strict' ? ' (internalTrafficPolicy: Local)' : ''}`);
  return lines.length > 0 ? lines : ['no endpoint'];
}

function destinationStep(snapshot: MeshSnapshot, destination: ExplainDestination, target: OutboundTarget, node: string): ExplainStep {
  const decidedBy = decidedByDestination(destination);
  const lines = destination.kind === 'service' ? [`VIP ${destination.dial.ip}:${destination.dial.port} of ${destination.service.hostname}`, ...endpointLines(snapshot, destination.service, destination.dial.port, node)] : [];
  switch (target.kind) {
    case 'refused':
      return { step: 'destination', outcome: 'none', decidedBy, node, details: [...lines, target.reason, 'the client\'s connection is closed'], ends: 'unreachable' };
    case 'passthrough':
      return { step: 'destination', outcome: 'outside', decidedBy, node, details: [`${target.address.ip}:${target.address.port} is no Service or pod of the mesh`] };
    case 'dns':
      return { step: 'destination', outcome: 'endpoint', decidedBy, node, details: [...lines, `picked ${target.workload?.key ?? target.hostname} at ${target.hostname}:${target.port}, resolved through the agent's DNS upstream when the connection opens`] };
    case 'workload': {
      const several = destination.kind === 'service' && destination.service.endpoints.length > 1;
      return { step: 'destination', outcome: 'endpoint', decidedBy, node, details: [...lines, `picked ${target.workload.key} ${target.address.ip}:${target.address.port}${several ? ' (one of the best-ranked endpoints, at random)' : ''}`] };
    }
  }
}

type Endpoint = EndpointChoice;

/** The transport of an endpoint known by name: decided once its address is known, as for that address. */
function resolvedTransportStep(target: Extract<OutboundTarget, { kind: 'dns' }>, from: OutboundSource, node: string): ExplainStep {
  const { workload, hostname } = target;
  if (workload?.enrollment.enrolled) {
    return { step: 'transport', outcome: 'hbone', decidedBy: byWorkload(workload), node, details: [`HBONE to the address ${hostname} resolves to, as ${from.workload.identity}`, `expected server identity: ${workload.identity}`] };
  }
  return { step: 'transport', outcome: 'passthrough', decidedBy: workload ? byWorkload(workload) : byDefault('passthrough'), node, details: [`${hostname} is outside the mesh: plain TCP from ${from.ip} to the address it resolves to`] };
}

/** One L7 upstream: carried as planEndpoint plans it for the L7 proxy's connection to that endpoint. */
function carried(snapshot: MeshSnapshot, steps: ExplainStep[], from: OutboundSource, context: PlanContext, endpoint: EndpointChoice, http: ExplainHttpRequest): SourceSideResult {
  return transportOf(steps, planEndpoint(snapshot, from, endpoint, context), from, endpoint, http, context.node, "the L7 proxy's upstream: ");
}

/** The transport step for a plan, and what the destination agent then sees. */
function transportOf(steps: ExplainStep[], plan: OutboundPlan, from: OutboundSource, endpoint: EndpointChoice, http: ExplainHttpRequest | undefined, node: string, hop: string): SourceSideResult {
  const { workload, address } = endpoint;
  const source = from.workload;
  const pod = workload ? byWorkload(workload) : byDefault('passthrough');
  const admission: AdmissionQuery = { sourceIp: from.ip, sourceIdentity: source.identity, destination: address, ...(http ? { http } : {}) };
  const judged = { admission, ...(workload?.node ? { destinationNode: workload.node } : {}) };
  switch (plan.transport) {
    case 'plain': {
      const what = workload ? `${byWorkload(workload).object} is not in the mesh (${workload.enrollment.reason})` : `${address.ip}:${address.port} is outside the mesh`;
      steps.push({ step: 'transport', outcome: 'passthrough', decidedBy: pod, node, details: [`${hop}${what}: plain TCP from ${from.ip}`] });
      return { steps };
    }
    case 'hbone':
      steps.push({
        step: 'transport',
        outcome: 'hbone',
        decidedBy: byWorkload(plan.workload),
        node,
        details: [`${hop}HBONE to ${plan.target.ip}:${HBONE_PORT} on node ${plan.workload.node ?? '?'}, CONNECT ${plan.authority}, as ${source.identity}`, `expected server identity: ${plan.request.expectedIdentities.join(' or ')}`],
      });
      return { steps, ...judged };
    case 'double-hbone':
      steps.push({
        step: 'transport',
        outcome: 'double-hbone',
        decidedBy: byWorkload(plan.workload),
        node,
        details: [
          `${hop}${plan.workload.key} is on network ${plan.workload.network || '(default)'}, this pod on ${source.network || '(default)'}: double HBONE through its east-west gateway`,
          `outer tunnel: HBONE to the gateway ${formatAuthority(plan.gateway.address)}, CONNECT ${plan.authority}, as ${source.identity}; expected gateway identity: ${plan.gateway.identities.join(' or ')}`,
          `inner tunnel, inside it: CONNECT ${plan.authority} with mTLS to ${plan.request.inner.expectedIdentities.join(' or ')}; the gateway relays it as TLS and picks the endpoint itself`,
        ],
      });
      return { steps, ...judged };
    case 'local':
      steps.push({ step: 'transport', outcome: 'same-node', decidedBy: pod, node, details: [`${hop}${plan.workload.key} is on this node too: no tunnel; this agent admits it as the destination's agent would, with ${source.identity}${plan.httpProtocol ? `, and its inbound HTTP proxy authorizes each request (${plan.httpProtocol})` : ''}`] });
      return { steps, ...judged };
    case 'refused':
      if (plan.flag === 'NO_ROUTE') {
        steps.push({ step: 'transport', outcome: 'none', decidedBy: pod, node, details: [`${hop}${plan.reason}`, "the client's connection is closed"], ends: 'unreachable' });
        return { steps };
      }
      // A pod of this node that its admission refused: the same-node path; the admission steps say why.
      steps.push({ step: 'transport', outcome: 'same-node', decidedBy: pod, node, details: [`${hop}${workload?.key ?? address.ip} is on this node too: no tunnel; this agent refused it (${plan.reason})`] });
      return { steps, ...judged };
    case 'http':
    case 'dns':
      // planEndpoint never hands an endpoint to the L7 proxy again or asks for a name; planOutbound's are handled above.
      return { steps };
  }
}

/** A source nothing captures: its connection goes where the kernel (kube-proxy) sends it, in plaintext. */
function uncaptured(snapshot: MeshSnapshot, source: ExplainSource, destination: ExplainDestination, http: ExplainHttpRequest | undefined, steps: ExplainStep[]): SourceSideResult {
  const decidedBy = decidedByDestination(destination);
  let endpoint: Endpoint;
  if (destination.kind === 'service') {
    const port = destination.dial.port;
    const lines = [`VIP ${destination.dial.ip}:${port} of ${destination.service.hostname}, translated by kube-proxy (not by Ambit)`, ...endpointLines(snapshot, destination.service, port)];
    const serving = destination.service.endpoints.filter((e) => e.ports.has(port));
    const first = serving[0];
    const workload = first ? snapshot.workloads.get(first.workload) : undefined;
    if (!first || !workload) {
      const reason = `service ${destination.service.hostname} has no ready endpoint for port ${port}`;
      steps.push({ step: 'destination', outcome: 'none', decidedBy, details: [...lines, reason, 'the connection is refused'], ends: 'unreachable' });
      return { steps, unreachable: reason };
    }
    endpoint = { workload, address: { ip: first.ip, port: first.ports.get(port)! }, service: destination.service };
    steps.push({ step: 'destination', outcome: 'endpoint', decidedBy, details: [...lines, `kube-proxy picks ${serving.length > 1 ? `one of ${serving.length}, e.g. ` : ''}${workload.key} ${endpoint.address.ip}:${endpoint.address.port}`] });
  } else {
    endpoint = destination.kind === 'pod' ? { workload: destination.workload, address: destination.dial } : { address: destination.dial };
    steps.push({ step: 'destination', outcome: destination.kind === 'pod' ? 'pod' : 'outside', decidedBy, details: [`directly to ${destination.dial.ip}:${destination.dial.port}`] });
  }
  const w = endpoint.workload;
  if (!w?.enrollment.enrolled) {
    steps.push({ step: 'transport', outcome: 'plain', decidedBy: byDefault('outside the mesh on both ends'), details: ['plain TCP; no agent is involved'] });
    return { steps };
  }
  steps.push({ step: 'transport', outcome: 'plaintext-inbound', decidedBy: byWorkload(w), node: w.node ?? '', details: [`plain TCP to ${endpoint.address.ip}:${endpoint.address.port}: tc on node ${w.node ?? '?'} steers it to its agent's inbound listener 15006`] });
  return { steps, admission: { sourceIp: source.ip, destination: endpoint.address, ...(http ? { http } : {}) }, ...(w.node ? { destinationNode: w.node } : {}) };
}

// What the HBONE server (15008) does with a CONNECT that passed its transport checks: admit it to the
// pod (AuthorizationPolicy on the peer's proven identity), connect to the pod as the client, and hand
// the server the tunnel's ConnectionFlow, which accounts for it (metrics, access log, live-connection
// tracking) from its 200 to its end.
// A tunnel to a port that speaks HTTP goes to the inbound HTTP proxy instead of the pod's socket: it
// authorizes each request, and connects to the pod itself.

import type { Socket } from 'node:net';
import type { InboundHttpProxy } from '../l7/proxy/inbound-http.js';
import type { MeshSnapshot } from '../state/model.js';
import type { WorkloadStore } from '../state/store.js';
import type { ConnectionDescription, ConnectionTelemetry } from '../telemetry/connections.js';
import { ConnectionFlows } from './connection-flow.js';
import type { Address } from './destination.js';
import { type HboneAuthority, type ServiceAuthority, formatAuthority } from './hbone/connect-headers.js';
import type { HboneConnectHandler, HboneInboundRequest } from './hbone/server.js';
import { type InboundAttempt, admitInbound } from './inbound-admission.js';
import type { LiveConnections } from './live-connections.js';

export interface InboundHboneOptions {
  readonly node: string;
  readonly store: WorkloadStore;
  readonly telemetry: ConnectionTelemetry;
  readonly live: LiveConnections;
  readonly connectAsClient: (sourceIp: string, destination: Address) => Promise<Socket | string>;
  /** Serves tunnels to ports that speak HTTP request by request; without it every port is L4. */
  readonly http?: InboundHttpProxy;
}

export class InboundHbone {
  readonly #options: InboundHboneOptions;
  readonly #flows: ConnectionFlows;

  constructor(options: InboundHboneOptions) {
    this.#options = options;
    this.#flows = new ConnectionFlows(options.telemetry, options.live);
  }

  /**
   * For HboneServerOptions.resolveService: the pod's target port for a CONNECT that names a Service
   * (the inner tunnel of double HBONE), as ztunnel's find_inbound_upstream.
   */
  readonly resolveService = (service: ServiceAuthority, podIp: string): HboneAuthority | string => {
    const port = resolveServicePort(this.#options.store.current, service, podIp);
    return typeof port === 'string' ? port : { ip: podIp, port };
  };

  /**
   * For HboneServerOptions.handler: admission, then the connect to the pod; a connected decision
   * carries the tunnel's flow, which the server opens at the 200 and finishes at the stream's end.
   */
  readonly handler: HboneConnectHandler = async (request) => {
    const { node, store } = this.#options;
    const snapshot = store.current;
    const http = this.#options.http;
    const attempt: InboundAttempt = { node, sourceIp: request.peerAddress.ip, sourceIdentity: request.peerIdentity, destination: request.authority, ...(http ? { httpPerRequest: true } : {}) };
    const admission = admitInbound(snapshot, attempt);
    const description = describe(snapshot, request, admission.workload);
    if (!admission.ok) {
      this.#flows.refused([description], admission.flag, admission.reason);
      return { kind: 'refused', status: admission.status, reason: admission.reason };
    }
    const connect = (): Promise<Socket | string> => this.#options.connectAsClient(request.peerAddress.ip, request.authority);
    const upstream =
      http && admission.httpProtocol
        ? http.open({
            connection: description,
            sourceIp: request.peerAddress.ip,
            sourcePort: request.peerAddress.port,
            sourceIdentity: request.peerIdentity,
            destination: request.authority,
            workload: admission.workload,
            protocol: admission.httpProtocol,
            connect,
            // The source agent got GOAWAY with this drain and retries what races the close.
            idleOnDrain: 'close',
          })
        : await connect();
    if (typeof upstream === 'string') {
      this.#flows.refused([description], 'CONNECT', upstream);
      return { kind: 'refused', status: 503, reason: upstream };
    }
    const originalDst = description.dst.service?.hostname;
    const flow = this.#flows.flow([description], { transport: 'hbone', ...(originalDst ? { originalDst } : {}) }, attempt);
    return { kind: 'connected', upstream, flow };
  };
}

/** Service port → the target port on the workload at `podIp`: its endpoint's mapping, else a numeric targetPort. */
export function resolveServicePort(snapshot: MeshSnapshot | undefined, target: ServiceAuthority, podIp: string): number | string {
  const service = snapshot?.servicesByHostname.get(target.hostname);
  if (!service) return `no Service ${target.hostname} is known here`;
  const workload = snapshot!.workloadsByIp.get(podIp);
  const endpoint = workload ? service.endpoints.find((e) => e.workload === workload.key) : undefined;
  const mapped = endpoint?.ports.get(target.port);
  if (mapped !== undefined) return mapped;
  const port = service.ports.find((p) => p.port === target.port);
  if (!port) return `service ${service.hostname} has no port ${target.port}`;
  return typeof port.targetPort === 'number' ? port.targetPort : `service ${service.hostname} port ${target.port} targets the named port ${port.targetPort}, which the pod at ${podIp} does not declare`;
}

function describe(snapshot: MeshSnapshot | undefined, request: HboneInboundRequest, workload: ConnectionDescription['dst']['workload']): ConnectionDescription {
  // Through an east-west gateway the TCP peer is the gateway: the source is known by its identity and baggage only (ztunnel).
  const viaGateway = request.headers.originNetwork !== undefined && request.headers.originNetwork !== (workload?.network ?? '');
  const source = viaGateway ? undefined : snapshot?.workloadsByIp.get(request.peerAddress.ip);
  const serviceHost = request.service?.hostname ?? forwardedHost(request.headers.forwarded);
  const service = serviceHost ? snapshot?.servicesByHostname.get(serviceHost) : undefined;
  const target = formatAuthority(request.authority);
  return {
    direction: 'inbound',
    src: { addr: `${request.peerAddress.ip}:${request.peerAddress.port}`, identity: request.peerIdentity, ...(source ? { workload: source } : {}) },
    dst: { addr: target, hboneAddr: target, identity: request.localIdentity, ...(workload ? { workload } : {}), ...(service ? { service } : {}) },
    securityPolicy: 'mutual_tls',
  };
}

/** `host=` of a `forwarded` header: the Service the client asked for, as ztunnel reads it for telemetry. */
export function forwardedHost(forwarded: string | undefined): string | undefined {
  const match = forwarded ? /(?:^|[;,]\s*)host=(?:"([^"]*)"|([^;,\s]+))/i.exec(forwarded) : null;
  return match ? (match[1] ?? match[2]) : undefined;
}

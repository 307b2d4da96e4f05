// The east-west gateway (`ambit gateway`): it terminates the OUTER tunnel of double HBONE on 15008 with
// its own identity, authorizes the client there (AuthorizationPolicy selecting the gateway's pod, as
// Istio's gateway applies L4 rules on its CONNECT listener), picks an endpoint of the Service the CONNECT
// names, and hands the tunnel's bytes to a plain TCP connection to that endpoint's 15008, where the
// destination node's agent terminates the INNER tunnel. The inner TLS is never terminated here: the
// engine moves its records between the two sockets and no byte passes through JavaScript. Each tunnel
// is counted in Istio's TCP metrics as a gateway reports them (reporter "source"), with the bytes the
// engine moved at its end, and refusals with their response flag.

import { type Socket, connect } from 'node:net';
import type { MeshService, MeshSnapshot, SpiffeId, Workload } from '../state/model.js';
import type { WorkloadStore } from '../state/store.js';
import type { ConnectionDescription, ResponseFlag } from '../telemetry/connections.js';
import type { Logger } from '../telemetry/log.js';
import type { ConnectionFlows } from '../tunnel/connection-flow.js';
import { authorizeConnection } from '../policy/authorization.js';
import type { HboneAuthority, ServiceAuthority } from '../tunnel/hbone/connect-headers.js';
import { formatAuthority } from '../tunnel/hbone/connect-headers.js';
import type { EngineHost } from '../tunnel/hbone/engine-host.js';
import type { HboneServerEvent } from '../tunnel/hbone/events.js';
import { HboneServer, type HboneInboundDecision, type HboneInboundRequest } from '../tunnel/hbone/server.js';
import { HBONE_PORT } from '../tunnel/hbone/settings.js';
import type { CertificateSource } from '../tunnel/hbone/tls-contexts.js';

const CONNECT_TIMEOUT_MS = 10_000;

export interface EastWestGatewayOptions {
  readonly store: WorkloadStore;
  readonly certificates: CertificateSource;
  /** The gateway's own identity: the certificate every outer tunnel is served with. */
  readonly identity: SpiffeId;
  /** The gateway's own pod (`namespace/name`) in the snapshot: what AuthorizationPolicy selects. */
  readonly workloadKey: string;
  /** Where each tunnel is counted (Istio's TCP metrics, the access log) and listed while it is open. */
  readonly flows: ConnectionFlows;
  /** Connects to an endpoint's HBONE port; default plain TCP from the gateway's own address. */
  readonly dialEndpoint?: (endpoint: HboneAuthority) => Socket;
  readonly pick?: (n: number) => number;
  /** The engine the tunnels run on (with `--hbone-*` limits); without one the server starts its own. */
  readonly host?: EngineHost;
  readonly log?: Logger;
  readonly onEvent?: (event: HboneServerEvent) => void;
}

export class EastWestGateway {
  readonly #options: EastWestGatewayOptions;
  readonly server: HboneServer;

  constructor(options: EastWestGatewayOptions) {
    this.#options = options;
    this.server = new HboneServer({
      certificates: options.certificates,
      // Clients dial the gateway's Service or pod address and expect the gateway's identity on any of them.
      identityForAddress: () => options.identity,
      // Every Service authority is taken here and routed by the handler, after authorization: as Istio's
      // gateway applies policy on the CONNECT before routing, a refused client learns nothing of endpoints.
      resolveService: (_service, localIp) => ({ ip: localIp, port: HBONE_PORT }),
      handler: (request) => this.#forward(request),
      ...(options.host ? { host: options.host } : {}),
      ...(options.log ? { log: options.log } : {}),
      ...(options.onEvent ? { onEvent: options.onEvent } : {}),
    });
  }

  listen(port: number = HBONE_PORT, host = '0.0.0.0'): ReturnType<HboneServer['listen']> {
    return this.server.listen(port, host);
  }

  close(graceMs?: number): Promise<void> {
    return this.server.close(graceMs);
  }

  /** Where a Service's tunnel goes: one endpoint of this gateway's network, at its node's HBONE port. */
  #pickEndpoint(snapshot: MeshSnapshot, self: Workload, target: ServiceAuthority, service: MeshService | undefined): HboneAuthority | string {
    if (!service) return `no Service ${target.hostname} is known to this gateway`;
    if (!service.ports.some((p) => p.port === target.port)) return `service ${service.hostname} has no port ${target.port}`;
    const endpoints = localEndpoints(snapshot, service, self, target.port);
    if (endpoints.length === 0) return `service ${service.hostname} has no ready endpoint in the mesh on network ${self.network || '(default)'} for port ${target.port}`;
    const pick = this.#options.pick ?? ((n: number) => Math.floor(Math.random() * n));
    return { ip: endpoints[pick(endpoints.length)]!, port: HBONE_PORT };
  }

  /** The client's proven identity against the policies selecting the gateway, then TCP to the endpoint's 15008. */
  async #forward(request: HboneInboundRequest): Promise<HboneInboundDecision> {
    const snapshot = this.#options.store.current;
    const refuse = (status: 400 | 401 | 503, flag: ResponseFlag, reason: string, dst: ConnectionDescription['dst']): HboneInboundDecision => {
      this.#options.flows.refused([describe(snapshot, request, dst)], flag, reason);
      return { kind: 'refused', status, reason };
    };
    const asked = { addr: formatAuthority(request.service ?? request.authority) };
    if (!request.service) return refuse(400, 'NO_ROUTE', 'the east-west gateway forwards only tunnels that name a Service (<hostname>:<port>), as Istio\'s', asked);
    const self = snapshot?.workloads.get(this.#options.workloadKey);
    if (!snapshot || !self) return refuse(503, 'NO_ROUTE', `the gateway's own pod ${this.#options.workloadKey} is not in the configuration`, asked);
    const service = snapshot.servicesByHostname.get(request.service.hostname);
    const named = { ...asked, hboneAddr: formatAuthority(request.service), ...(service ? { service } : {}) };
    const decision = authorizeConnection(snapshot, {
      sourceIdentity: request.peerIdentity,
      sourceIp: request.peerAddress.ip,
      destination: self,
      destinationIp: request.localAddress.ip,
      destinationPort: request.service.port,
    });
    if (!decision.allowed) {
      const reason = decision.reason === 'denied' ? `denied by AuthorizationPolicy ${decision.policy}` : `no ALLOW AuthorizationPolicy for ${self.key} matches`;
      return refuse(401, 'DENY', `${request.peerIdentity} to ${formatAuthority(request.service)} through the gateway: ${reason}`, named);
    }
    const endpoint = this.#pickEndpoint(snapshot, self, request.service, service);
    if (typeof endpoint === 'string') return refuse(503, 'NO_ROUTE', endpoint, named);
    const workload = snapshot.workloadsByIp.get(endpoint.ip);
    const dst = { ...named, addr: formatAuthority(endpoint), ...(workload ? { workload, identity: workload.identity } : {}) };
    const upstream = await this.#dial(endpoint);
    if (typeof upstream === 'string') return refuse(503, 'CONNECT', upstream, dst);
    // The server opens the flow at the 200 and finishes it with the bytes the engine moved.
    const flow = this.#options.flows.flow([describe(snapshot, request, dst)], { transport: 'double-hbone' });
    return { kind: 'connected', upstream, flow };
  }

  #dial(endpoint: HboneAuthority): Promise<Socket | string> {
    const where = formatAuthority(endpoint);
    const socket = this.#options.dialEndpoint?.(endpoint) ?? connect({ host: endpoint.ip, port: endpoint.port, allowHalfOpen: true, noDelay: true });
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        socket.destroy();
        resolve(`connecting to ${where}: timed out after ${CONNECT_TIMEOUT_MS / 1000}s (is HBONE port ${endpoint.port} reachable from the gateway?)`);
      }, CONNECT_TIMEOUT_MS);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(socket);
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        resolve(`connecting to ${where}: ${err.message}`);
      });
    });
  }
}

/** Ready endpoints of `service` in the mesh on the gateway's own network: the only ones it can reach. */
function localEndpoints(snapshot: MeshSnapshot, service: MeshService, gateway: Workload, port: number): string[] {
  return service.endpoints
    .filter((e) => e.ports.has(port))
    .filter((e) => {
      const workload = snapshot.workloads.get(e.workload);
      return workload !== undefined && workload.enrollment.enrolled && (workload.network ?? '') === (gateway.network ?? '');
    })
    .map((e) => e.ip);
}

/**
 * A tunnel as the gateway reports it: reporter "source", as Istio's standard metrics label a gateway's
 * reports. The client is known by its proven identity; its workload only when the TCP peer is a
 * workload with that same identity (clients of other networks usually arrive from their node's address).
 */
function describe(snapshot: MeshSnapshot | undefined, request: HboneInboundRequest, dst: ConnectionDescription['dst']): ConnectionDescription {
  const peer = snapshot?.workloadsByIp.get(request.peerAddress.ip);
  const source = peer?.identity === request.peerIdentity ? peer : undefined;
  return {
    direction: 'outbound',
    src: { addr: formatAuthority(request.peerAddress), identity: request.peerIdentity, ...(source ? { workload: source } : {}) },
    dst,
    securityPolicy: 'mutual_tls',
  };
}

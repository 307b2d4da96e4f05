// The east-west gateway (`ambit gateway`): it terminates the OUTER tunnel of double HBONE on 15008 with
// its own identity, authorizes the client there (AuthorizationPolicy selecting the gateway's pod, as
// Istio's gateway applies L4 rules on its CONNECT listener), picks an endpoint of the Service the CONNECT
// names, and hands the tunnel's bytes to a plain TCP connection to that endpoint's 15008, where the
// destination node's agent terminates the INNER tunnel. The inner TLS is never terminated here: the
// engine moves its records between the two sockets and no byte passes through JavaScript.

import { type Socket, connect } from 'node:net';
import type { MeshService, MeshSnapshot, SpiffeId, Workload } from '../state/model.js';
import type { WorkloadStore } from '../state/store.js';
import type { Logger } from '../telemetry/log.js';
import { authorizeConnection } from '../policy/authorization.js';
import type { HboneAuthority, ServiceAuthority } from '../tunnel/hbone/connect-headers.js';
import { formatAuthority } from '../tunnel/hbone/connect-headers.js';
import type { HboneServerEvent } from '../tunnel/hbone/events.js';
import { HboneServer, type HboneInboundDecision, type HboneInboundRequest } from '../tunnel/hbone/server.js';
import { HBONE_PORT, type HboneTuning } from '../tunnel/hbone/settings.js';
import type { CertificateSource } from '../tunnel/hbone/tls-contexts.js';

const CONNECT_TIMEOUT_MS = 10_000;

export interface EastWestGatewayOptions {
  readonly store: WorkloadStore;
  readonly certificates: CertificateSource;
  /** The gateway's own identity: the certificate every outer tunnel is served with. */
  readonly identity: SpiffeId;
  /** The gateway's own pod (`namespace/name`) in the snapshot: what AuthorizationPolicy selects. */
  readonly workloadKey: string;
  /** Connects to an endpoint's HBONE port; default plain TCP from the gateway's own address. */
  readonly dialEndpoint?: (endpoint: HboneAuthority) => Socket;
  readonly pick?: (n: number) => number;
  readonly tuning?: Partial<HboneTuning>;
  readonly log?: Logger;
  readonly onEvent?: (event: HboneServerEvent) => void;
}

export class EastWestGateway {
  readonly #options: EastWestGatewayOptions;
  /** The endpoint each forwarded tunnel went to, for its log line. */
  readonly #endpoints = new WeakMap<HboneInboundRequest, HboneAuthority>();
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
      ...(options.tuning ? { tuning: options.tuning } : {}),
      ...(options.log ? { log: options.log } : {}),
      onEvent: (event) => this.#report(event),
    });
  }

  listen(port: number = HBONE_PORT, host = '0.0.0.0'): ReturnType<HboneServer['listen']> {
    return this.server.listen(port, host);
  }

  close(graceMs?: number): Promise<void> {
    return this.server.close(graceMs);
  }

  /** Where a Service's tunnel goes: one endpoint of this gateway's network, at its node's HBONE port. */
  #pickEndpoint(snapshot: MeshSnapshot, self: Workload, target: ServiceAuthority): HboneAuthority | string {
    const service = snapshot.servicesByHostname.get(target.hostname);
    if (!service) return `no Service ${target.hostname} is known to this gateway`;
    if (!service.ports.some((p) => p.port === target.port)) return `service ${service.hostname} has no port ${target.port}`;
    const endpoints = localEndpoints(snapshot, service, self, target.port);
    if (endpoints.length === 0) return `service ${service.hostname} has no ready endpoint in the mesh on network ${self.network || '(default)'} for port ${target.port}`;
    const pick = this.#options.pick ?? ((n: number) => Math.floor(Math.random() * n));
    return { ip: endpoints[pick(endpoints.length)]!, port: HBONE_PORT };
  }

  /** The client's proven identity against the policies selecting the gateway, then TCP to the endpoint's 15008. */
  async #forward(request: HboneInboundRequest): Promise<HboneInboundDecision> {
    if (!request.service) return { kind: 'refused', status: 400, reason: 'the east-west gateway forwards only tunnels that name a Service (<hostname>:<port>), as Istio\'s' };
    const snapshot = this.#options.store.current;
    const self = snapshot?.workloads.get(this.#options.workloadKey);
    if (!snapshot || !self) return { kind: 'refused', status: 503, reason: `the gateway's own pod ${this.#options.workloadKey} is not in the configuration` };
    const decision = authorizeConnection(snapshot, {
      sourceIdentity: request.peerIdentity,
      sourceIp: request.peerAddress.ip,
      destination: self,
      destinationIp: request.localAddress.ip,
      destinationPort: request.service.port,
    });
    if (!decision.allowed) {
      const reason = decision.reason === 'denied' ? `denied by AuthorizationPolicy ${decision.policy}` : `no ALLOW AuthorizationPolicy for ${self.key} matches`;
      return { kind: 'refused', status: 401, reason: `${request.peerIdentity} to ${formatAuthority(request.service)} through the gateway: ${reason}` };
    }
    const endpoint = this.#pickEndpoint(snapshot, self, request.service);
    if (typeof endpoint === 'string') return { kind: 'refused', status: 503, reason: endpoint };
    this.#endpoints.set(request, endpoint);
    const upstream = await this.#dial(endpoint);
    return typeof upstream === 'string' ? { kind: 'refused', status: 503, reason: upstream } : { kind: 'connected', upstream };
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

  #report(event: HboneServerEvent): void {
    const log = this.#options.log;
    if (event.type === 'tunnel-opened') {
      const endpoint = this.#endpoints.get(event.request);
      log?.info({ peer: event.request.peerIdentity, service: event.request.service, ...(endpoint ? { endpoint: formatAuthority(endpoint) } : {}) }, 'east-west tunnel opened');
    }
    if (event.type === 'tunnel-closed') log?.info({ peer: event.request.peerIdentity, bytesIn: event.bytesIn, bytesOut: event.bytesOut, durationMs: event.durationMs, error: event.error }, 'east-west tunnel closed');
    this.#options.onEvent?.(event);
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

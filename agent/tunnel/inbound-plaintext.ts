// The inbound plaintext listener (15006): connections to an enrolled pod of this node that arrived
// without HBONE, steered here by tc. The accepted socket's local address is the original destination.
// PeerAuthentication decides whether plaintext is accepted at all (STRICT refuses it), then
// AuthorizationPolicy is evaluated with no peer identity. The agent connects on to the pod as the
// client (a transparent socket), so the pod sees the real source address, and relays.

import { type Server, type Socket, createServer } from 'node:net';
import { authorizeConnection } from '../policy/authorization.js';
import { acceptsPlaintext, effectiveMtlsMode } from '../policy/peer-authentication.js';
import type { WorkloadStore } from '../state/store.js';
import type { ConnectionDescription, ConnectionTelemetry } from '../telemetry/connections.js';
import { AGENT_PORTS, type Address } from './destination.js';
import { relay } from './relay.js';

export interface InboundPlaintextOptions {
  readonly node: string;
  readonly store: WorkloadStore;
  readonly telemetry: ConnectionTelemetry;
  readonly connectAsClient: (sourceIp: string, destination: Address) => Promise<Socket | string>;
}

export class InboundPlaintextProxy {
  readonly server: Server;

  constructor(private readonly options: InboundPlaintextOptions) {
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => void this.#handle(socket));
  }

  async #handle(socket: Socket): Promise<void> {
    const { store, telemetry, node } = this.options;
    socket.on('error', () => undefined); // reported through the relay or the failure below
    const snapshot = store.current;
    const client = socket.remoteAddress ?? '';
    const dst: Address = { ip: socket.localAddress ?? '', port: socket.localPort ?? 0 };
    const destination = snapshot?.workloadsByIp.get(dst.ip);
    const source = snapshot?.workloadsByIp.get(client);
    const description: ConnectionDescription = {
      direction: 'inbound',
      src: { addr: `${client}:${socket.remotePort}`, ...(source ? { workload: source } : {}) },
      dst: { addr: `${dst.ip}:${dst.port}`, ...(destination ? { workload: destination } : {}) },
      securityPolicy: 'unknown',
    };
    const refuse = (flag: 'NO_ROUTE' | 'CONNECT' | 'DENY', reason: string): void => {
      telemetry.failed(description, flag, reason);
      socket.destroy();
    };
    if (!snapshot || !destination || destination.node !== node || !destination.enrollment.enrolled) {
      return refuse('NO_ROUTE', `${dst.ip} is not an enrolled pod of node ${node}`);
    }
    if (AGENT_PORTS.has(dst.port)) return refuse('NO_ROUTE', `port ${dst.port} belongs to the mesh agent`);
    const mtls = effectiveMtlsMode(snapshot, destination, dst.port);
    if (!acceptsPlaintext(mtls)) return refuse('DENY', `plaintext refused: PeerAuthentication ${mtls.policy} requires mTLS (STRICT) for ${destination.key}:${dst.port}`);
    const authz = authorizeConnection(snapshot, { sourceIp: client, destination, destinationIp: dst.ip, destinationPort: dst.port });
    if (!authz.allowed) {
      return refuse('DENY', authz.reason === 'denied' ? `denied by AuthorizationPolicy ${authz.policy}` : `no ALLOW AuthorizationPolicy for ${destination.key} matches`);
    }

    const upstream = await this.options.connectAsClient(client, dst);
    if (typeof upstream === 'string') return refuse('CONNECT', upstream);
    const connection = telemetry.opened(description);
    connection.closed(await relay(socket, upstream));
  }
}

// The inbound plaintext listener (15006): connections to an enrolled pod of this node that arrived
// without HBONE, steered here by tc. The accepted socket's local address is the original destination.
// Admission (inbound-admission.ts) applies PeerAuthentication (STRICT refuses plaintext) and then
// AuthorizationPolicy with no peer identity. The agent connects on to the pod as the client (a
// transparent socket), so the pod sees the real source address, and relays; to a port that speaks HTTP,
// it relays to the inbound HTTP proxy instead, which authorizes each request and connects on itself.

import { type Server, type Socket, createServer } from 'node:net';
import type { InboundHttpProxy } from '../l7/proxy/inbound-http.js';
import type { WorkloadStore } from '../state/store.js';
import type { ConnectionDescription, ConnectionTelemetry } from '../telemetry/connections.js';
import { ConnectionFlows, relayUnder } from './connection-flow.js';
import type { Address } from './destination.js';
import { type InboundAttempt, admitInbound } from './inbound-admission.js';
import type { LiveConnections } from './live-connections.js';
import { KEEPALIVE_OPTIONS } from './socket-options.js';

export interface InboundPlaintextOptions {
  readonly node: string;
  readonly store: WorkloadStore;
  readonly telemetry: ConnectionTelemetry;
  readonly live: LiveConnections;
  readonly connectAsClient: (sourceIp: string, destination: Address) => Promise<Socket | string>;
  /** Serves connections to ports that speak HTTP request by request; without it every port is L4. */
  readonly http?: InboundHttpProxy;
}

export class InboundPlaintextProxy {
  readonly server: Server;
  readonly #flows: ConnectionFlows;

  constructor(private readonly options: InboundPlaintextOptions) {
    this.#flows = new ConnectionFlows(options.telemetry, options.live);
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true, ...KEEPALIVE_OPTIONS }, (socket) => void this.#handle(socket));
  }

  async #handle(socket: Socket): Promise<void> {
    const { store, node } = this.options;
    socket.on('error', () => undefined); // reported through the relay or the failure below
    const snapshot = store.current;
    const client = socket.remoteAddress ?? '';
    const http = this.options.http;
    const attempt: InboundAttempt = { node, sourceIp: client, destination: { ip: socket.localAddress ?? '', port: socket.localPort ?? 0 }, ...(http ? { httpPerRequest: true } : {}) };
    const admission = admitInbound(snapshot, attempt);
    const source = snapshot?.workloadsByIp.get(client);
    const description: ConnectionDescription = {
      direction: 'inbound',
      src: { addr: `${client}:${socket.remotePort}`, ...(source ? { workload: source } : {}) },
      dst: { addr: `${attempt.destination.ip}:${attempt.destination.port}`, ...(admission.workload ? { workload: admission.workload } : {}) },
      securityPolicy: 'unknown',
    };
    if (!admission.ok) {
      this.#flows.refused([description], admission.flag, admission.reason);
      return void socket.destroy();
    }

    const connect = (): Promise<Socket | string> => this.options.connectAsClient(client, attempt.destination);
    const upstream =
      http && admission.httpProtocol
        ? http.open({ connection: description, sourceIp: client, sourcePort: socket.remotePort ?? 0, destination: attempt.destination, workload: admission.workload, protocol: admission.httpProtocol, connect })
        : await connect();
    if (typeof upstream === 'string') {
      this.#flows.refused([description], 'CONNECT', upstream);
      return void socket.destroy();
    }
    await relayUnder(this.#flows.flow([description], { transport: 'plaintext' }, attempt), socket, upstream);
  }
}

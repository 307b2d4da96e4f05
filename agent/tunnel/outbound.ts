// The outbound listener (15001): connections that eBPF redirected from enrolled pods of this node.
// It learns where each was going (SO_ORIGINAL_DST), checks that the source really is an enrolled pod
// here, resolves the destination, and carries the bytes there.

import { type Server, type Socket, connect, createServer } from 'node:net';
import type { WorkloadStore } from '../state/store.js';
import type { ConnectionDescription, ConnectionTelemetry } from '../telemetry/connections.js';
import type { Logger } from '../telemetry/log.js';
import { type Address, resolveOutbound } from './destination.js';
import { relay } from './relay.js';

export interface OutboundOptions {
  readonly node: string;
  readonly store: WorkloadStore;
  readonly telemetry: ConnectionTelemetry;
  readonly log: Logger;
  /** Where a captured connection was going; undefined when the kernel does not know. */
  readonly originalDestination: (socket: Socket) => Address | undefined;
  /**
   * Connects to a pod of this node as the client itself (a transparent socket), since traffic the
   * agent sends to a local pod never passes the inbound steering that a remote agent would apply.
   */
  readonly connectAsClient: (sourceIp: string, destination: Address) => Promise<Socket | string>;
}

export const CONNECT_TIMEOUT_MS = 10_000;

export class OutboundProxy {
  readonly server: Server;

  constructor(private readonly options: OutboundOptions) {
    // allowHalfOpen: a client's FIN must reach the destination as a FIN, not close our reply path.
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => void this.#handle(socket));
  }

  async #handle(socket: Socket): Promise<void> {
    const { store, telemetry, log, node } = this.options;
    socket.on('error', () => undefined); // reported through the relay or the failure below
    const snapshot = store.current;
    const srcAddr = `${socket.remoteAddress}:${socket.remotePort}`;
    const dst = this.options.originalDestination(socket);
    const source = socket.remoteAddress ? snapshot?.workloadsByIp.get(socket.remoteAddress) : undefined;
    const described = (extra: Partial<ConnectionDescription['dst']> = {}): ConnectionDescription => ({
      direction: 'outbound',
      src: { addr: srcAddr, ...(source ? { workload: source } : {}) },
      dst: { addr: dst ? `${dst.ip}:${dst.port}` : 'unknown', ...extra },
      securityPolicy: 'unknown',
    });
    const refuse = (reason: string): void => {
      telemetry.failed(described(), 'NO_ROUTE', reason);
      socket.destroy();
    };
    if (!snapshot || !dst) return refuse(dst ? 'no configuration loaded yet' : 'original destination unknown (not redirected by eBPF?)');
    // Only enrolled pods of this node are redirected here; anything else is refused, not relayed.
    if (!source || source.node !== node || !source.enrollment.enrolled) {
      return refuse(`source ${socket.remoteAddress} is not an enrolled pod of node ${node}`);
    }

    const target = resolveOutbound(snapshot, dst);
    if (target.kind === 'refused') return refuse(target.reason);
    const description = described({
      addr: `${target.address.ip}:${target.address.port}`,
      ...(target.kind === 'workload' ? { workload: target.workload, ...(target.service ? { service: target.service } : {}) } : {}),
    });
    // A pod reaching itself through its Service cannot be sent its own address as the source.
    const local = target.kind === 'workload' && target.workload.node === node && target.workload.enrollment.enrolled && target.workload !== source;
    const upstream = local ? await this.options.connectAsClient(source.ips[0]!, target.address) : await connectPlain(target.address);
    if (typeof upstream === 'string') {
      telemetry.failed(description, 'CONNECT', upstream);
      socket.destroy();
      return;
    }
    const connection = telemetry.opened(description);
    log.debug({ src: srcAddr, dst: description.dst.addr }, 'outbound connection relayed');
    connection.closed(await relay(socket, upstream));
  }
}

/** A plain TCP connection (the agent's own sockets are never captured: its cgroup is not enrolled). */
function connectPlain(address: Address): Promise<Socket | string> {
  return new Promise((resolve) => {
    const socket = connect({ host: address.ip, port: address.port, allowHalfOpen: true, timeout: CONNECT_TIMEOUT_MS });
    socket.once('connect', () => {
      socket.setTimeout(0);
      resolve(socket);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(`connect ${address.ip}:${address.port}: timed out after ${CONNECT_TIMEOUT_MS / 1000}s`);
    });
    socket.once('error', (err) => resolve(`connect ${address.ip}:${address.port}: ${err.message}`));
  });
}

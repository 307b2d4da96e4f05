// Executes an outbound plan (outbound-plan.ts): the one place that opens what a plan says, for the L4
// listener, the L7 upstream and health probes alike, and names a failure by its response flag.

import { type Socket, connect } from 'node:net';
import type { Duplex } from 'node:stream';
import type { InboundHttpProxy } from '../l7/proxy/inbound-http.js';
import type { ResponseFlag } from '../telemetry/connections.js';
import type { Address } from './destination.js';
import { type DoubleHboneRequest, openDoubleHbone } from './hbone/double-hbone.js';
import type { HboneError, HboneResult } from './hbone/errors.js';
import type { HboneOpenRequest } from './hbone/open-request.js';
import type { CarriedTunnel, HbonePool } from './hbone/pool.js';
import { handOverFd, stopReading } from './kernel-relay.js';
import type { ConnectionPlan, LocalPlan } from './outbound-plan.js';
import { tuneRelaySocket } from './socket-options.js';

export const CONNECT_TIMEOUT_MS = 10_000;

export interface OutboundOpenerOptions {
  readonly hbone: HbonePool;
  /** Connects from `sourceIp`, an address the node does not own (a transparent socket). */
  readonly connectAsClient: (sourceIp: string, destination: Address) => Promise<Socket | string>;
  /** The destination side's HTTP proxy, for a local plan whose port it serves request by request. */
  readonly inboundHttp?: InboundHttpProxy;
}

/** A byte stream to the destination (a socket, or a socket-pair end the engine carries). */
export type OpenedStream = { readonly ok: true; readonly via: 'stream'; readonly stream: Duplex };
/** The client's own socket went to the engine's HBONE stream: its bytes never pass through this process. */
export type CarriedStream = { readonly ok: true; readonly via: 'carried'; readonly tunnel: CarriedTunnel };
export type OpenFailure = { readonly ok: false; readonly flag: ResponseFlag; readonly reason: string };
export type Opened = OpenedStream | CarriedStream | OpenFailure;

export class OutboundOpener {
  constructor(private readonly options: OutboundOpenerOptions) {}

  /**
   * Opens what `plan` says. With `downstream` (an L4 client's socket), an HBONE plan hands that
   * socket's fd to the engine when nothing was read from it yet; otherwise the caller gets a stream.
   */
  open(plan: ConnectionPlan): Promise<OpenedStream | OpenFailure>;
  open(plan: ConnectionPlan, downstream: Socket): Promise<Opened>;
  async open(plan: ConnectionPlan, downstream?: Socket): Promise<Opened> {
    switch (plan.transport) {
      case 'hbone':
        return this.#hbone(plan.request, downstream);
      case 'double-hbone':
        return this.#doubleHbone(plan.request, downstream);
      case 'local':
        return streamOrConnectFailure(await this.#local(plan));
      case 'plain':
        return streamOrConnectFailure(await this.#plain(plan.target, plan.bindSource));
    }
  }

  #hbone(request: HboneOpenRequest, downstream: Socket | undefined): Promise<Opened> {
    const { hbone } = this.options;
    return tunnelOf({ stream: () => hbone.open(request), carry: (socket) => hbone.carry(request, socket) }, downstream);
  }

  /** Through the destination network's east-west gateway: the client's socket rides the inner tunnel as it would a single one. */
  #doubleHbone(request: DoubleHboneRequest, downstream: Socket | undefined): Promise<Opened> {
    const { hbone } = this.options;
    return tunnelOf({ stream: () => openDoubleHbone(hbone, request), carry: (socket) => openDoubleHbone(hbone, request, socket) }, downstream);
  }

  /** A port the inbound HTTP proxy serves goes through it (it authorizes each request), anything else straight to the pod. */
  #local(plan: LocalPlan): Promise<Duplex | string> {
    const connect = (): Promise<Duplex | string> => this.#plain(plan.target, plan.bindSource);
    const http = this.options.inboundHttp;
    if (!http || !plan.httpProtocol) return connect();
    const inbound = plan.telemetry[1] ?? plan.telemetry[0]!;
    return Promise.resolve(
      http.open({
        connection: inbound,
        sourceIp: plan.admission.sourceIp,
        sourcePort: plan.sourcePort,
        ...(plan.admission.sourceIdentity ? { sourceIdentity: plan.admission.sourceIdentity } : {}),
        destination: plan.target,
        workload: plan.workload,
        protocol: plan.httpProtocol,
        connect,
      }),
    );
  }

  #plain(target: Address, bindSource: string | undefined): Promise<Duplex | string> {
    return bindSource === undefined ? connectPlain(target) : this.options.connectAsClient(bindSource, target);
  }
}

/**
 * A tunnel that carries `downstream` itself when its fd can go to the engine (nothing read from it yet),
 * or a stream otherwise: a socket JavaScript already read from (a SOCKS5 client's, bytes pipelined
 * behind its request) rides a socket pair instead.
 */
async function tunnelOf(
  open: { readonly stream: () => Promise<HboneResult<Duplex>>; readonly carry: (downstream: Socket) => Promise<HboneResult<CarriedTunnel>> },
  downstream: Socket | undefined,
): Promise<Opened> {
  if (!downstream || handOverFd(downstream) === undefined) {
    const tunnel = await open.stream();
    return tunnel.ok ? { ok: true, via: 'stream', stream: tunnel.value } : { ok: false, flag: flagOf(tunnel.error), reason: tunnel.error.message };
  }
  // Keepalive and no-delay first: the engine's dup keeps them.
  tuneRelaySocket(downstream);
  stopReading(downstream);
  const tunnel = await open.carry(downstream);
  return tunnel.ok ? { ok: true, via: 'carried', tunnel: tunnel.value } : { ok: false, flag: flagOf(tunnel.error), reason: tunnel.error.message };
}

function streamOrConnectFailure(opened: Duplex | string): OpenedStream | OpenFailure {
  return typeof opened === 'string' ? { ok: false, flag: 'CONNECT', reason: opened } : { ok: true, via: 'stream', stream: opened };
}

/** ztunnel's response flag for a tunnel that could not be opened. */
function flagOf(error: HboneError): ResponseFlag {
  switch (error.reason) {
    case 'tls-failed':
    case 'refused-by-server':
      return 'TLS_FAILURE';
    case 'no-certificate':
    case 'unexpected-server':
      return 'IDENTITY_ERROR';
    case 'http-status':
      return error.status === 401 ? 'DENY' : 'CONNECT';
    default:
      return 'CONNECT';
  }
}

/** A plain TCP connection (the agent's own sockets are never captured: its cgroup is not enrolled). */
export function connectPlain(address: Address): Promise<Socket | string> {
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

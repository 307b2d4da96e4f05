// The outbound listener (15001): connections that eBPF redirected from enrolled pods of this node (and
// those a pod's SOCKS5 listener hands over, see socks5/pod-listeners.ts).
// It learns where each was going (SO_ORIGINAL_DST), checks that the source really is an enrolled pod
// here, resolves the destination, and sends the bytes one of three ways: to an enrolled pod on another
// node through an HBONE tunnel (mTLS, the source pod's identity); to an enrolled pod on this node
// directly, with the destination side's admission and telemetry applied here (no tunnel to ourselves);
// anywhere else as plain TCP (ztunnel's passthrough, connection_security_policy "unknown"). Every
// upstream leaves from the source pod's own address, never the node's, so a pod gains no network
// identity of the node's (cloud metadata, node-IP allowlists, egress NetworkPolicy) through the agent.

import { type Server, type Socket, connect, createServer } from 'node:net';
import type { Duplex } from 'node:stream';
import type { MeshSnapshot, Workload } from '../state/model.js';
import type { WorkloadStore } from '../state/store.js';
import type { ConnectionDescription, ConnectionTelemetry, ResponseFlag } from '../telemetry/connections.js';
import type { Logger } from '../telemetry/log.js';
import { type Address, type OutboundTarget, resolveOutbound, serverIdentities } from './destination.js';
import type { HboneOpenRequest, HbonePool } from './hbone/pool.js';
import type { OutboundHttpProxy } from '../l7/proxy/outbound-http.js';
import type { OpenUpstream } from '../l7/proxy/upstream-connections.js';
import type { InboundHttpProxy } from '../l7/proxy/inbound-http.js';
import { canonicalName, canonicalRevision } from '../state/canonical.js';
import { formatAuthority, formatBaggage } from './hbone/connect-headers.js';
import type { HboneError } from './hbone/errors.js';
import { HBONE_PORT } from './hbone/settings.js';
import { type InboundAdmission, type InboundAttempt, admitInbound } from './inbound-admission.js';
import type { LiveConnection, LiveConnections } from './live-connections.js';
import { handOverFd, stopReading } from './kernel-relay.js';
import { type RelayResult, relay } from './relay.js';
import { KEEPALIVE_OPTIONS, tuneRelaySocket } from './socket-options.js';

export interface OutboundOptions {
  readonly node: string;
  readonly store: WorkloadStore;
  readonly telemetry: ConnectionTelemetry;
  readonly live: LiveConnections;
  readonly log: Logger;
  readonly hbone: HbonePool;
  /** Sent in the CONNECT's baggage (`k8s.cluster.name`), as ztunnel does. */
  readonly clusterId: string;
  /** Where a captured connection was going; undefined when the kernel does not know. */
  readonly originalDestination: (socket: Socket) => Address | undefined;
  /**
   * Connects from the client pod's own address (a transparent socket): to a pod of this node, since
   * traffic the agent sends to a local pod never passes the inbound steering that a remote agent would
   * apply; and to anything outside the mesh, so the far end sees the pod, not the node. Replies come
   * back to the agent through tc's exact-tuple lookup (bpf/inbound_tc.bpf.c).
   */
  readonly connectAsClient: (sourceIp: string, destination: Address) => Promise<Socket | string>;
  /** L7: takes connections to ports that speak HTTP, and picks tcp[] routes for TCP ports. */
  readonly http?: OutboundHttpProxy;
  /** The destination side's HTTP proxy: same-node traffic to a port that speaks HTTP is authorized per request there. */
  readonly inboundHttp?: InboundHttpProxy;
}

export const CONNECT_TIMEOUT_MS = 10_000;

type WorkloadTarget = Extract<OutboundTarget, { kind: 'workload' }>;

/** One accepted connection, once its source is known to be an enrolled pod of this node. */
interface Captured {
  readonly socket: Socket;
  readonly snapshot: MeshSnapshot;
  readonly source: Workload;
  readonly sourceIp: string;
  readonly srcAddr: string;
  /** What the client dialled: a Service VIP or a pod's address, and the port. */
  readonly originalDst: string;
}

export class OutboundProxy {
  readonly server: Server;

  constructor(private readonly options: OutboundOptions) {
    // allowHalfOpen: a client's FIN must reach the destination as a FIN, not close our reply path.
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true, ...KEEPALIVE_OPTIONS }, (socket) => this.#handle(socket));
  }

  /**
   * A connection that reached the agent other than by capture (SOCKS5 on a pod's loopback): which pod
   * it comes from and where it goes are already known. It then takes the same path as a captured one.
   */
  handleFrom(socket: Socket, source: Workload, dst: Address): void {
    void this.#dispatch(socket, source.ips[0] ?? '', dst);
  }

  #handle(socket: Socket): void {
    void this.#dispatch(socket, socket.remoteAddress ?? '', this.options.originalDestination(socket));
  }

  async #dispatch(socket: Socket, sourceIp: string, dst: Address | undefined): Promise<void> {
    const { store, telemetry, node } = this.options;
    const srcAddr = `${sourceIp}:${socket.remotePort}`;
    socket.on('error', () => undefined); // reported through the relay or the failures below
    const snapshot = store.current;
    const source = snapshot?.workloadsByIp.get(sourceIp);
    const refuse = (reason: string): void => {
      telemetry.failed(
        { direction: 'outbound', src: { addr: srcAddr, ...(source ? { workload: source } : {}) }, dst: { addr: dst ? `${dst.ip}:${dst.port}` : 'unknown' }, securityPolicy: 'unknown' },
        'NO_ROUTE',
        reason,
      );
      socket.destroy();
    };
    if (!snapshot || !dst) return refuse(dst ? 'no configuration loaded yet' : 'original destination unknown (not redirected by eBPF?)');
    // Only enrolled pods of this node are redirected here; anything else is refused, not relayed.
    if (!source || source.node !== node || !source.enrollment.enrolled) return refuse(`source ${sourceIp} is not an enrolled pod of node ${node}`);

    const captured: Captured = { socket, snapshot, source, sourceIp, srcAddr, originalDst: formatAuthority(dst) };
    const http = this.options.http;
    const httpDestination = http?.destinationOf(snapshot, dst);
    if (http && httpDestination) return this.#viaHttpProxy(captured, http, dst, httpDestination);

    const target = http?.tcpTarget(snapshot, source, dst) ?? resolveOutbound(snapshot, dst, node);
    if (target.kind === 'refused') return refuse(target.reason);
    if (target.kind === 'workload' && target.workload.enrollment.enrolled) {
      return target.workload.node === node ? this.#sameNode(captured, target) : this.#viaHbone(captured, target);
    }
    return this.#passthrough(captured, target);
  }

  /** A port that speaks HTTP: the L7 proxy routes, balances and retries each request over connections opened here. */
  async #viaHttpProxy(c: Captured, http: OutboundHttpProxy, dst: Address, destination: NonNullable<ReturnType<OutboundHttpProxy['destinationOf']>>): Promise<void> {
    const untrack = this.options.live.add(
      { direction: 'outbound', src: c.srcAddr, dst: c.originalDst, transport: 'http', startedAt: new Date(), srcIdentity: c.source.identity },
      (reason) => c.socket.destroy(new Error(`closed: ${reason}`)),
    );
    this.options.log.debug({ src: c.srcAddr, dst: c.originalDst }, 'outbound connection handled at L7');
    await http.handle({
      socket: c.socket,
      source: c.source,
      sourceIp: c.sourceIp,
      sourcePort: c.socket.remotePort ?? 0,
      originalDst: dst,
      destination,
      openUpstream: (target) => this.#openUpstream(c, target),
    });
    untrack();
  }

  /** One upstream connection for the L7 proxy, carried the way #handle would carry a connection to that pod. */
  async #openUpstream(c: Captured, { workload, address, service }: Parameters<OpenUpstream>[0]): Promise<Duplex | string> {
    if (!workload?.enrollment.enrolled) return this.options.connectAsClient(c.sourceIp, address);
    if (workload.node !== this.options.node) {
      const tunnel = await this.options.hbone.open({
        source: { identity: c.source.identity, ip: c.sourceIp },
        bindSource: true,
        destination: { ip: address.ip },
        expectedIdentities: serverIdentities(workload, service),
        authority: address,
        baggage: baggageOf(c.source, this.options.clusterId),
      });
      return tunnel.ok ? tunnel.value : tunnel.error.message;
    }
    const attempt: InboundAttempt = { node: this.options.node, sourceIp: c.sourceIp, sourceIdentity: c.source.identity, destination: address, ...(this.options.inboundHttp ? { httpPerRequest: true } : {}) };
    const admission = admitInbound(this.options.store.current, attempt);
    if (!admission.ok) return admission.reason;
    const inbound: ConnectionDescription = {
      direction: 'inbound',
      src: { addr: c.srcAddr, workload: c.source, identity: c.source.identity },
      dst: { addr: formatAuthority(address), workload: admission.workload, identity: admission.workload.identity },
      securityPolicy: 'mutual_tls',
    };
    return this.#connectLocal(c, admission, address, inbound);
  }

  /** To an enrolled pod elsewhere: an HBONE tunnel to its 15008, from the source pod's address and identity. */
  async #viaHbone(c: Captured, target: WorkloadTarget): Promise<void> {
    const { workload, address, service } = target;
    const description: ConnectionDescription = {
      direction: 'outbound',
      src: { addr: c.srcAddr, workload: c.source, identity: c.source.identity },
      dst: { addr: `${address.ip}:${HBONE_PORT}`, hboneAddr: formatAuthority(address), workload, identity: workload.identity, ...(service ? { service } : {}) },
      securityPolicy: 'mutual_tls',
    };
    const request: HboneOpenRequest = {
      source: { identity: c.source.identity, ip: c.sourceIp },
      bindSource: true,
      destination: { ip: address.ip },
      expectedIdentities: serverIdentities(workload, service),
      authority: address,
      ...(service ? { serviceHostname: service.hostname } : {}),
      baggage: baggageOf(c.source, this.options.clusterId),
    };
    // A captured socket nobody read goes to the engine as it is: its bytes never pass through this
    // process. One that JavaScript already read from (a SOCKS5 client's, with bytes pipelined behind its
    // request) rides a socket pair instead. Keepalive and no-delay first: the engine's dup keeps them.
    if (handOverFd(c.socket) === undefined) {
      const tunnel = await this.options.hbone.open(request);
      if (!tunnel.ok) return this.#failed(c.socket, [description], flagOf(tunnel.error), tunnel.error.message);
      return this.#relay(c, tunnel.value, [description], 'hbone');
    }
    tuneRelaySocket(c.socket);
    stopReading(c.socket);
    const tunnel = await this.options.hbone.carry(request, c.socket);
    if (!tunnel.ok) return this.#failed(c.socket, [description], flagOf(tunnel.error), tunnel.error.message);
    const { ended, close } = tunnel.value;
    await this.#track(c, [description], 'hbone', () => ended, close);
  }

  /** To an enrolled pod of this node: what its own agent's inbound side would decide, decided here. */
  async #sameNode(c: Captured, target: WorkloadTarget): Promise<void> {
    const { workload, address, service } = target;
    const outbound: ConnectionDescription = {
      direction: 'outbound',
      src: { addr: c.srcAddr, workload: c.source, identity: c.source.identity },
      dst: { addr: formatAuthority(address), workload, identity: workload.identity, ...(service ? { service } : {}) },
      securityPolicy: 'mutual_tls',
    };
    const descriptions = [outbound, { ...outbound, direction: 'inbound' as const }];
    const attempt: InboundAttempt = { node: this.options.node, sourceIp: c.sourceIp, sourceIdentity: c.source.identity, destination: address, ...(this.options.inboundHttp ? { httpPerRequest: true } : {}) };
    const admission = admitInbound(c.snapshot, attempt);
    if (!admission.ok) return this.#failed(c.socket, descriptions, admission.flag, admission.reason);
    const upstream = await this.#connectLocal(c, admission, address, descriptions[1]!);
    if (typeof upstream === 'string') return this.#failed(c.socket, descriptions, 'CONNECT', upstream);
    await this.#relay(c, upstream, descriptions, 'same-node', attempt);
  }

  /**
   * To a pod of this node, once admitted: a port that speaks HTTP through the inbound HTTP proxy (it
   * authorizes each request, as the pod's agent would), anything else straight to the pod.
   */
  #connectLocal(c: Captured, admission: Extract<InboundAdmission, { ok: true }>, address: Address, inbound: ConnectionDescription): Promise<Duplex | string> {
    const { workload } = admission;
    // A pod reaching itself through its Service cannot be sent its own address as the source.
    const connect = (): Promise<Duplex | string> => (workload === c.source || workload.key === c.source.key ? connectPlain(address) : this.options.connectAsClient(c.sourceIp, address));
    const http = this.options.inboundHttp;
    if (!http || !admission.httpProtocol) return connect();
    const tunnel = { connection: inbound, sourceIp: c.sourceIp, sourcePort: c.socket.remotePort ?? 0, sourceIdentity: c.source.identity, destination: address, workload, protocol: admission.httpProtocol, connect };
    return Promise.resolve(http.open(tunnel));
  }

  /** Out of the mesh (or to a pod that is not enrolled): plain TCP, from the pod's own address. */
  async #passthrough(c: Captured, target: Exclude<OutboundTarget, { kind: 'refused' }>): Promise<void> {
    const description: ConnectionDescription = {
      direction: 'outbound',
      src: { addr: c.srcAddr, workload: c.source },
      dst: {
        addr: formatAuthority(target.address),
        ...(target.kind === 'workload' ? { workload: target.workload, ...(target.service ? { service: target.service } : {}) } : {}),
      },
      securityPolicy: 'unknown',
    };
    const upstream = await this.options.connectAsClient(c.sourceIp, target.address);
    if (typeof upstream === 'string') return this.#failed(c.socket, [description], 'CONNECT', upstream);
    await this.#relay(c, upstream, [description], 'passthrough');
  }

  #failed(socket: Socket, descriptions: readonly ConnectionDescription[], flag: ResponseFlag, reason: string): void {
    for (const description of descriptions) this.options.telemetry.failed(description, flag, reason);
    socket.destroy();
  }

  async #relay(c: Captured, upstream: Duplex, descriptions: readonly ConnectionDescription[], transport: LiveConnection['transport'], admission?: InboundAttempt): Promise<void> {
    const { socket } = c;
    await this.#track(c, descriptions, transport, () => relay(socket, upstream), (reason) => socket.destroy(new Error(`closed by policy: ${reason}`)), admission);
  }

  /** Counts and tracks one relayed connection from its start to `run`'s end; `close` cuts it (a policy change). */
  async #track(
    c: Captured,
    descriptions: readonly ConnectionDescription[],
    transport: LiveConnection['transport'],
    run: () => Promise<RelayResult>,
    close: (reason: string) => void,
    admission?: InboundAttempt,
  ): Promise<void> {
    const first = descriptions[0]!;
    const dst = first.dst.hboneAddr ?? first.dst.addr;
    const connections = descriptions.map((d) => this.options.telemetry.opened(d));
    const untrack = this.options.live.add(
      {
        direction: 'outbound',
        src: first.src.addr,
        dst,
        ...(c.originalDst !== dst ? { originalDst: c.originalDst } : {}),
        transport,
        startedAt: new Date(),
        ...(first.src.identity ? { srcIdentity: first.src.identity } : {}),
        ...(first.dst.identity ? { dstIdentity: first.dst.identity } : {}),
      },
      close,
      admission,
    );
    this.options.log.debug({ src: first.src.addr, dst: first.dst.addr, transport }, 'outbound connection relayed');
    const result = await run();
    untrack();
    for (const connection of connections) connection.closed(result);
  }
}

/** ztunnel's baggage: who the source is, for the destination's telemetry (it never authorizes). */
export function baggageOf(source: Workload, clusterId: string): string {
  return formatBaggage({
    clusterName: clusterId,
    namespace: source.namespace,
    workload: { type: 'pod', name: source.name },
    canonicalService: canonicalName(source),
    canonicalRevision: canonicalRevision(source),
  });
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

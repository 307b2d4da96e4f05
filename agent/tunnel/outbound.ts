// The outbound listener (15001): connections that eBPF redirected from enrolled pods of this node (and
// those a pod's SOCKS5 listener hands over, see socks5/pod-listeners.ts).
// It learns where each was going (SO_ORIGINAL_DST) and which enrolled pod of this node it comes from,
// asks planOutbound (outbound-plan.ts) how it is carried, has OutboundOpener execute that plan, and
// relays: to an enrolled pod on another node through an HBONE tunnel (mTLS, the source pod's identity);
// to an enrolled pod on this node directly, with the destination side's admission and telemetry applied
// here (no tunnel to ourselves); anywhere else as plain TCP (ztunnel's passthrough,
// connection_security_policy "unknown"); to a port that speaks HTTP through the L7 proxy. Every
// upstream leaves from the source pod's own address, never the node's, so a pod gains no network
// identity of the node's (cloud metadata, node-IP allowlists, egress NetworkPolicy) through the agent.

import { type Server, type Socket, createServer, isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import type { MeshSnapshot, Workload } from '../state/model.js';
import type { WorkloadStore } from '../state/store.js';
import type { ConnectionTelemetry } from '../telemetry/connections.js';
import type { Logger } from '../telemetry/log.js';
import type { Address } from './destination.js';
import type { HbonePool } from './hbone/pool.js';
import type { OutboundHttpProxy } from '../l7/proxy/outbound-http.js';
import type { HttpDestination } from '../l7/proxy/http-destination.js';
import type { OpenUpstream } from '../l7/proxy/upstream-connections.js';
import type { InboundHttpProxy } from '../l7/proxy/inbound-http.js';
import type { HostResolution, HostResolver } from '../dns/host-resolver.js';
import { formatAuthority } from './hbone/connect-headers.js';
import { ConnectionFlows, relayUnder } from './connection-flow.js';
import type { LiveConnection, LiveConnections } from './live-connections.js';
import { OutboundOpener } from './outbound-open.js';
import { type ConnectionPlan, type DnsPlan, type OutboundSource, type PlanContext, planEndpoint, planOutbound, planResolved } from './outbound-plan.js';
import { KEEPALIVE_OPTIONS } from './socket-options.js';

// Where tests and benches have always found the agent's plain connect.
export { connectPlain } from './outbound-open.js';

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
  /** Resolves endpoints known by name (ServiceEntry resolution DNS) through the agent's DNS upstream. */
  readonly hostResolver?: HostResolver;
}

/** One accepted connection, once its source is known to be a pod of this node. */
interface Captured {
  readonly socket: Socket;
  readonly source: OutboundSource;
  /** What the client dialled: a Service VIP or a pod's address, and the port. */
  readonly originalDst: string;
}

/** How each transport is listed among live connections. */
const LISTED: Readonly<Record<ConnectionPlan['transport'], LiveConnection['transport']>> = { hbone: 'hbone', 'double-hbone': 'double-hbone', local: 'same-node', plain: 'passthrough' };

export class OutboundProxy {
  readonly server: Server;
  readonly #opener: OutboundOpener;
  readonly #flows: ConnectionFlows;

  constructor(private readonly options: OutboundOptions) {
    // allowHalfOpen: a client's FIN must reach the destination as a FIN, not close our reply path.
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true, ...KEEPALIVE_OPTIONS }, (socket) => this.#handle(socket));
    this.#opener = new OutboundOpener({ hbone: options.hbone, connectAsClient: options.connectAsClient, ...(options.inboundHttp ? { inboundHttp: options.inboundHttp } : {}) });
    this.#flows = new ConnectionFlows(options.telemetry, options.live);
  }

  /**
   * A connection that reached the agent other than by capture (SOCKS5 on a pod's loopback): which pod
   * it comes from and where it goes are already known. It then takes the same path as a captured one.
   */
  handleFrom(socket: Socket, source: Workload, dst: Address): void {
    void this.#dispatch(socket, source.ips[0] ?? '', dst);
  }

  /** What planOutbound is told about this agent. */
  #planContext(): PlanContext {
    const { node, clusterId, http, inboundHttp } = this.options;
    return {
      node,
      clusterId,
      ...(http ? { l7: true, routeTcp: (snapshot, source, dst) => http.tcpTarget(snapshot, source, dst) } : {}),
      ...(inboundHttp ? { inboundHttp: true } : {}),
    } satisfies PlanContext;
  }

  #handle(socket: Socket): void {
    void this.#dispatch(socket, socket.remoteAddress ?? '', this.options.originalDestination(socket));
  }

  async #dispatch(socket: Socket, sourceIp: string, dst: Address | undefined): Promise<void> {
    const { store, node } = this.options;
    socket.on('error', () => undefined); // reported through the relay or the failures below
    const snapshot = store.current;
    const workload = snapshot?.workloadsByIp.get(sourceIp);
    if (!snapshot || !dst || !workload) {
      const reason = !dst ? 'original destination unknown (not redirected by eBPF?)' : !snapshot ? 'no configuration loaded yet' : `source ${sourceIp} is not an enrolled pod of node ${node}`;
      const description = { direction: 'outbound' as const, src: { addr: `${sourceIp}:${socket.remotePort}` }, dst: { addr: dst ? formatAuthority(dst) : 'unknown' }, securityPolicy: 'unknown' as const };
      this.#flows.refused([description], 'NO_ROUTE', reason);
      return void socket.destroy();
    }
    const captured: Captured = { socket, source: { workload, ip: sourceIp, port: socket.remotePort ?? 0 }, originalDst: formatAuthority(dst) };
    const plan = planOutbound(snapshot, captured.source, dst, this.#planContext());
    switch (plan.transport) {
      case 'http':
        return this.#viaHttpProxy(captured, dst, plan.destination);
      case 'refused':
        this.#flows.refused(plan.telemetry, plan.flag, plan.reason);
        return void socket.destroy();
      case 'dns':
        return this.#resolveAndCarry(captured, plan, snapshot);
      default:
        return this.#carry(captured, plan);
    }
  }

  #resolveName(hostname: string, family?: 4 | 6): Promise<HostResolution> {
    const { hostResolver } = this.options;
    return hostResolver ? hostResolver.resolve(hostname, family) : Promise.resolve({ ok: false, reason: 'the agent has no DNS upstream to resolve it with' });
  }

  /** An endpoint known by name: resolved without blocking (cached by TTL), then carried as to that address. */
  async #resolveAndCarry(c: Captured, plan: DnsPlan, planned: MeshSnapshot): Promise<void> {
    const resolved = await this.#resolveName(plan.hostname, plan.family);
    if (!resolved.ok) {
      this.#flows.refused(plan.telemetry, 'DNS_RESOLUTION_FAILED', `endpoint ${plan.hostname} of ${plan.service.hostname} does not resolve: ${resolved.reason}`);
      return void c.socket.destroy();
    }
    // The configuration may have moved on while the name was asked for: the address is planned with the newest.
    const endpoint = planResolved(this.options.store.current ?? planned, c.source, plan, pickAddress(resolved.addresses), this.#planContext());
    if (endpoint.transport === 'refused') {
      this.#flows.refused(endpoint.telemetry, endpoint.flag, endpoint.reason);
      return void c.socket.destroy();
    }
    return this.#carry(c, endpoint);
  }

  /** A port that speaks HTTP: the L7 proxy routes, balances and retries each request over connections opened here. */
  async #viaHttpProxy(c: Captured, dst: Address, destination: HttpDestination): Promise<void> {
    const http = this.options.http!;
    const { workload, ip, port } = c.source;
    const untrack = this.options.live.add(
      { direction: 'outbound', src: formatAuthority(c.source), dst: c.originalDst, transport: 'http', startedAt: new Date(), srcIdentity: workload.identity },
      (reason) => c.socket.destroy(new Error(`closed: ${reason}`)),
    );
    this.options.log.debug({ src: formatAuthority(c.source), dst: c.originalDst }, 'outbound connection handled at L7');
    await http.handle({ socket: c.socket, source: workload, sourceIp: ip, sourcePort: port, originalDst: dst, destination, openUpstream: (target) => this.#openUpstream(c, target) });
    untrack();
  }

  /** One upstream connection for the L7 proxy: the endpoint's plan, opened as an L4 connection to it would be. */
  async #openUpstream(c: Captured, target: Parameters<OpenUpstream>[0]): Promise<Duplex | string> {
    // An endpoint known by name (ServiceEntry resolution DNS) carries its name where the address goes.
    const resolved = isIP(target.address.ip) === 0 ? await this.#resolveName(target.address.ip) : { ok: true as const, addresses: [target.address.ip] };
    if (!resolved.ok) return `endpoint ${target.address.ip} does not resolve: ${resolved.reason}`;
    const snapshot = this.options.store.current;
    if (!snapshot) return 'no configuration loaded';
    const address = { ip: pickAddress(resolved.addresses), port: target.address.port };
    const plan = planEndpoint(snapshot, c.source, { ...target, address }, this.#planContext());
    if (plan.transport === 'refused') return plan.reason;
    const opened = await this.#opener.open(plan);
    return opened.ok ? opened.stream : opened.reason;
  }

  /** Opens the plan's connection and relays the client's bytes over it, counted and tracked by one flow. */
  async #carry(c: Captured, plan: ConnectionPlan): Promise<void> {
    const flow = this.#flows.flow(plan.telemetry, { transport: LISTED[plan.transport], originalDst: c.originalDst }, plan.transport === 'local' ? plan.admission : undefined);
    const opened = await this.#opener.open(plan, c.socket);
    if (!opened.ok) {
      flow.fail(opened.flag, opened.reason);
      return void c.socket.destroy();
    }
    this.options.log.debug({ src: formatAuthority(c.source), dst: c.originalDst, transport: plan.transport }, 'outbound connection relayed');
    if (opened.via === 'carried') {
      flow.open((reason) => opened.tunnel.close(reason));
      return flow.finish(await opened.tunnel.ended);
    }
    await relayUnder(flow, c.socket, opened.stream);
  }
}

/** One of a name's addresses, at random, as ztunnel picks among the answers (the cache keeps the server's order). */
function pickAddress(addresses: readonly string[]): string {
  return addresses[Math.floor(Math.random() * addresses.length)]!;
}

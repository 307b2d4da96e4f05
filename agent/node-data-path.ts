// The node agent's data path, assembled once capture is up: connection and request telemetry, the
// HBONE engine and its pool, the L7 proxies, the outbound, inbound plaintext and inbound HBONE listeners,
// and the pods' SOCKS5 listeners; and how it drains on a graceful stop. The lifecycle around it (sources,
// capture, identity, admin servers, handover) is node-agent.ts's.

import { mkdir } from 'node:fs/promises';
import { type Server, Socket, createServer } from 'node:net';
import { join } from 'node:path';
import { POD_READINESS_SOCKET, PodReadinessServer } from './admin/pod-readiness.js';
import type { DenialRing } from './explain/denials.js';
import type { WorkloadCertificateManager } from './identity/certificate-manager.js';
import { HostResolver } from './dns/host-resolver.js';
import { nodeDnsUpstream } from './dns/node-upstream.js';
import { endpointProbe } from './l7/proxy/health-probe.js';
import { drainHttpServers } from './l7/proxy/http-servers.js';
import { InboundHttpProxy } from './l7/proxy/inbound-http.js';
import { OutboundHttpProxy } from './l7/proxy/outbound-http.js';
import { requestTelemetryHook } from './l7/proxy/request-record.js';
import type { CaptureConfig, NodeAgentConfig } from './node-agent.js';
import { RateLimiter } from './policy/rate-limit.js';
import { type SocketAddress4, connectTransparent, dialTransparent, transparentListen } from './redirect/bpf-binding.js';
import { INBOUND_PORT, OUTBOUND_PORT } from './redirect/capture.js';
import type { PodCgroupResolver } from './redirect/pod-cgroups.js';
import type { WorkloadStore } from './state/store.js';
import { NodeAddresses } from './system/node-addresses.js';
import { ConnectionTelemetry } from './telemetry/connections.js';
import { FlowLog, type FlowLogging } from './telemetry/flow-log.js';
import { healthCheckTransitions } from './telemetry/health-checks.js';
import type { Logger } from './telemetry/log.js';
import type { MeshMetrics } from './telemetry/metrics.js';
import { RequestTelemetry } from './telemetry/requests.js';
import type { RequestTracer } from './telemetry/tracing.js';
import { survivesAcceptErrors } from './tunnel/accept-errors.js';
import type { Address } from './tunnel/destination.js';
import { FdLimitWatch } from './tunnel/fd-limit-watch.js';
import { EngineHost } from './tunnel/hbone/engine-host.js';
import { HbonePool, type TcpDialer } from './tunnel/hbone/pool.js';
import { HboneServer } from './tunnel/hbone/server.js';
import { HBONE_PORT } from './tunnel/hbone/settings.js';
import { InboundHbone } from './tunnel/inbound-hbone.js';
import { InboundPlaintextProxy } from './tunnel/inbound-plaintext.js';
import { LiveConnections } from './tunnel/live-connections.js';
import { OutboundProxy } from './tunnel/outbound.js';
import { probeDialer } from './tunnel/probe-dialer.js';
import { PodSocksListeners, SOCKS5_PORT } from './tunnel/socks5/pod-listeners.js';

/** What the data path is built from: the agent's configuration and state, and capture's answers. */
export interface DataPathContext {
  readonly config: NodeAgentConfig;
  readonly capture: Extract<CaptureConfig, { mode: 'ebpf' }>;
  /** The node's InternalIP: the outbound listener's address. */
  readonly nodeIp: string;
  readonly podCgroup: PodCgroupResolver;
  readonly store: WorkloadStore;
  readonly log: Logger;
  readonly metrics: MeshMetrics;
  readonly denials: DenialRing;
  readonly tracer: RequestTracer;
  readonly certificates: WorkloadCertificateManager;
  /** Where a captured outbound connection was headed (eBPF's record of it). */
  readonly originalDestination: (socket: Socket) => SocketAddress4 | undefined;
  /** Hands the agent what it closes on stop, in reverse order of starting. */
  readonly closeOnStop: (closable: Closable) => void;
}

/** Whatever the agent closes when it stops. */
export type Closable = { close(): Promise<void> | void };

/** What a graceful stop needs to reach: the listeners that accept traffic and what they started. */
export interface DataPath {
  readonly listeners: readonly Server[];
  /** The pods' SOCKS5 listeners, when enabled: they stop accepting with the others. */
  readonly socks?: PodSocksListeners;
  readonly hbone: HboneServer;
  /** The HBONE engine both directions share: draining it sends GOAWAY on every session. */
  readonly host: EngineHost;
  readonly live: LiveConnections;
}

/** Builds the data path and opens its listeners; the pods' SOCKS5 listeners still need a reconcile. */
export async function startDataPath(context: DataPathContext): Promise<DataPath> {
  const { config, capture, nodeIp, store, log, metrics, denials, tracer, certificates, originalDestination, closeOnStop } = context;
  const { node } = config;
  const flows = flowLogging(context);
  const telemetry = new ConnectionTelemetry(metrics, log.child({ target: 'access' }), { store, clusterId: config.clusterId, denials, ...flows });
  const live = new LiveConnections(store, log);
  closeOnStop(live);
  const connectAsClient = async (sourceIp: string, destination: Address): Promise<Socket | string> => {
    const connected = await connectTransparent(sourceIp, destination);
    return connected.ok ? connected.value : connected.error.message;
  };
  // TLS and HTTP/2 of every HBONE connection run in the engine's threads; every decision stays here.
  const host = EngineHost.start({}, capture.hboneEngine ?? {});
  closeOnStop(host);
  metrics.registerHboneEngine(() => ({ ...host.engine.counters() }));
  metrics.registerHboneConnectionEnds(() => host.connectionEnds());
  const hbonePool = new HbonePool({ host, certificates, dialTcp: transparentDialer, log });
  closeOnStop(hbonePool);
  // L7 for ports that speak HTTP; each finished request feeds Istio's request metrics and access log.
  const requests = new RequestTelemetry(metrics, log.child({ target: 'access' }), { store, clusterId: config.clusterId, ...flows });
  // Active health checks of the clusters requests use, probing as the traffic travels (l7/proxy/health-probe.ts).
  const healthChecks = { probe: endpointProbe(probeDialer({ node, store, hbone: hbonePool, clusterId: config.clusterId, connectAsClient })), onTransition: healthCheckTransitions(metrics.registry) };
  const http = new OutboundHttpProxy({ node, store, log, onRequestComplete: requestTelemetryHook(requests), tracer, healthChecks, ...config.http });
  closeOnStop(requests);
  closeOnStop(http);
  // The destination side of HTTP ports: per-request authorization, local rate limits, SERVER spans.
  const rateLimiter = new RateLimiter({ registry: metrics.registry, log: log.child({ target: 'rate-limit' }) });
  const inboundHttp = new InboundHttpProxy({ store, log, rateLimiter, telemetry: requests, tracer, denials, ...config.http });
  closeOnStop(inboundHttp);
  // ServiceEntry endpoints known by name are resolved through the upstream the DNS proxy forwards to.
  const dnsUpstream = nodeDnsUpstream(capture.dns?.upstream);
  if (typeof dnsUpstream === 'string') log.warn(`connections to ServiceEntry hosts with resolution DNS will fail: ${dnsUpstream}`);
  const hostResolver = typeof dnsUpstream === 'string' ? undefined : new HostResolver({ upstream: dnsUpstream });
  const outbound = new OutboundProxy({ node, store, telemetry, live, log, hbone: hbonePool, clusterId: config.clusterId, originalDestination, connectAsClient, http, inboundHttp, ...(hostResolver ? { hostResolver } : {}) });
  const inbound = new InboundPlaintextProxy({ node, store, telemetry, live, connectAsClient, http: inboundHttp });
  const inboundHbone = new InboundHbone({ node, store, telemetry, live, connectAsClient, http: inboundHttp });
  const hbone = new HboneServer({
    host,
    certificates,
    identityForAddress: (ip) => {
      const workload = store.current?.workloadsByIp.get(ip);
      return workload && workload.node === node && workload.enrollment.enrolled ? workload.identity : undefined;
    },
    handler: inboundHbone.handler,
    resolveService: inboundHbone.resolveService,
    log,
  });
  // Paused until TLS takes the socket over: its first bytes must wait for the certificate lookup.
  const hboneListener = createServer({ pauseOnConnect: true }, (socket) => hbone.handleConnection(socket));

  await listenNet(context, 'outbound', outbound.server, { host: nodeIp, port: OUTBOUND_PORT });
  await listenNet(context, 'inbound', inbound.server, { fd: transparentFd('inbound', INBOUND_PORT) });
  await listenNet(context, 'hbone', hboneListener, { fd: transparentFd('HBONE', HBONE_PORT) });
  const socks = capture.socks5 ? await startSocks(context, outbound) : undefined;
  closeOnStop(new FdLimitWatch(log.child({ target: 'fd-limit' }), metrics.fdLimit));
  return { listeners: [outbound.server, inbound.server, hboneListener], ...(socks ? { socks } : {}), hbone, host, live };
}

/**
 * Stops the listeners accepting, sends GOAWAY on every HBONE session and lets open connections finish
 * for `drainMs`, then cuts whatever is left.
 */
export async function drainDataPath(dataPath: DataPath, drainMs: number, log: Logger): Promise<void> {
  const stopped = dataPath.listeners.map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
  // Kept-alive HTTP clients move to the next agent between requests rather than being cut at the deadline.
  drainHttpServers();
  await dataPath.socks?.close();
  // GOAWAY on every HBONE session, so peers open no new stream here while the open ones finish;
  // the engine resets what is still open at the deadline (the server's close does too).
  void dataPath.host.engine.drain(drainMs);
  const hboneClosed = dataPath.hbone.close(drainMs);
  await dataPath.live.drained(drainMs);
  if (dataPath.live.size > 0) log.info({ open: dataPath.live.size }, `drain deadline (${drainMs} ms) passed; closing the connections still open`);
  dataPath.live.closeAll('the agent is shutting down');
  // Connections still being set up end within their connect timeouts; do not wait for them.
  await Promise.race([Promise.all([...stopped, hboneClosed]), delay(1000)]);
}

/** The flow log's writer, opened once and closed with the agent; nothing when --flow-log is not given. */
function flowLogging({ config, log, metrics, closeOnStop }: DataPathContext): { flows?: FlowLogging } {
  const target = config.flowLog;
  if (!target) return {};
  const writer = new FlowLog(target, log.child({ target: 'flow-log' }));
  metrics.countFlowLogDrops(() => writer.dropped);
  closeOnStop(writer);
  return { flows: { node: config.node, sink: writer } };
}

/**
 * The pods' SOCKS5 listeners, refusing what only the node may reach (its addresses, followed as they
 * change, and the agent's ports), and the per-pod readiness socket the lab's kubelet asks before it
 * starts a pod's containers.
 */
async function startSocks({ config, log, store, podCgroup, closeOnStop }: DataPathContext, outbound: OutboundProxy): Promise<PodSocksListeners> {
  const addresses = new NodeAddresses(log);
  closeOnStop(addresses);
  const agentPorts = new Set([OUTBOUND_PORT, INBOUND_PORT, HBONE_PORT, SOCKS5_PORT, config.admin.port, config.readiness.port, config.metrics.port]);
  const socks = new PodSocksListeners({
    node: config.node,
    store,
    podCgroup,
    handoff: (socket, source, dst) => outbound.handleFrom(socket, source, dst),
    destinations: { nodeAddresses: () => addresses.block, agentPorts },
    log,
  });
  const readiness = new PodReadinessServer((key) => socks.state(key));
  await mkdir(config.identity.stateDir, { recursive: true });
  const path = join(config.identity.stateDir, POD_READINESS_SOCKET);
  await readiness.listen(path).catch((err: Error) => {
    throw new Error(`cannot open the per-pod readiness socket ${path}: ${err.message}; is --state-dir writable?`);
  });
  closeOnStop(readiness);
  return socks;
}

function transparentFd(name: string, port: number): number {
  const fd = transparentListen('0.0.0.0', port, LISTENER_BACKLOG);
  if (!fd.ok) throw new Error(`${name} listener on port ${port}: ${fd.error.message}`);
  return fd.value;
}

function listenNet({ log, metrics }: DataPathContext, name: string, server: Server, options: { host: string; port: number } | { fd: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`cannot start the ${name} listener: ${err.message}`)));
    // SO_REUSEPORT: during an upgrade the old and the new agent listen on the same port (the
    // transparent fds have it from the native binding). Node takes an fd's backlog only as an
    // argument (as an option it is ignored, and the fd listens 511 deep again).
    const listen = (listening: () => void): Server =>
      'fd' in options ? server.listen(options, LISTENER_BACKLOG, listening) : server.listen({ ...options, backlog: LISTENER_BACKLOG, reusePort: true }, listening);
    listen(() => {
      log.info({ listener: name, address: server.address() }, `${name} listener ready`);
      survivesAcceptErrors(server, name, log, metrics.acceptErrors);
      resolve();
    });
  });
}

/**
 * The accept queue of the outbound, inbound and HBONE listeners: as deep as the kernel allows
 * (net.core.somaxconn; 4096 by default since Linux 5.4). One listener takes the connections of every
 * pod on the node and one JavaScript thread accepts them, so a burst of connects fills the queue
 * whenever that thread is slow to run. The kernel bounds the half-open handshakes by the same number:
 * past it, it answers with SYN cookies and drops half-open handshakes early, and a client that already
 * counts itself connected is reset when it first sends (a failed SYN cookie), never having reached
 * the agent. Node's default of 511 lost 295 and 427 of 5,000 connections so (docs/reliability.md).
 * ztunnel's listeners are 128 deep (Rust's TcpListener::bind), but ztunnel listens inside each pod,
 * so a node holds 128 per pod, and accepts on a multi-threaded runtime.
 */
const LISTENER_BACKLOG = 65_535;

/** HBONE's TCP dialer: from the source pod's own address, which the node does not hold (IP_TRANSPARENT). */
const transparentDialer: TcpDialer = (target, localAddress) => {
  if (localAddress === undefined) return new Socket().connect(target.port, target.ip);
  // Not half-open: a peer's FIN must end the TLS session (and its streams), not leave it in CLOSE-WAIT.
  const dialed = dialTransparent(localAddress, target, { allowHalfOpen: false });
  if (dialed.ok) return dialed.value;
  const failed = new Socket();
  process.nextTick(() => failed.destroy(new Error(dialed.error.message)));
  return failed;
};

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());

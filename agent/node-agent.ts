// One node agent, assembled: the state source feeding the store, eBPF capture following it, workload
// certificates for the enrolled pods of this node, the outbound, inbound plaintext and inbound HBONE
// listeners, and the admin, readiness and metrics servers. `ambit run` builds one from its flags;
// tests build one in-process.

import { mkdir, writeFile } from 'node:fs/promises';
import { type Server, Socket, createServer } from 'node:net';
import { join } from 'node:path';
import { AdminServer } from './admin/admin-server.js';
import { MetricsServer } from './admin/metrics-server.js';
import { POD_READINESS_SOCKET, PodReadinessServer } from './admin/pod-readiness.js';
import { ReadinessServer } from './admin/readiness.js';
import { DenialRing } from './explain/denials.js';
import { WorkloadCertificateManager } from './identity/certificate-manager.js';
import type { CaClient } from './identity/ca-client.js';
import { EmbeddedCa } from './identity/embedded-ca.js';
import { IstioCaClient, type IstioCaClientOptions } from './identity/istio-ca-client.js';
import { DEFAULT_ISTIOD_ADDRESS } from './identity/istiod-channel.js';
import { enrolledIdentitiesOnNode } from './identity/node-authorization.js';
import { EbpfCapture, INBOUND_PORT, OUTBOUND_PORT } from './redirect/capture.js';
import { DnsProxy, type DnsUpstream } from './dns/dns-proxy.js';
import { nodeDnsUpstream } from './dns/node-upstream.js';
import { HostResolver } from './dns/host-resolver.js';
import { installReplySteering } from './redirect/reply-steering.js';
import { type PodCgroupResolver, kubepodsResolver, podCgroupFromTemplate } from './redirect/pod-cgroups.js';
import { connectTransparent, dialTransparent, transparentListen } from './redirect/bpf-binding.js';
import { AgentHandover, type HandoverMode } from './lifecycle/handover.js';
import { type SourceChoice, createMeshSource, describeSource } from './sources/source.js';
import type { MeshSnapshot, Workload } from './state/model.js';
import { WorkloadStore } from './state/store.js';
import { runCommand, requireTool } from './system/commands.js';
import { ConnectionTelemetry } from './telemetry/connections.js';
import type { Logger } from './telemetry/log.js';
import { MeshMetrics } from './telemetry/metrics.js';
import { type OtlpMetricsConfig, OtlpMetricsPusher } from './telemetry/otlp-metrics.js';
import type { Address } from './tunnel/destination.js';
import type { TcpDialer } from './tunnel/hbone/pool.js';
import type { EngineOptions } from './tunnel/engine/native.js';
import { EngineHost } from './tunnel/hbone/engine-host.js';
import { HbonePool } from './tunnel/hbone/pool.js';
import { HboneServer } from './tunnel/hbone/server.js';
import { HBONE_PORT } from './tunnel/hbone/settings.js';
import { InboundHbone } from './tunnel/inbound-hbone.js';
import { InboundPlaintextProxy } from './tunnel/inbound-plaintext.js';
import { LiveConnections } from './tunnel/live-connections.js';
import { OutboundProxy } from './tunnel/outbound.js';
import { PodSocksListeners, SOCKS5_PORT } from './tunnel/socks5/pod-listeners.js';
import { NodeAddresses } from './system/node-addresses.js';
import { OutboundHttpProxy } from './l7/proxy/outbound-http.js';
import { drainHttpServers } from './l7/proxy/http-servers.js';
import type { HttpServerLimits } from './l7/proxy/http-servers.js';
import type { PathNormalization } from './l7/request-target.js';
import { endpointProbe } from './l7/proxy/health-probe.js';
import { probeDialer } from './tunnel/probe-dialer.js';
import { healthCheckTransitions } from './telemetry/health-checks.js';
import { requestTelemetryHook } from './l7/proxy/request-record.js';
import { RequestTelemetry } from './telemetry/requests.js';
import { InboundHttpProxy } from './l7/proxy/inbound-http.js';
import { RateLimiter } from './policy/rate-limit.js';
import { RequestTracer, type TracingConfig } from './telemetry/tracing.js';
import { FlowLog, type FlowLogTarget, type FlowLogging } from './telemetry/flow-log.js';
import { survivesAcceptErrors } from './tunnel/accept-errors.js';
import { FdLimitWatch } from './tunnel/fd-limit-watch.js';

export const AMBIT_VERSION = '0.1.0';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export type CaptureConfig =
  | { readonly mode: 'none' }
  | {
      readonly mode: 'ebpf';
      /** How pods' cgroups are found: a template (the lab's layout), or the kubelet's, by pod UID. */
      readonly podCgroup: { readonly kind: 'template'; readonly template: string } | { readonly kind: 'kubepods'; readonly root: string };
      readonly scope: string;
      /** Devices other nodes' traffic arrives on; default: the one holding the node's InternalIP. */
      readonly uplinks: readonly string[];
      /**
       * SOCKS5 on 127.0.0.1:15080 inside each enrolled pod (ztunnel's opt-in listener). Each pod's
       * network namespace is found through its cgroup, hence only with eBPF capture.
       */
      readonly socks5?: boolean;
      /** The native HBONE engine's threads and limits (`--data-threads`, `--hbone-*`); absent: its defaults. */
      readonly hboneEngine?: EngineOptions;
      /**
       * DNS capture (on unless `--no-dns-capture`): pods' DNS (port 53) goes to the proxy on <node IP>:15053,
       * which answers mesh names and forwards the rest to `upstream` (absent: the agent's resolv.conf).
       * Absent: not captured.
       */
      readonly dns?: { readonly upstream?: DnsUpstream };
    };

export interface IdentityConfig {
  /** The agent's state directory: its own CA root lives in `<stateDir>/ca` unless `caDir` is given. */
  readonly stateDir: string;
  /** A plugged-in CA in Istio's cacerts layout (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem). */
  readonly caDir?: string;
  /** Lifetime of workload certificates; renewed at half life. */
  readonly certTtlSeconds: number;
  /** Where certificates come from: the CA inside the agent (default), or istiod's CA over gRPC. */
  readonly istiodCa?: IstioCaClientOptions;
}

export interface NodeAgentConfig {
  readonly node: string;
  /** Where the mesh comes from: local files, the Kubernetes API server, or istiod. */
  readonly source: SourceChoice;
  readonly trustDomain: string;
  readonly clusterDomain: string;
  /** This cluster's id in metrics (`*_cluster`) and for istiod; Istio's default is "Kubernetes". */
  readonly clusterId: string;
  readonly readiness: ListenAddress;
  readonly admin: ListenAddress;
  readonly metrics: ListenAddress;
  readonly capture: CaptureConfig;
  readonly identity: IdentityConfig;
  /** On shutdown, how long open connections may finish before they are cut. */
  readonly drainMs: number;
  /** Request spans over OTLP/HTTP (`--otlp-endpoint`); undefined: trace headers pass, no spans. */
  readonly tracing?: TracingConfig;
  /** Also push the metrics registry over OTLP/HTTP (`--otlp-metrics-endpoint`); undefined: scrape only. */
  readonly otlpMetrics?: OtlpMetricsConfig;
  /** The flow log (`--flow-log`): one JSON record per connection and per request; undefined: none. */
  readonly flowLog?: FlowLogTarget;
  /** The L7 proxies' HTTP timeouts and path normalization (`--http-*-timeout`, `--path-normalization`); default: theirs. */
  readonly http?: { readonly limits: HttpServerLimits; readonly pathNormalization: PathNormalization };
  /** When a running agent of this node is found: retire it once this one is ready (default), or wait for its orchestrator to. */
  readonly handover?: HandoverMode;
}

/** How long a stopping agent keeps accepting for a successor that is starting beside it. */
const SUCCESSOR_WAIT_MS = 20_000;

type Closable = { close(): Promise<void> | void };

/** What a graceful stop needs to reach: the listeners that accept traffic and what they started. */
interface DataPath {
  readonly listeners: readonly Server[];
  /** The pods' SOCKS5 listeners, when enabled: they stop accepting with the others. */
  readonly socks?: PodSocksListeners;
  readonly hbone: HboneServer;
  /** The HBONE engine both directions share: draining it sends GOAWAY on every session. */
  readonly host: EngineHost;
  readonly live: LiveConnections;
}

export class NodeAgent {
  readonly store = new WorkloadStore();
  readonly metrics = new MeshMetrics(AMBIT_VERSION);
  /** The recent denials of this node's inbound side, for `ambit explain --last-denied`. */
  readonly denials = new DenialRing();
  /** One span per request on each side (the outbound HTTP proxy's CLIENT spans, the inbound one's SERVER spans). */
  readonly tracer: RequestTracer;
  readonly #closers: Closable[] = [];
  #dataPath: DataPath | undefined;
  #certificates: WorkloadCertificateManager | undefined;
  #ready = false;
  #handover: AgentHandover | undefined;

  constructor(
    private readonly config: NodeAgentConfig,
    private readonly log: Logger,
    private readonly quit: (reason: string) => void,
  ) {
    this.tracer = config.tracing ? RequestTracer.create(config.tracing, config.node) : RequestTracer.disabled(config.node);
    // Telemetry resources set sampling, span reporting and custom tags per workload.
    this.tracer.followTelemetry(this.store);
  }

  /** Starts everything; resolves once the agent is ready, rejects with an actionable message. */
  async start(): Promise<void> {
    const { config, log, store } = this;
    // First, before any port: a live agent of this node means an upgrade, which every listener
    // (SO_REUSEPORT) and the pinned maps and links (adopted) allow; its leftovers after a crash do not.
    const scope = config.capture.mode === 'ebpf' ? config.capture.scope : config.node;
    this.#handover = await AgentHandover.begin(config.identity.stateDir, config.node, scope, AMBIT_VERSION, log);
    const readiness = new ReadinessServer(() => (this.#ready ? EbpfCapture.problemOf(config.capture) : store.current ? 'capture not set up yet' : 'configuration not loaded yet'));
    await this.#serve('readiness', readiness, config.readiness);
    const admin = new AdminServer({
      store,
      node: config.node,
      log,
      quit: () => this.quit('POST /quitquitquit'),
      certificates: () => this.certificates?.status() ?? [],
      connections: () => this.connections?.list() ?? [],
      console: { registry: this.metrics.registry, captureLinks: () => EbpfCapture.linksOf(config.capture) },
      explain: { denials: this.denials, ...(config.http ? { pathNormalization: config.http.pathNormalization } : {}) },
    });
    await this.#serve('admin', admin, config.admin);
    await this.#serve('metrics', new MetricsServer(this.metrics.registry), config.metrics);
    if (config.otlpMetrics) {
      const resource = { 'service.name': 'ambit', 'service.version': AMBIT_VERSION, 'k8s.node.name': config.node };
      const pusher = new OtlpMetricsPusher(this.metrics.registry, config.otlpMetrics, { resource, version: AMBIT_VERSION }, log);
      pusher.start();
      this.#closers.push(pusher);
    }

    const source = await createMeshSource(config.source, { trustDomain: config.trustDomain, clusterDomain: config.clusterDomain }, store, log);
    this.#closers.push(source);
    const first = await source.load();
    if (config.capture.mode === 'ebpf') await this.#startCapture(config.capture, first.snapshot);
    await source.watch();
    this.#ready = true;
    log.info({ source: describeSource(config.source), capture: config.capture.mode }, 'agent ready; watching the configuration for changes');
    await this.#handover.serving();
    if ((config.handover ?? 'retire') === 'retire') this.#handover.retirePredecessor();
  }

  /** The flow log's writer, opened once and closed with the agent; nothing when --flow-log is not given. */
  #flowLogging(): { flows?: FlowLogging } {
    const target = this.config.flowLog;
    if (!target) return {};
    const writer = new FlowLog(target, this.log.child({ target: 'flow-log' }));
    this.metrics.countFlowLogDrops(() => writer.dropped);
    this.#closers.push(writer);
    return { flows: { node: this.config.node, sink: writer } };
  }

  /** The certificates this agent holds, for the admin server. */
  get certificates(): WorkloadCertificateManager | undefined {
    return this.#certificates;
  }

  /** Live relayed connections, for the admin server. */
  get connections(): LiveConnections | undefined {
    return this.#dataPath?.live;
  }

  /**
   * Graceful stop: readiness turns false, listeners stop accepting, HBONE sessions get GOAWAY, open
   * connections may finish for `drainMs`, then whatever is left is cut and everything else closed.
   * Capture stays attached: while the agent is away, enrolled pods' connections are refused
   * (nothing listens on 15001/15006/15008), never sent around the mesh.
   */
  async stop(drainMs = this.config.drainMs): Promise<void> {
    const dataPath = this.#dataPath;
    // An orchestrator may stop this agent before the one replacing it listens: keep accepting until it does.
    if (dataPath) await this.#handover?.untilSuccessorServes(SUCCESSOR_WAIT_MS);
    await this.#handover?.close();
    this.#ready = false;
    if (dataPath) {
      const stopped = dataPath.listeners.map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
      // Kept-alive HTTP clients move to the next agent between requests rather than being cut at the deadline.
      drainHttpServers();
      await dataPath.socks?.close();
      // GOAWAY on every HBONE session, so peers open no new stream here while the open ones finish;
      // the engine resets what is still open at the deadline (the server's close does too).
      void dataPath.host.engine.drain(drainMs);
      const hboneClosed = dataPath.hbone.close(drainMs);
      await dataPath.live.drained(drainMs);
      if (dataPath.live.size > 0) this.log.info({ open: dataPath.live.size }, `drain deadline (${drainMs} ms) passed; closing the connections still open`);
      dataPath.live.closeAll('the agent is shutting down');
      // Connections still being set up end within their connect timeouts; do not wait for them.
      await Promise.race([Promise.all([...stopped, hboneClosed]), delay(1000)]);
    }
    for (const closable of this.#closers.reverse()) await closable.close();
    // Last: the spans of the requests that finished during the drain go out too.
    await this.tracer.shutdown().catch((err: Error) => this.log.warn({ err: err.message }, 'exporting the last request spans failed'));
  }

  async #startCapture(capture: Extract<CaptureConfig, { mode: 'ebpf' }>, snapshot: MeshSnapshot): Promise<void> {
    const { config, log, store } = this;
    const nodeIp = snapshot.nodes.get(config.node)?.internalIp;
    if (!nodeIp) throw new Error(`node "${config.node}" has no InternalIP in the configuration; eBPF capture redirects pods to that address`);
    const uplinks = capture.uplinks.length > 0 ? capture.uplinks : [await deviceHolding(nodeIp)];
    const podCgroup = capture.podCgroup.kind === 'template' ? podCgroupFromTemplate(capture.podCgroup.template) : kubepodsResolver(capture.podCgroup.root);
    // The proxy listens before any pod's DNS is sent to it.
    if (capture.dns) await this.#startDnsProxy(nodeIp, capture.dns.upstream);
    const started = await EbpfCapture.start({ scope: capture.scope, node: config.node, nodeIp, uplinks, podCgroup, dns: capture.dns !== undefined, log });
    if (!started.ok) throw new Error(`eBPF capture: ${started.error.message}`);
    const ebpf = started.value;
    await migrateAcceptQueues(log);
    // Upstreams leave from pods' addresses; replies tc cannot see come back through conntrack.
    const replies = await installReplySteering(log);
    if (!replies.ok) throw new Error(replies.error.message);
    this.metrics.registerRedirectDecisions(() => ebpf.counters());

    const certificates = await this.#startIdentity(snapshot);
    const { node } = config;
    const flows = this.#flowLogging();
    const telemetry = new ConnectionTelemetry(this.metrics, log.child({ target: 'access' }), { store, clusterId: config.clusterId, denials: this.denials, ...flows });
    const live = new LiveConnections(store, log);
    this.#closers.push(live);
    const connectAsClient = async (sourceIp: string, destination: Address): Promise<Socket | string> => {
      const connected = await connectTransparent(sourceIp, destination);
      return connected.ok ? connected.value : connected.error.message;
    };
    // TLS and HTTP/2 of every HBONE connection run in the engine's threads; every decision stays here.
    const host = EngineHost.start({}, capture.hboneEngine ?? {});
    this.#closers.push(host);
    this.metrics.registerHboneEngine(() => ({ ...host.engine.counters() }));
    this.metrics.registerHboneConnectionEnds(() => host.connectionEnds());
    const hbonePool = new HbonePool({ host, certificates, dialTcp: transparentDialer, log });
    this.#closers.push(hbonePool);
    // L7 for ports that speak HTTP; each finished request feeds Istio's request metrics and access log.
    const requests = new RequestTelemetry(this.metrics, log.child({ target: 'access' }), { store, clusterId: config.clusterId, ...flows });
    // Active health checks of the clusters requests use, probing as the traffic travels (l7/proxy/health-probe.ts).
    const healthChecks = { probe: endpointProbe(probeDialer({ node, store, hbone: hbonePool, clusterId: config.clusterId, connectAsClient })), onTransition: healthCheckTransitions(this.metrics.registry) };
    const http = new OutboundHttpProxy({ node, store, log, onRequestComplete: requestTelemetryHook(requests), tracer: this.tracer, healthChecks, ...config.http });
    this.#closers.push(requests);
    this.#closers.push(http);
    // The destination side of HTTP ports: per-request authorization, local rate limits, SERVER spans.
    const rateLimiter = new RateLimiter({ registry: this.metrics.registry, log: log.child({ target: 'rate-limit' }) });
    const inboundHttp = new InboundHttpProxy({ store, log, rateLimiter, telemetry: requests, tracer: this.tracer, denials: this.denials, ...config.http });
    this.#closers.push(inboundHttp);
    // ServiceEntry endpoints known by name are resolved through the upstream the DNS proxy forwards to.
    const dnsUpstream = nodeDnsUpstream(capture.dns?.upstream);
    if (typeof dnsUpstream === 'string') log.warn(`connections to ServiceEntry hosts with resolution DNS will fail: ${dnsUpstream}`);
    const hostResolver = typeof dnsUpstream === 'string' ? undefined : new HostResolver({ upstream: dnsUpstream });
    const outbound = new OutboundProxy({ node, store, telemetry, live, log, hbone: hbonePool, clusterId: config.clusterId, originalDestination: (s) => ebpf.originalDestination(s), connectAsClient, http, inboundHttp, ...(hostResolver ? { hostResolver } : {}) });
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

    await this.#listenNet('outbound', outbound.server, { host: nodeIp, port: OUTBOUND_PORT });
    await this.#listenNet('inbound', inbound.server, { fd: this.#transparentFd('inbound', INBOUND_PORT) });
    await this.#listenNet('hbone', hboneListener, { fd: this.#transparentFd('HBONE', HBONE_PORT) });
    const socks = capture.socks5 ? await this.#startSocks(podCgroup, outbound) : undefined;
    this.#dataPath = { listeners: [outbound.server, inbound.server, hboneListener], ...(socks ? { socks } : {}), hbone, host, live };
    this.#closers.push(new FdLimitWatch(log.child({ target: 'fd-limit' }), this.metrics.fdLimit));

    await ebpf.reconcile(snapshot);
    store.subscribe((next) => void ebpf.reconcile(next));
    if (socks) {
      await socks.reconcile(snapshot);
      store.subscribe((next) => void socks.reconcile(next));
    }
  }

  /** The DNS proxy on <node IP>:15053 (UDP and TCP), forwarding what the mesh does not know upstream. */
  async #startDnsProxy(nodeIp: string, configured: DnsUpstream | undefined): Promise<void> {
    const upstream = nodeDnsUpstream(configured);
    if (typeof upstream === 'string') throw new Error(`DNS capture: ${upstream}`);
    const proxy = new DnsProxy({ store: this.store, log: this.log.child({ target: 'dns' }), upstreamOf: () => upstream });
    await proxy.listen(nodeIp).catch((err: Error) => {
      throw new Error(`DNS capture: the DNS proxy cannot listen on ${nodeIp}:15053 (UDP and TCP): ${err.message}; is another agent or resolver using the port? (--no-dns-capture turns DNS capture off)`);
    });
    this.#closers.push(proxy);
    this.log.info({ upstream: `${upstream.ip}:${upstream.port}` }, `DNS proxy on ${nodeIp}:15053: mesh names answered, the rest forwarded to ${upstream.ip}:${upstream.port}`);
  }

  /**
   * The pods' SOCKS5 listeners, refusing what only the node may reach (its addresses, followed as they
   * change, and the agent's ports), and the per-pod readiness socket the lab's kubelet asks before it
   * starts a pod's containers.
   */
  async #startSocks(podCgroup: PodCgroupResolver, outbound: OutboundProxy): Promise<PodSocksListeners> {
    const { config, log, store } = this;
    const addresses = new NodeAddresses(log);
    this.#closers.push(addresses);
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
    this.#closers.push(readiness);
    return socks;
  }

  /**
   * The CA (plugged in, or the agent's own root in its state dir) and the certificates of this node's
   * enrolled pods, fetched ahead of their first connection and following the store as pods come and go.
   */
  async #startIdentity(snapshot: MeshSnapshot): Promise<WorkloadCertificateManager> {
    const { config, log, store } = this;
    const { identity } = config;
    const certificates = new WorkloadCertificateManager({ caClient: await this.#caClient(), ttlSeconds: identity.certTtlSeconds, log });
    this.#certificates = certificates;
    this.#closers.push(certificates);
    certificates.track(enrolledIdentitiesOnNode(snapshot, config.node));
    store.subscribe((next) => certificates.track(enrolledIdentitiesOnNode(next, config.node)));
    return certificates;
  }

  /** istiod's CA when configured (it checks that our pods run here), else the CA inside the agent. */
  async #caClient(): Promise<CaClient> {
    const { config, log, store } = this;
    const { identity } = config;
    if (identity.istiodCa) {
      const client = new IstioCaClient(identity.istiodCa);
      this.#closers.push(client);
      const address = identity.istiodCa.address ?? DEFAULT_ISTIOD_ADDRESS;
      log.info({ address }, `certificate authority: istiod at ${address}`);
      return client;
    }
    const ca = await EmbeddedCa.open({
      stateDir: identity.stateDir,
      ...(identity.caDir !== undefined ? { pluggedInDir: identity.caDir } : {}),
      trustDomain: config.trustDomain,
      identitiesOnNode: (node) => enrolledIdentitiesOnNode(store.current, node),
    });
    if (!ca.ok) throw new Error(`certificate authority: ${ca.error.message}`);
    log.info(ca.value.origin, `certificate authority: ${ca.value.origin.origin} CA in ${ca.value.origin.dir}`);
    return ca.value.clientFor(config.node);
  }

  #transparentFd(name: string, port: number): number {
    const fd = transparentListen('0.0.0.0', port, LISTENER_BACKLOG);
    if (!fd.ok) throw new Error(`${name} listener on port ${port}: ${fd.error.message}`);
    return fd.value;
  }

  async #serve(name: string, server: { listen(host: string, port: number): Promise<{ address: string; port: number }>; close(): Promise<void> }, at: ListenAddress): Promise<void> {
    const bound = await server.listen(at.host, at.port).catch((err: Error) => {
      throw new Error(`cannot listen on ${at.host}:${at.port} for the ${name} server: ${err.message}; is another agent running here? (choose another with --${name}-address)`);
    });
    this.#closers.push(server);
    this.log.info({ address: bound, server: name }, `${name} server listening on ${bound.address}:${bound.port}`);
  }

  #listenNet(name: string, server: Server, options: { host: string; port: number } | { fd: number }): Promise<void> {
    return new Promise((resolve, reject) => {
      server.once('error', (err) => reject(new Error(`cannot start the ${name} listener: ${err.message}`)));
      // SO_REUSEPORT: during an upgrade the old and the new agent listen on the same port (the
      // transparent fds have it from the native binding). Node takes an fd's backlog only as an
      // argument (as an option it is ignored, and the fd listens 511 deep again).
      const listen = (listening: () => void): Server =>
        'fd' in options ? server.listen(options, LISTENER_BACKLOG, listening) : server.listen({ ...options, backlog: LISTENER_BACKLOG, reusePort: true }, listening);
      listen(() => {
        this.log.info({ listener: name, address: server.address() }, `${name} listener ready`);
        survivesAcceptErrors(server, name, this.log, this.metrics.acceptErrors);
        resolve();
      });
    });
  }
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

/**
 * net.ipv4.tcp_migrate_req (per network namespace): when an agent closes a listener of a SO_REUSEPORT
 * group, the connections in its accept queue, and those still in the handshake, move to another
 * listener of the group instead of being reset. That is what makes an upgrade lose nothing.
 */
async function migrateAcceptQueues(log: Logger): Promise<void> {
  const path = '/proc/sys/net/ipv4/tcp_migrate_req';
  await writeFile(path, '1').catch((err: Error) => {
    log.warn({ err: err.message }, `cannot turn on ${path} (${err.message}): an upgrade will reset connections still in the old agent's accept queue; set it to 1 in this network namespace`);
  });
}

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());

/** The network device that holds an address: by default, where other nodes' traffic arrives. */
async function deviceHolding(ip: string): Promise<string> {
  const links = JSON.parse(await runCommand(requireTool('ip', 'iproute2'), ['-j', 'addr', 'show'])) as { ifname: string; addr_info?: { local?: string }[] }[];
  const device = links.find((l) => l.addr_info?.some((a) => a.local === ip))?.ifname;
  if (!device) throw new Error(`no device holds the node address ${ip} in this network namespace; pass --uplink <device>`);
  return device;
}

// One node agent, assembled: the state source feeding the store, eBPF capture following it, workload
// certificates for the enrolled pods of this node, the data path (node-data-path.ts: the outbound,
// inbound plaintext and inbound HBONE listeners and what they use), the admin, readiness and metrics
// servers, and the handover to a successor. `ambit run` builds one from its flags; tests build one in-process.

import { writeFile } from 'node:fs/promises';
import { AdminServer } from './admin/admin-server.js';
import { MetricsServer } from './admin/metrics-server.js';
import { ReadinessServer } from './admin/readiness.js';
import { DenialRing } from './explain/denials.js';
import { WorkloadCertificateManager } from './identity/certificate-manager.js';
import type { CaClient } from './identity/ca-client.js';
import { EmbeddedCa } from './identity/embedded-ca.js';
import { IstioCaClient, type IstioCaClientOptions } from './identity/istio-ca-client.js';
import { DEFAULT_ISTIOD_ADDRESS } from './identity/istiod-channel.js';
import { enrolledIdentitiesOnNode } from './identity/node-authorization.js';
import { EbpfCapture } from './redirect/capture.js';
import { DnsProxy, type DnsUpstream } from './dns/dns-proxy.js';
import { nodeDnsUpstream } from './dns/node-upstream.js';
import { installReplySteering } from './redirect/reply-steering.js';
import { kubepodsResolver, podCgroupFromTemplate } from './redirect/pod-cgroups.js';
import { AgentHandover, type HandoverMode } from './lifecycle/handover.js';
import { type SourceChoice, createMeshSource, describeSource } from './sources/source.js';
import type { MeshSnapshot } from './state/model.js';
import { WorkloadStore } from './state/store.js';
import { type Closable, type DataPath, drainDataPath, startDataPath } from './node-data-path.js';
import { runCommand, requireTool } from './system/commands.js';
import type { Logger } from './telemetry/log.js';
import { MeshMetrics } from './telemetry/metrics.js';
import { type OtlpMetricsConfig, OtlpMetricsPusher } from './telemetry/otlp-metrics.js';
import type { EngineOptions } from './tunnel/engine/native.js';
import type { LiveConnections } from './tunnel/live-connections.js';
import type { HttpServerLimits } from './l7/proxy/http-servers.js';
import type { PathNormalization } from './l7/request-target.js';
import { RequestTracer, type TracingConfig } from './telemetry/tracing.js';
import type { FlowLogTarget } from './telemetry/flow-log.js';

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

export class NodeAgent {
  readonly store = new WorkloadStore();
  readonly metrics = new MeshMetrics(AMBIT_VERSION);
  /** The recent denials of this node's inbound side, for `ambit explain --last-denied`. */
  readonly denials = new DenialRing();
  /**
   * One span per request on each side (the outbound HTTP proxy's CLIENT spans, the inbound one's SERVER
   * spans); made by start(), which loads OpenTelemetry only with --otlp-endpoint.
   */
  #tracer: RequestTracer | undefined;
  readonly #closers: Closable[] = [];
  #dataPath: DataPath | undefined;
  #certificates: WorkloadCertificateManager | undefined;
  #ready = false;
  #handover: AgentHandover | undefined;

  constructor(
    private readonly config: NodeAgentConfig,
    private readonly log: Logger,
    private readonly quit: (reason: string) => void,
  ) {}

  /** Starts everything; resolves once the agent is ready, rejects with an actionable message. */
  async start(): Promise<void> {
    const { config, log, store } = this;
    // Where a (re)start's time goes, for the 'agent ready' line: until here, Node's start and the modules.
    const startup = new StartupTimeline();
    const tracer = config.tracing ? await RequestTracer.create(config.tracing, config.node) : RequestTracer.disabled();
    // Telemetry resources set sampling, span reporting and custom tags per workload.
    tracer.followTelemetry(store);
    this.#tracer = tracer;
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
    startup.mark('configuration');
    if (config.capture.mode === 'ebpf') await this.#startCapture(config.capture, first.snapshot, startup, tracer);
    await source.watch();
    this.#ready = true;
    startup.mark('ready');
    log.info({ source: describeSource(config.source), capture: config.capture.mode, startupMs: startup.marks }, 'agent ready; watching the configuration for changes');
    await this.#handover.serving();
    if ((config.handover ?? 'retire') === 'retire') this.#handover.retirePredecessor();
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
    if (dataPath) await drainDataPath(dataPath, drainMs, this.log);
    for (const closable of this.#closers.reverse()) await closable.close();
    // Last: the spans of the requests that finished during the drain go out too.
    await this.#tracer?.shutdown().catch((err: Error) => this.log.warn({ err: err.message }, 'exporting the last request spans failed'));
  }

  async #startCapture(capture: Extract<CaptureConfig, { mode: 'ebpf' }>, snapshot: MeshSnapshot, startup: StartupTimeline, tracer: RequestTracer): Promise<void> {
    const { config, log, store } = this;
    const nodeIp = snapshot.nodes.get(config.node)?.internalIp;
    if (!nodeIp) throw new Error(`node "${config.node}" has no InternalIP in the configuration; eBPF capture redirects pods to that address`);
    // The pods' certificates are asked for first: the CA signs them while the kernel verifies and loads
    // the eBPF programs. The listeners still open only after both the CA and capture are in place, and a
    // connection accepted before its pod's certificate is issued waits for it (never leaves in the clear).
    const certificates = await this.#startIdentity(snapshot, startup);
    startup.mark('certificateAuthority');
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
    startup.mark('ebpf');

    const dataPath = await startDataPath({
      config,
      capture,
      nodeIp,
      podCgroup,
      store,
      log,
      metrics: this.metrics,
      denials: this.denials,
      tracer,
      certificates,
      originalDestination: (socket) => ebpf.originalDestination(socket),
      closeOnStop: (closable) => this.#closers.push(closable),
    });
    this.#dataPath = dataPath;
    startup.mark('listeners');

    await ebpf.reconcile(snapshot);
    store.subscribe((next) => void ebpf.reconcile(next));
    const socks = dataPath.socks;
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
   * The CA (plugged in, or the agent's own root in its state dir) and the certificates of this node's
   * enrolled pods, fetched ahead of their first connection and following the store as pods come and go.
   */
  async #startIdentity(snapshot: MeshSnapshot, startup: StartupTimeline): Promise<WorkloadCertificateManager> {
    const { config, log, store } = this;
    const { identity } = config;
    const certificates = new WorkloadCertificateManager({ caClient: await this.#caClient(), ttlSeconds: identity.certTtlSeconds, log });
    this.#certificates = certificates;
    this.#closers.push(certificates);
    const first = enrolledIdentitiesOnNode(snapshot, config.node);
    certificates.track(first);
    store.subscribe((next) => certificates.track(enrolledIdentitiesOnNode(next, config.node)));
    // The requests track() started, awaited apart: the moment a restarted agent can carry its pods' connections.
    void Promise.all([...first].map((id) => certificates.fetch(id))).then((results) => {
      const issued = results.filter((r) => r.ok).length;
      log.info({ issued, identities: first.size, startupMs: startup.since() }, `workload certificates: ${issued} of the ${first.size} identities enrolled on this node at start issued`);
    });
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

  async #serve(name: string, server: { listen(host: string, port: number): Promise<{ address: string; port: number }>; close(): Promise<void> }, at: ListenAddress): Promise<void> {
    const bound = await server.listen(at.host, at.port).catch((err: Error) => {
      throw new Error(`cannot listen on ${at.host}:${at.port} for the ${name} server: ${err.message}; is another agent running here? (choose another with --${name}-address)`);
    });
    this.#closers.push(server);
    this.log.info({ address: bound, server: name }, `${name} server listening on ${bound.address}:${bound.port}`);
  }

}

/**
 * Milliseconds from the process's start (Node's performance clock starts with the process) to each
 * step of an agent's start; the first mark is when start() is called, after Node and the modules loaded.
 */
class StartupTimeline {
  readonly marks: Record<string, number> = {};

  constructor() {
    this.mark('modulesLoaded');
  }

  mark(step: string): void {
    this.marks[step] = this.since();
  }

  since(): number {
    return Math.round(performance.now());
  }
}

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

/** The network device that holds an address: by default, where other nodes' traffic arrives. */
async function deviceHolding(ip: string): Promise<string> {
  const links = JSON.parse(await runCommand(requireTool('ip', 'iproute2'), ['-j', 'addr', 'show'])) as { ifname: string; addr_info?: { local?: string }[] }[];
  const device = links.find((l) => l.addr_info?.some((a) => a.local === ip))?.ifname;
  if (!device) throw new Error(`no device holds the node address ${ip} in this network namespace; pass --uplink <device>`);
  return device;
}

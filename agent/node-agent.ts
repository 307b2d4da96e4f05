// One node agent, assembled: the state source feeding the store, eBPF capture following it, the
// outbound and inbound listeners, and the admin, readiness and metrics servers. `ambit run` builds
// one from its flags; tests build one in-process.

import type { Server, Socket } from 'node:net';
import { AdminServer } from './admin/admin-server.js';
import { MetricsServer } from './admin/metrics-server.js';
import { ReadinessServer } from './admin/readiness.js';
import { EbpfCapture, INBOUND_PORT, OUTBOUND_PORT } from './redirect/capture.js';
import { connectTransparent, transparentListen } from './redirect/bpf-binding.js';
import { LocalFileSource } from './sources/local-files.js';
import type { MeshSnapshot, Workload } from './state/model.js';
import { WorkloadStore } from './state/store.js';
import { runCommand, requireTool } from './system/commands.js';
import { ConnectionTelemetry } from './telemetry/connections.js';
import type { Logger } from './telemetry/log.js';
import { MeshMetrics } from './telemetry/metrics.js';
import type { Address } from './tunnel/destination.js';
import { InboundPlaintextProxy } from './tunnel/inbound-plaintext.js';
import { OutboundProxy } from './tunnel/outbound.js';

export const AMBIT_VERSION = '0.1.0';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export type CaptureConfig =
  | { readonly mode: 'none' }
  | {
      readonly mode: 'ebpf';
      /** e.g. `/sys/fs/cgroup/unified/kubepods/{namespace}.{name}`; see `podCgroupPath`. */
      readonly podCgroupTemplate: string;
      readonly scope: string;
      /** Devices other nodes' traffic arrives on; default: the one holding the node's InternalIP. */
      readonly uplinks: readonly string[];
    };

export interface NodeAgentConfig {
  readonly node: string;
  readonly paths: readonly string[];
  readonly trustDomain: string;
  readonly clusterDomain: string;
  readonly readiness: ListenAddress;
  readonly admin: ListenAddress;
  readonly metrics: ListenAddress;
  readonly capture: CaptureConfig;
}

/** Fills a pod cgroup template's `{namespace}`, `{name}` and `{uid}` placeholders. */
export function podCgroupPath(template: string, workload: Workload): string {
  return template.replaceAll('{namespace}', workload.namespace).replaceAll('{name}', workload.name).replaceAll('{uid}', workload.uid);
}

type Closable = { close(): Promise<void> | void };

export class NodeAgent {
  readonly store = new WorkloadStore();
  readonly metrics = new MeshMetrics(AMBIT_VERSION);
  readonly #closers: Closable[] = [];
  #ready = false;

  constructor(
    private readonly config: NodeAgentConfig,
    private readonly log: Logger,
    private readonly quit: (reason: string) => void,
  ) {}

  /** Starts everything; resolves once the agent is ready, rejects with an actionable message. */
  async start(): Promise<void> {
    const { config, log, store } = this;
    const readiness = new ReadinessServer(() => (this.#ready ? undefined : store.current ? 'capture not set up yet' : 'configuration not loaded yet'));
    await this.#serve('readiness', readiness, config.readiness);
    await this.#serve('admin', new AdminServer({ store, node: config.node, log, quit: () => this.quit('POST /quitquitquit') }), config.admin);
    await this.#serve('metrics', new MetricsServer(this.metrics.registry), config.metrics);

    const source = new LocalFileSource({ paths: config.paths, trustDomain: config.trustDomain, clusterDomain: config.clusterDomain }, store, log);
    this.#closers.push(source);
    const first = await source.load();
    if (config.capture.mode === 'ebpf') await this.#startCapture(config.capture, first.snapshot);
    await source.watch();
    this.#ready = true;
    log.info({ paths: config.paths, capture: config.capture.mode }, 'agent ready; watching the configuration for changes');
  }

  async stop(): Promise<void> {
    // Capture stays attached: while the agent is away, enrolled pods' connections are refused
    // (nothing listens on 15001/15006), never sent around the mesh.
    for (const closable of this.#closers.reverse()) await closable.close();
  }

  async #startCapture(capture: Extract<CaptureConfig, { mode: 'ebpf' }>, snapshot: MeshSnapshot): Promise<void> {
    const { config, log, store } = this;
    const nodeIp = snapshot.nodes.get(config.node)?.internalIp;
    if (!nodeIp) throw new Error(`node "${config.node}" has no InternalIP in the configuration; eBPF capture redirects pods to that address`);
    const uplinks = capture.uplinks.length > 0 ? capture.uplinks : [await deviceHolding(nodeIp)];
    const started = await EbpfCapture.start({
      scope: capture.scope,
      node: config.node,
      nodeIp,
      uplinks,
      podCgroup: (w) => podCgroupPath(capture.podCgroupTemplate, w),
      log,
    });
    if (!started.ok) throw new Error(`eBPF capture: ${started.error.message}`);
    const ebpf = started.value;
    this.metrics.registerRedirectDecisions(() => ebpf.counters());

    const telemetry = new ConnectionTelemetry(this.metrics, log.child({ target: 'access' }));
    const connectAsClient = async (sourceIp: string, destination: Address): Promise<Socket | string> => {
      const connected = await connectTransparent(sourceIp, destination);
      return connected.ok ? connected.value : connected.error.message;
    };
    const outbound = new OutboundProxy({ node: config.node, store, telemetry, log, originalDestination: (s) => ebpf.originalDestination(s), connectAsClient });
    await this.#listenNet('outbound', outbound.server, { host: nodeIp, port: OUTBOUND_PORT });
    const inbound = new InboundPlaintextProxy({ node: config.node, store, telemetry, connectAsClient });
    const fd = transparentListen('0.0.0.0', INBOUND_PORT);
    if (!fd.ok) throw new Error(`inbound listener: ${fd.error.message}`);
    await this.#listenNet('inbound', inbound.server, { fd: fd.value });

    await ebpf.reconcile(snapshot);
    store.subscribe((next) => void ebpf.reconcile(next));
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
      server.listen(options, () => {
        this.#closers.push({ close: () => new Promise<void>((r) => server.close(() => r())) });
        this.log.info({ listener: name, address: server.address() }, `${name} listener ready`);
        resolve();
      });
    });
  }
}

/** The network device that holds an address: by default, where other nodes' traffic arrives. */
async function deviceHolding(ip: string): Promise<string> {
  const links = JSON.parse(await runCommand(requireTool('ip', 'iproute2'), ['-j', 'addr', 'show'])) as { ifname: string; addr_info?: { local?: string }[] }[];
  const device = links.find((l) => l.addr_info?.some((a) => a.local === ip))?.ifname;
  if (!device) throw new Error(`no device holds the node address ${ip} in this network namespace; pass --uplink <device>`);
  return device;
}

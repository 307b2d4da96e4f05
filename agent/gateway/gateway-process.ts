// `ambit gateway` assembled: the mesh source feeding the store, the gateway pod's own certificate (from
// istiod's CA API, or an embedded CA sharing the mesh's root), the east-west HBONE listener on its own
// engine, Istio's TCP metrics of every tunnel on the metrics port, a readiness endpoint (Istio's gateway
// status port) that says why the gateway cannot serve, and a drain on stop.

import type { AddressInfo } from 'node:net';
import { MetricsServer } from '../admin/metrics-server.js';
import { ReadinessServer } from '../admin/readiness.js';
import { EmbeddedCa } from '../identity/embedded-ca.js';
import type { CaClient } from '../identity/ca-client.js';
import { WorkloadCertificateManager } from '../identity/certificate-manager.js';
import { IstioCaClient, type IstioCaClientOptions } from '../identity/istio-ca-client.js';
import type { Workload } from '../state/model.js';
import { WorkloadStore } from '../state/store.js';
import { type SourceChoice, createMeshSource, describeSource } from '../sources/source.js';
import { ConnectionTelemetry } from '../telemetry/connections.js';
import type { Logger } from '../telemetry/log.js';
import { MeshMetrics } from '../telemetry/metrics.js';
import { ConnectionFlows } from '../tunnel/connection-flow.js';
import type { EngineOptions } from '../tunnel/engine/native.js';
import { EngineHost } from '../tunnel/hbone/engine-host.js';
import { LiveConnections } from '../tunnel/live-connections.js';
import { AMBIT_VERSION, type ListenAddress } from '../node-agent.js';
import { EastWestGateway } from './east-west-gateway.js';

export interface GatewayProcessConfig {
  readonly source: SourceChoice;
  readonly trustDomain: string;
  readonly clusterDomain: string;
  /** This cluster's ID: sent to the CA, and the `*_cluster` label of the workloads in the metrics. */
  readonly clusterId: string;
  /** The gateway's own pod, `namespace/name`: its identity and the AuthorizationPolicies that select it. */
  readonly pod: string;
  readonly hbone: ListenAddress;
  readonly readiness: ListenAddress;
  /** Prometheus' `/metrics` (Istio's 15020). */
  readonly metrics: ListenAddress;
  /** On stop, how long open tunnels may finish after every client got GOAWAY. */
  readonly drainMs: number;
  /** The native engine's threads and per-peer limits (`--hbone-*`, agent/cli/hbone-flags.ts). */
  readonly engine: EngineOptions;
  readonly identity:
    | { readonly ca: 'istiod'; readonly istiod: Omit<IstioCaClientOptions, 'clusterId'>; readonly certTtlSeconds: number }
    | { readonly ca: 'embedded'; readonly stateDir: string; readonly caDir?: string; readonly certTtlSeconds: number };
}

/** What the gateway needs to serve, checked at every readiness probe. */
interface Serving {
  readonly store: WorkloadStore;
  readonly certificates: WorkloadCertificateManager;
  readonly host: EngineHost;
  readonly gateway: EastWestGateway;
  readonly live: LiveConnections;
}

export class GatewayProcess {
  readonly #closers: { close(): Promise<void> | void }[] = [];
  readonly metrics = new MeshMetrics(AMBIT_VERSION);
  #serving: Serving | undefined;
  #draining = false;
  /** Where it listens once started (port 0 in the configuration becomes the port bound). */
  #listening: { hbone: AddressInfo; readiness: AddressInfo; metrics: AddressInfo } | undefined;

  constructor(
    private readonly config: GatewayProcessConfig,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const { config, log } = this;
    const store = new WorkloadStore();
    const readiness = await this.#serve('readiness', new ReadinessServer(() => this.#notReadyBecause()), config.readiness);
    const metrics = await this.#serve('metrics', new MetricsServer(this.metrics.registry), config.metrics);
    const source = await createMeshSource(config.source, { trustDomain: config.trustDomain, clusterDomain: config.clusterDomain }, store, log);
    this.#closers.push(source);
    await source.load();
    await source.watch();
    const self = await ownPod(store, config.pod, log);
    const certificates = new WorkloadCertificateManager({ caClient: await this.#caClient(store, self), ttlSeconds: config.identity.certTtlSeconds, log });
    this.#closers.push(certificates);
    const issued = await certificates.fetch(self.identity);
    if (!issued.ok) throw new Error(`the gateway's certificate for ${self.identity}: ${issued.error.message}`);
    certificates.track([self.identity]);
    const host = EngineHost.start({}, config.engine);
    this.#closers.push(host);
    this.metrics.registerHboneEngine(() => ({ ...host.engine.counters() }));
    this.metrics.registerHboneConnectionEnds(() => host.connectionEnds());
    const telemetry = new ConnectionTelemetry(this.metrics, log.child({ target: 'access' }), { store, clusterId: config.clusterId });
    const live = new LiveConnections(store, log);
    this.#closers.push(telemetry, live);
    const gateway = new EastWestGateway({ store, certificates, identity: self.identity, workloadKey: config.pod, host, flows: new ConnectionFlows(telemetry, live), log: log.child({ target: 'gateway' }) });
    const bound = await gateway.listen(config.hbone.port, config.hbone.host).catch((err: Error) => {
      throw new Error(`the east-west gateway cannot listen on ${config.hbone.host}:${config.hbone.port}: ${err.message}; is another gateway or agent using the port?`);
    });
    this.#listening = { hbone: bound, readiness, metrics };
    this.#serving = { store, certificates, host, gateway, live };
    log.info({ address: bound, identity: self.identity, network: self.network ?? '', source: describeSource(config.source) }, `east-west gateway ready on ${bound.address}:${bound.port} as ${self.identity}`);
  }

  /** The HBONE, readiness and metrics addresses bound, once started. */
  get listening(): { readonly hbone: AddressInfo; readonly readiness: AddressInfo; readonly metrics: AddressInfo } | undefined {
    return this.#listening;
  }

  /**
   * Graceful stop: readiness turns false, every client gets GOAWAY (no new tunnel here), open tunnels
   * may finish for `drainMs`, then what is left is cut and everything closed.
   */
  async stop(drainMs = this.config.drainMs): Promise<void> {
    this.#draining = true;
    const serving = this.#serving;
    this.#serving = undefined;
    if (serving) {
      serving.host.engine.drain(drainMs);
      const closed = serving.gateway.close(drainMs);
      await serving.live.drained(drainMs);
      if (serving.live.size > 0) this.log.info({ open: serving.live.size }, `drain deadline (${drainMs} ms) passed; closing the tunnels still open`);
      serving.live.closeAll('the gateway is shutting down');
      await closed;
    }
    for (const closer of this.#closers.splice(0).reverse()) await closer.close();
  }

  /** Why a load balancer should not send clients here now; undefined when the gateway can serve. */
  #notReadyBecause(): string | undefined {
    if (this.#draining) return 'the gateway is draining (shutting down)';
    const serving = this.#serving;
    if (!serving) return 'the gateway is starting (mesh configuration, certificate, listener)';
    const self = serving.store.current?.workloads.get(this.config.pod);
    if (!self) return `the gateway's own pod ${this.config.pod} is not in the mesh configuration`;
    if (!serving.certificates.current(self.identity)) return `no valid certificate for ${self.identity}: the CA has not answered (see the log)`;
    return undefined;
  }

  async #serve(name: string, server: ReadinessServer | MetricsServer, at: ListenAddress): Promise<AddressInfo> {
    const bound = await server.listen(at.host, at.port).catch((err: Error) => {
      throw new Error(`the gateway's ${name} endpoint cannot listen on ${at.host}:${at.port}: ${err.message}; is another gateway or agent using the port?`);
    });
    this.#closers.push(server);
    return bound;
  }

  /** istiod's CA with the gateway's own token (it asks for its own identity), or the mesh's root in --ca-dir. */
  async #caClient(store: WorkloadStore, self: Workload): Promise<CaClient> {
    const { identity } = this.config;
    if (identity.ca === 'istiod') {
      const client = new IstioCaClient({ ...identity.istiod, clusterId: this.config.clusterId, impersonate: false });
      this.#closers.push(client);
      return client;
    }
    const node = self.node ?? 'gateway';
    const ca = await EmbeddedCa.open({
      stateDir: identity.stateDir,
      ...(identity.caDir !== undefined ? { pluggedInDir: identity.caDir } : {}),
      trustDomain: this.config.trustDomain,
      identitiesOnNode: (asked) => new Set(asked === node && store.current?.workloads.get(this.config.pod)?.identity === self.identity ? [self.identity] : []),
    });
    if (!ca.ok) throw new Error(`certificate authority: ${ca.error.message}`);
    return ca.value.clientFor(node);
  }
}

/** The gateway's own pod in the snapshot, waited for a while: its Deployment may be seen before its pod. */
async function ownPod(store: WorkloadStore, key: string, log: Logger): Promise<Workload> {
  const deadline = Date.now() + 60_000;
  for (let warned = false; ; warned = true) {
    const self = store.current?.workloads.get(key);
    if (self) return self;
    if (Date.now() > deadline) throw new Error(`the gateway's own pod ${key} is not in the mesh configuration; pass --pod <namespace/name> (default: $POD_NAMESPACE/$POD_NAME)`);
    if (!warned) log.info({ pod: key }, `waiting for the gateway's own pod ${key} to appear in the configuration`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

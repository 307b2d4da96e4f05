// `ambit gateway` assembled: the mesh source feeding the store, the gateway pod's own certificate (from
// istiod's CA API, or an embedded CA sharing the mesh's root), the east-west HBONE listener, and a
// readiness endpoint (Istio's gateway status port) that answers once the gateway can serve.

import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EmbeddedCa } from '../identity/embedded-ca.js';
import type { CaClient } from '../identity/ca-client.js';
import { WorkloadCertificateManager } from '../identity/certificate-manager.js';
import { IstioCaClient, type IstioCaClientOptions } from '../identity/istio-ca-client.js';
import type { Workload } from '../state/model.js';
import { WorkloadStore } from '../state/store.js';
import { type SourceChoice, createMeshSource, describeSource } from '../sources/source.js';
import type { Logger } from '../telemetry/log.js';
import type { ListenAddress } from '../node-agent.js';
import { EastWestGateway } from './east-west-gateway.js';

export interface GatewayProcessConfig {
  readonly source: SourceChoice;
  readonly trustDomain: string;
  readonly clusterDomain: string;
  /** The gateway's own pod, `namespace/name`: its identity and the AuthorizationPolicies that select it. */
  readonly pod: string;
  readonly hbone: ListenAddress;
  readonly readiness: ListenAddress;
  readonly identity:
    | { readonly ca: 'istiod'; readonly istiod: IstioCaClientOptions; readonly certTtlSeconds: number }
    | { readonly ca: 'embedded'; readonly stateDir: string; readonly caDir?: string; readonly certTtlSeconds: number };
}

export class GatewayProcess {
  readonly #closers: { close(): Promise<void> | void }[] = [];
  #ready = false;
  /** Where it listens once started (port 0 in the configuration becomes the port bound). */
  #listening: { hbone: AddressInfo; readiness: AddressInfo } | undefined;

  constructor(
    private readonly config: GatewayProcessConfig,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const { config, log } = this;
    const store = new WorkloadStore();
    const readiness = await this.#serveReadiness();
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
    const gateway = new EastWestGateway({ store, certificates, identity: self.identity, workloadKey: config.pod, log: log.child({ target: 'gateway' }) });
    const bound = await gateway.listen(config.hbone.port, config.hbone.host).catch((err: Error) => {
      throw new Error(`the east-west gateway cannot listen on ${config.hbone.host}:${config.hbone.port}: ${err.message}; is another gateway or agent using the port?`);
    });
    this.#closers.unshift(gateway);
    this.#listening = { hbone: bound, readiness };
    this.#ready = true;
    log.info({ address: bound, identity: self.identity, network: self.network ?? '', source: describeSource(config.source) }, `east-west gateway ready on ${bound.address}:${bound.port} as ${self.identity}`);
  }

  /** The HBONE and readiness addresses bound, once started. */
  get listening(): { readonly hbone: AddressInfo; readonly readiness: AddressInfo } | undefined {
    return this.#listening;
  }

  async stop(): Promise<void> {
    this.#ready = false;
    for (const closer of this.#closers.splice(0)) await closer.close();
  }

  /** istiod's CA with the gateway's own token (it asks for its own identity), or the mesh's root in --ca-dir. */
  async #caClient(store: WorkloadStore, self: Workload): Promise<CaClient> {
    const { identity } = this.config;
    if (identity.ca === 'istiod') {
      const client = new IstioCaClient({ ...identity.istiod, impersonate: false });
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

  /** GET /healthz/ready: 200 once the gateway listens, 503 before and while stopping. */
  #serveReadiness(): Promise<AddressInfo> {
    const { readiness } = this.config;
    const server: Server = createServer((request, response) => {
      const ready = request.url === '/healthz/ready' && this.#ready;
      response.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ready\n' : 'not ready\n');
    });
    this.#closers.push({ close: () => new Promise<void>((resolve) => server.close(() => resolve())) });
    return new Promise((resolve, reject) => {
      server.once('error', (err) => reject(new Error(`the readiness endpoint cannot listen on ${readiness.host}:${readiness.port}: ${err.message}`)));
      server.listen(readiness.port, readiness.host, () => resolve(server.address() as AddressInfo));
    });
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

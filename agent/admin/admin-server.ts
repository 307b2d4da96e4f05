// The admin server (port 15000, loopback only, as ztunnel): `/config_dump` for `ambit zc` and
// `istioctl ztunnel-config`, `/logging` to change the log level live, `/quitquitquit` to stop.
// Loopback keeps other hosts out, not the browser on this one: browser-guard.ts refuses what a web
// page could make it send (DNS rebinding, cross-site POSTs) with 403.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { browserRefusal } from './browser-guard.js';
import { closeHttp, listenHttp } from './listen.js';
import type { CertificateStatus } from '../identity/certificate-manager.js';
import type { WorkloadStore } from '../state/store.js';
import { type Logger, isLogLevel } from '../telemetry/log.js';
import type { LiveConnection } from '../tunnel/live-connections.js';
import { buildConfigDump } from './config-dump.js';
import { EXPLAIN_PATHS, type ExplainEndpointOptions, serveExplain } from './explain-endpoints.js';
import { type ConsoleOptions, isConsolePath, serveConsole } from '../console/console-endpoints.js';

export interface AdminServerOptions {
  readonly store: WorkloadStore;
  readonly node: string;
  readonly log: Logger;
  /** Called by POST /quitquitquit; the agent shuts down as on SIGTERM. */
  readonly quit: () => void;
  /**
   * The certificates this node holds and the connections it relays, asked at each /config_dump: the
   * data path starts after this server and may not run at all (--capture none), so these are read
   * late, and an empty list is a valid answer.
   */
  readonly certificates?: () => readonly CertificateStatus[];
  readonly connections?: () => readonly LiveConnection[];
  /** `ambit explain`: the denial ring and the path normalization the data path uses. */
  readonly explain?: Pick<ExplainEndpointOptions, 'denials' | 'pathNormalization'>;
  /** The node console (GET /console): the registry its graph and capture counters are read from, and the capture's attached programs. */
  readonly console?: Pick<ConsoleOptions, 'registry' | 'captureLinks'>;
}

const INDEX = 'ambit admin: GET /config_dump, GET|POST /logging[?level=debug], POST /quitquitquit, POST /explain, POST /explain/admission, GET /explain/last-denied, GET /console (the node console)\n';

export class AdminServer {
  readonly #server: Server;
  #boundHost = '127.0.0.1';

  constructor(private readonly options: AdminServerOptions) {
    this.#server = createServer((req, res) => this.#handle(req, res));
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    this.#boundHost = host;
    return listenHttp(this.#server, host, port);
  }

  close(): Promise<void> {
    return closeHttp(this.#server);
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://admin');
    const text = (status: number, body: string): void => void res.writeHead(status, { 'content-type': 'text/plain' }).end(body);
    const refusal = browserRefusal(req, this.#boundHost);
    if (refusal) {
      this.options.log.warn({ method: req.method, path: url.pathname, host: req.headers.host, origin: req.headers.origin }, `admin server refused a request: ${refusal}`);
      return text(403, `refused: ${refusal}\n`);
    }
    if (EXPLAIN_PATHS.has(url.pathname)) {
      const options: ExplainEndpointOptions = { node: this.options.node, snapshot: () => this.options.store.current, ...this.options.explain };
      serveExplain(req, res, url.pathname, options).catch((err: Error) => {
        // An explanation that cannot be built is a bug to report, never a reason to take the agent down.
        this.options.log.error({ err }, `${url.pathname} failed`);
        if (!res.headersSent) text(500, `explaining failed: ${err.message}\n`);
      });
      return;
    }
    if (isConsolePath(url.pathname)) {
      const options: ConsoleOptions = { node: this.options.node, certificates: () => this.options.certificates?.() ?? [], connections: () => this.options.connections?.() ?? [], ...this.options.console };
      serveConsole(req, res, url.pathname, options).catch((err: Error) => {
        this.options.log.error({ err }, `${url.pathname} failed`);
        if (!res.headersSent) text(500, `the console failed: ${err.message}\n`);
      });
      return;
    }
    switch (url.pathname) {
      case '/': {
        text(200, INDEX);
        return;
      }
      case '/config_dump': {
        const snapshot = this.options.store.current;
        if (!snapshot) return text(503, 'no configuration loaded yet\n');
        let body: string;
        try {
          const runtime = { certificates: this.options.certificates?.() ?? [], connections: this.options.connections?.() ?? [] };
          body = JSON.stringify(buildConfigDump(snapshot, this.options.node, runtime), null, 2);
        } catch (err) {
          // A dump that cannot be built is a bug to report, never a reason to take the agent down.
          this.options.log.error({ err }, 'building /config_dump failed');
          return text(500, `building the config dump failed: ${(err as Error).message}\n`);
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(body);
        return;
      }
      case '/logging': {
        const level = url.searchParams.get('level');
        if (level === null) return text(200, `current log level is ${this.options.log.level}\n`);
        if (req.method !== 'POST') return text(405, 'change the level with POST /logging?level=<trace|debug|info|warn|error>\n');
        if (!isLogLevel(level)) return text(400, `unknown level ${JSON.stringify(level)}; expected trace, debug, info, warn or error\n`);
        this.options.log.level = level;
        this.options.log.info({ level }, `log level set to ${level} through the admin server`);
        return text(200, `current log level is ${level}\n`);
      }
      case '/quitquitquit': {
        if (req.method !== 'POST') return text(405, 'POST /quitquitquit stops the agent\n');
        text(200, 'OK\n');
        this.options.quit();
        return;
      }
      default:
        text(404, `not found\n${INDEX}`);
    }
  }
}

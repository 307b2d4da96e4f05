// The Prometheus endpoint (port 15020, as ztunnel): `/metrics` and `/stats/prometheus` serve the same
// registry in the text exposition format.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { closeHttp, listenHttp } from './listen.js';

export class MetricsServer {
  readonly #server: Server;

  constructor(registry: Registry) {
    this.#server = createServer((req, res) => {
      const path = req.url?.split('?')[0];
      if (req.method !== 'GET' || (path !== '/metrics' && path !== '/stats/prometheus')) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics or /stats/prometheus\n');
        return;
      }
      registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`collecting metrics failed: ${err.message}\n`),
      );
    });
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return listenHttp(this.#server, host, port);
  }

  close(): Promise<void> {
    return closeHttp(this.#server);
  }
}

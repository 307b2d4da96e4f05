// The readiness server (port 15021, as ztunnel): `/healthz/ready` answers 200 once the agent can serve,
// 503 with the reason until then. Kubernetes and the lab both gate on it.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { closeHttp, listenHttp } from './listen.js';

/** undefined when ready; otherwise what the agent is still waiting for. */
export type ReadinessCheck = () => string | undefined;

export class ReadinessServer {
  readonly #server: Server;

  constructor(check: ReadinessCheck) {
    this.#server = createServer((req, res) => {
      if (req.method !== 'GET' || req.url?.split('?')[0] !== '/healthz/ready') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: the readiness server answers GET /healthz/ready\n');
        return;
      }
      const waitingFor = check();
      if (waitingFor === undefined) res.writeHead(200, { 'content-type': 'text/plain' }).end('ready\n');
      else res.writeHead(503, { 'content-type': 'text/plain' }).end(`not ready: ${waitingFor}\n`);
    });
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return listenHttp(this.#server, host, port);
  }

  close(): Promise<void> {
    return closeHttp(this.#server);
  }
}

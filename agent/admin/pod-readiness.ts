// Per-pod readiness on a Unix socket in the agent's state directory: `GET /pods/<namespace>/<name>`
// answers 200 once what the agent sets up inside that pod (its SOCKS5 listener) is in place, 503 with
// the reason until then. Whoever starts the pod's containers asks first, as Istio's CNI plugin holds a
// pod's sandbox until ztunnel has taken it over; the lab's kubelet does. A Unix socket owned by root
// (mode 0600), not a port: only the node's root may make the agent look into a pod.

import { chmod, rename, rm } from 'node:fs/promises';
import { type Server, createServer } from 'node:http';
import type { PodSocksState } from '../tunnel/socks5/pod-listeners.js';
import { closeHttp } from './listen.js';

export const POD_READINESS_SOCKET = 'pods.sock';

/** Undefined: the agent has nothing to set up in that pod, so nothing to wait for. */
export type PodReadinessCheck = (key: string) => Promise<PodSocksState | undefined>;

export class PodReadinessServer {
  readonly #server: Server;

  constructor(check: PodReadinessCheck) {
    this.#server = createServer((req, res) => {
      const match = /^\/pods\/([a-z0-9.-]+)\/([a-z0-9.-]+)$/.exec(req.url ?? '');
      if (req.method !== 'GET' || !match) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: ask GET /pods/<namespace>/<name>\n');
        return;
      }
      const key = `${match[1]}/${match[2]}`;
      void check(key).then((state) => {
        if (!state || state.ready) res.writeHead(200, { 'content-type': 'text/plain' }).end(state ? 'ready\n' : 'nothing to set up\n');
        else res.writeHead(503, { 'content-type': 'text/plain' }).end(`not ready: ${state.reason}\n`);
      });
    });
  }

  /**
   * Listens on `path`, replacing a socket file a previous agent left. Bound under a name of its own and
   * renamed into place: Node unlinks a Unix socket's bound path when it closes, and during an upgrade
   * the old agent closes after the new one has taken `path` over.
   */
  async listen(path: string): Promise<void> {
    const own = `${path}.${process.pid}`;
    await rm(own, { force: true });
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(own, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    await chmod(own, 0o600);
    await rename(own, path);
  }

  close(): Promise<void> {
    return closeHttp(this.#server);
  }
}

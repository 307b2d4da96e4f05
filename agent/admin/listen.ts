// Binding and closing the agent's small HTTP servers (admin, readiness, metrics) the same way.

import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Binds and resolves with the bound address (port 0 picks a free one, for tests). */
export function listenHttp(server: Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // SO_REUSEPORT: an upgrading agent binds beside the one it replaces (agent/lifecycle/handover.ts).
    server.listen({ port, host, reusePort: true }, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

export function closeHttp(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    // Keep-alive clients (Prometheus, a curl loop) must not hold shutdown open.
    server.closeAllConnections();
  });
}

// The bench's Node floor: node-h2/tunnel-process.ts on each node, a bare HTTP/2 CONNECT tunnel over
// mutual TLS 1.3 between the same two hops as Ambit and HAProxy. node-a's takes plain TCP from the
// unenrolled client on one port per upstream; node-b's dials the unenrolled server. Ambit's figures
// minus these are what Ambit itself costs; these against the targets are what Node itself allows.

import { join } from 'node:path';
import { ROOT } from './lab.js';
import { BaselineTunnel } from './baseline-tunnel.js';
import { NODE_H2_PORTS, NODE_IP, type NodeName } from './plan.js';

const PROCESS = join(ROOT, 'bench/capture/node-h2/tunnel-process.ts');
const tunnels = new BaselineTunnel('node-h2 tunnel', 'node');

/** A plain port on node-a and the upstream its connections are tunnelled to. */
export interface NodeH2Route {
  readonly plain: number;
  readonly upstream: string;
}

/**
 * Starts both sides: node-b's server on `tls`, node-a's client with `routes`. Resolves once both print
 * `ready`, or rejects with what they printed.
 */
export async function startNodeH2Tunnel(routes: readonly NodeH2Route[], tls: number = NODE_H2_PORTS.tls, nodeIp: Record<NodeName, string> = NODE_IP): Promise<void> {
  const dir = tunnels.makeCertificates();
  const node = (args: readonly string[]): string[] => [process.execPath, '--import', 'tsx', PROCESS, ...args];
  tunnels.start('node-b', node(['server', nodeIp['node-b'], String(tls), dir]));
  tunnels.start('node-a', node(['client', nodeIp['node-a'], nodeIp['node-b'], String(tls), dir, ...routes.map((r) => `${r.plain}=${r.upstream}`)]));
  await tunnels.ready(/^ready$/m, 30_000);
}

export const nodeH2Pids = (): Record<NodeName, number> => tunnels.pids();
export const nodeH2Stderr = (): string => tunnels.stderr();

/** Synchronous, so it also runs from a signal handler just before exit. */
export const stopNodeH2Tunnel = (): void => tunnels.stop();

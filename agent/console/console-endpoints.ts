// The node console on the admin server: the page (`/console`, its script compiled from page/console.ts)
// and the JSON it polls under /console/api/ (graph, flows, node), all read in-process.

import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import type { CertificateStatus } from '../identity/certificate-manager.js';
import type { CaptureLink } from '../redirect/capture-links.js';
import type { LiveConnection } from '../tunnel/live-connections.js';
import { CONSOLE_HTML } from './console-html.js';
import { readTrafficGraph } from './traffic-graph.js';

export interface ConsoleOptions {
  readonly node: string;
  /** The agent's metrics registry (absent: the graph and the capture counters are empty). */
  readonly registry?: Registry;
  readonly certificates: () => readonly CertificateStatus[];
  readonly connections: () => readonly LiveConnection[];
  /** The eBPF programs capture holds attached (absent or empty: no eBPF capture, or not started yet). */
  readonly captureLinks?: () => readonly CaptureLink[];
}

export const CONSOLE_PREFIX = '/console';

/** Whether the console serves `pathname`. */
export function isConsolePath(pathname: string): boolean {
  return pathname === CONSOLE_PREFIX || pathname.startsWith(`${CONSOLE_PREFIX}/`);
}

export async function serveConsole(req: IncomingMessage, res: ServerResponse, pathname: string, options: ConsoleOptions): Promise<void> {
  const send = (status: number, type: string, body: string): void =>
    // no-store: every poll must read the agent again; the CSP keeps the page to its own origin (no external assets).
    void res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'content-security-policy': "default-src 'self'; style-src 'self' 'unsafe-inline'" }).end(body);
  const json = (value: unknown): void => send(200, 'application/json', `${JSON.stringify(value)}\n`);
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', `GET ${pathname}\n`);
  switch (pathname) {
    case CONSOLE_PREFIX:
    case `${CONSOLE_PREFIX}/`:
      return send(200, 'text/html; charset=utf-8', CONSOLE_HTML);
    case `${CONSOLE_PREFIX}/console.js`: {
      const script = consoleScript();
      return script.ok ? send(200, 'text/javascript; charset=utf-8', script.text) : send(500, 'text/plain', `${script.error}\n`);
    }
    case `${CONSOLE_PREFIX}/api/graph`:
      return json(options.registry ? await readTrafficGraph(options.registry) : { at: Date.now(), workloads: [], edges: [] });
    case `${CONSOLE_PREFIX}/api/flows`:
      return json({ node: options.node, flows: options.connections().map(flowOf) });
    case `${CONSOLE_PREFIX}/api/node`:
      return json({
        node: options.node,
        certificates: options.certificates().map(certificateOf),
        capture: { decisions: await decisionCounters(options.registry), links: options.captureLinks?.() ?? [] },
      });
    default:
      return send(404, 'text/plain', `not found; the console is GET ${CONSOLE_PREFIX}, its data GET ${CONSOLE_PREFIX}/api/graph, /api/flows and /api/node\n`);
  }
}

function flowOf(c: LiveConnection): Record<string, unknown> {
  return {
    direction: c.direction,
    transport: c.transport,
    src: c.src,
    dst: c.dst,
    ...(c.originalDst !== undefined ? { originalDst: c.originalDst } : {}),
    ...(c.srcIdentity !== undefined ? { srcIdentity: c.srcIdentity } : {}),
    ...(c.dstIdentity !== undefined ? { dstIdentity: c.dstIdentity } : {}),
    ...(c.local ? { workload: `${c.local.namespace}/${c.local.name}` } : {}),
    startedAt: c.startedAt.toISOString(),
  };
}

function certificateOf(c: CertificateStatus): Record<string, unknown> {
  const notAfter = c.certificate?.notAfter;
  return {
    identity: c.identity,
    state: c.state,
    ...(notAfter ? { notAfter: notAfter.toISOString(), expiresInSeconds: Math.round((notAfter.getTime() - Date.now()) / 1000) } : {}),
    ...(c.error !== undefined ? { error: c.error } : {}),
  };
}

/** The capture's per-reason counters as /metrics shows them (read from the kernel at each call). */
async function decisionCounters(registry: Registry | undefined): Promise<Record<string, number>> {
  const metric = registry?.getSingleMetric('ambit_redirect_decisions_total');
  if (!metric) return {};
  const { values } = (await metric.get()) as { values: readonly { labels: Record<string, string | number | undefined>; value: number }[] };
  return Object.fromEntries(values.map((v) => [String(v.labels['reason']), v.value]));
}

type Script = { ok: true; text: string } | { ok: false; error: string };
let cached: Script | undefined;

/**
 * The page's script, compiled by the build next to this file (dist/agent/console/page/console.js);
 * run from the sources (tsx), this file sits in agent/console/ and the build's output in dist/.
 */
function consoleScript(): Script {
  if (cached?.ok) return cached;
  const places = [new URL('./page/console.js', import.meta.url), new URL('../../dist/agent/console/page/console.js', import.meta.url)];
  for (const place of places) {
    try {
      cached = { ok: true, text: readFileSync(place, 'utf8') };
      return cached;
    } catch {
      // the next place
    }
  }
  return { ok: false, error: `the console's script is not built (looked for ${places.map((p) => p.pathname).join(' and ')}); run \`make build\`` };
}

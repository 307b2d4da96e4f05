// The source agent's HTTP proxy in one process, no lab: what Ambit's L7 code costs per request on top
// of Node's own HTTP machinery. A client sends 1 KB POSTs, a server answers 1 KB, in three ways measured
// in the same run, each over keep-alive connections and again with a new client connection per request
// (what a client connection's set-up costs):
//   direct   client → server
//   node     client → a ten-line Node proxy (http.Server + http.request + pipe) → server: the floor any
//            Node HTTP proxy pays, one more server and client
//   ambit    client → OutboundHttpProxy (routing, balancing, retries, timeouts, request telemetry and
//            the access log, as agent/node-agent.ts wires it) → server
// Each variant runs in a fresh process (`node dist/...` code, not tsx: what the agent runs), rounds
// interleave the variants, and the report is CPU microseconds per request (process user+system, all
// threads) with ratios to the node floor. No HBONE, no kernel capture: capture.bench.ts and l7.bench.ts
// measure those in a lab.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import { type AddressInfo, type Socket, connect, createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from './capture/stats.js';
import { saveResults } from './lib/results.js';
import { backgroundBusyPercent } from './capture/process-usage.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DIST = join(ROOT, 'dist/agent');
const VARIANTS = ['direct', 'node', 'ambit'] as const;
type Variant = (typeof VARIANTS)[number];
const MODES = ['keep-alive', 'new-connection'] as const;
type Mode = (typeof MODES)[number];
const ROUNDS = 3;
/** Requests measured and sent before measuring, per mode: a new connection per request is slower. */
const REQUESTS: Record<Mode, number> = { 'keep-alive': 6000, 'new-connection': 3000 };
const WARMUP: Record<Mode, number> = { 'keep-alive': 2000, 'new-connection': 1000 };
const CONNECTIONS = 4;
const BODY = Buffer.alloc(1024, 'x');

const MESH = `
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {containers: [{name: app, command: [c]}]}
status: {podIP: 10.250.0.10}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: shop, labels: {app: server, version: v1}}
spec: {containers: [{name: app, command: [s], ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 10.250.0.20}
---
apiVersion: v1
kind: Service
metadata: {name: server, namespace: shop}
spec: {clusterIP: 10.96.250.20, selector: {app: server}, ports: [{name: http, port: 80, targetPort: 8080}]}
`;

/** One variant in this process: returns CPU µs per request over REQUESTS after WARMUP. */
async function runVariant(variant: Variant, mode: Mode): Promise<number> {
  const backend = http.createServer((req, res) => {
    req.resume();
    req.once('end', () => res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BODY.length }).end(BODY));
  });
  const backendPort = await listen(backend);
  const port = variant === 'direct' ? backendPort : variant === 'node' ? await nodeProxy(backendPort) : await ambitProxy(backendPort);
  // Without keep-alive each request has a connection of its own, closed after the response.
  const agent = new http.Agent({ keepAlive: mode === 'keep-alive', maxSockets: CONNECTIONS });
  const post = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/item', agent, headers: { host: 'server.shop.svc.cluster.local', 'content-length': BODY.length } }, (res) => {
        if (res.statusCode !== 200) reject(new Error(`${variant}: answered ${res.statusCode}`));
        res.resume();
        res.once('end', resolve);
      });
      req.once('error', reject);
      req.end(BODY);
    });
  const load = async (count: number): Promise<void> => {
    let sent = 0;
    const worker = async (): Promise<void> => {
      while (sent < count) {
        sent++;
        await post();
      }
    };
    await Promise.all(Array.from({ length: CONNECTIONS }, worker));
  };
  await load(WARMUP[mode]);
  const before = process.cpuUsage();
  await load(REQUESTS[mode]);
  const used = process.cpuUsage(before);
  return (used.user + used.system) / REQUESTS[mode];
}

function listen(server: http.Server | import('node:net').Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

async function nodeProxy(backendPort: number): Promise<number> {
  const upstream = new http.Agent({ keepAlive: true });
  const server = http.createServer((req, res) => {
    const up = http.request({ host: '127.0.0.1', port: backendPort, method: req.method, path: req.url, headers: req.headers, agent: upstream }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    req.pipe(up);
  });
  return listen(server);
}

async function ambitProxy(backendPort: number): Promise<number> {
  // The agent's compiled code, as it runs in a node; types from the sources.
  const { parseConfigFile } = (await import(join(DIST, 'config/load.js'))) as typeof import('../agent/config/load.js');
  const { buildSnapshot } = (await import(join(DIST, 'state/build.js'))) as typeof import('../agent/state/build.js');
  const { WorkloadStore } = (await import(join(DIST, 'state/store.js'))) as typeof import('../agent/state/store.js');
  const { OutboundHttpProxy } = (await import(join(DIST, 'l7/proxy/outbound-http.js'))) as typeof import('../agent/l7/proxy/outbound-http.js');
  const { httpDestinationOf } = (await import(join(DIST, 'l7/proxy/http-destination.js'))) as typeof import('../agent/l7/proxy/http-destination.js');
  const { requestTelemetryHook } = (await import(join(DIST, 'l7/proxy/request-record.js'))) as typeof import('../agent/l7/proxy/request-record.js');
  const { RequestTelemetry } = (await import(join(DIST, 'telemetry/requests.js'))) as typeof import('../agent/telemetry/requests.js');
  const { MeshMetrics } = (await import(join(DIST, 'telemetry/metrics.js'))) as typeof import('../agent/telemetry/metrics.js');
  const { createLogger } = (await import(join(DIST, 'telemetry/log.js'))) as typeof import('../agent/telemetry/log.js');

  const parsed = parseConfigFile(MESH, 'l7-proxy-bench.yaml');
  const store = new WorkloadStore();
  store.replace(buildSnapshot(parsed.objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' }));
  // The agent logs JSON lines on stdout; this process's stdout is /dev/null (see main), as cheap a sink as any.
  const log = createLogger('info', { node: 'bench' });
  const requests = new RequestTelemetry(new MeshMetrics('bench'), log.child({ target: 'access' }), { store });
  const proxy = new OutboundHttpProxy({ node: 'bench', store, log, onRequestComplete: requestTelemetryHook(requests) });
  const originalDst = { ip: '10.96.250.20', port: 80 };
  const server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => {
    const snapshot = store.current!;
    void proxy.handle({
      socket,
      source: snapshot.workloads.get('shop/client')!,
      sourceIp: '10.250.0.10',
      sourcePort: socket.remotePort ?? 0,
      originalDst,
      destination: httpDestinationOf(snapshot, originalDst)!,
      // The endpoint 10.250.0.20:8080 is the backend on loopback (in a node: HBONE or a transparent socket).
      openUpstream: () =>
        new Promise<Socket | string>((resolve) => {
          const s = connect(backendPort, '127.0.0.1', () => resolve(s));
          s.once('error', (err) => resolve(err.message));
        }),
    });
  });
  return listen(server);
}

async function main(): Promise<void> {
  const [child, childMode] = process.argv.slice(2);
  if (child) {
    const us = await runVariant(child as Variant, childMode as Mode);
    process.stderr.write(`${JSON.stringify({ variant: child, mode: childMode, us })}\n`);
    process.exit(0);
  }
  if (!existsSync(join(DIST, 'l7/proxy/outbound-http.js'))) throw new Error(`bench/l7-proxy: ${DIST} is not built; run \`make build\` first`);
  const startedAt = new Date();
  const busy = await backgroundBusyPercent(2000);
  const perMode = MODES.map((m) => `${REQUESTS[m]} ${m}`).join(', ');
  process.stdout.write(`l7-proxy (in-process): 1 KB POSTs over ${CONNECTIONS} client connections at a time (${perMode} per run), ${ROUNDS} rounds; host busy before: ${busy.toFixed(0)} %\n`);
  const samples = new Map<string, number[]>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of MODES) {
      // Rotate the order so that drift on this shared machine lands on every variant alike.
      const order = VARIANTS.map((_, i) => VARIANTS[(i + round) % VARIANTS.length]!);
      for (const variant of order) {
        const run = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), variant, mode], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'], timeout: 120_000 });
        const last = run.stderr.toString().trim().split('\n').pop() ?? '';
        if (run.status !== 0 || !last.startsWith('{')) throw new Error(`bench/l7-proxy: the ${variant} ${mode} run failed (exit ${run.status ?? run.signal}): ${run.stderr.toString().slice(-2000)}`);
        const { us } = JSON.parse(last) as { us: number };
        const key = `${variant} ${mode}`;
        samples.set(key, [...(samples.get(key) ?? []), us]);
        process.stdout.write(`  round ${round + 1} ${key.padEnd(21)} ${us.toFixed(0)} µs CPU per request\n`);
      }
    }
  }
  const med = (variant: Variant, mode: Mode): number => median(samples.get(`${variant} ${mode}`)!);
  const lines = [''];
  const summary: Record<string, { median: Record<Variant, number>; proxyCost: { node: number; ambit: number } }> = {};
  for (const mode of MODES) {
    const m = Object.fromEntries(VARIANTS.map((v) => [v, med(v, mode)])) as Record<Variant, number>;
    const proxyCost = { node: m.node - m.direct, ambit: m.ambit - m.direct };
    summary[mode] = { median: m, proxyCost };
    lines.push(
      `${mode}: median CPU µs per request (client + server + proxy, one process): direct ${m.direct.toFixed(0)}, node ${m.node.toFixed(0)}, ambit ${m.ambit.toFixed(0)}`,
      `${mode}: what the proxy adds over direct: node ${proxyCost.node.toFixed(0)} µs, ambit ${proxyCost.ambit.toFixed(0)} µs (${(proxyCost.ambit / proxyCost.node).toFixed(2)}× Node's floor)`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n\n`);
  saveResults('l7-proxy-latest.json', 'l7-proxy', startedAt, busy, { requests: REQUESTS, rounds: ROUNDS, samples: Object.fromEntries(samples), summary });
}

await main();

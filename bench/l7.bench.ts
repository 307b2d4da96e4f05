// `make bench` for HTTP: POSTs with a 1 KB body (1 KB answered) at fixed rates from a pod on
// node-a to a pod on node-b, direct, through Ambit as an L4 relay (Service port tcp-*), through Ambit
// routing each request (port http), through the Node floor (two bare node:http proxies with mTLS
// between them: l7/node-http-proxy.ts) and through two HAProxies in HTTP mode with mTLS between them;
// interleaved rounds, with the proxies' CPU and RSS. Prints added latency vs direct and each target
// (Ambit's L7 path against the Node floor, HAProxy beside it; l7/targets.ts) with pass or miss, and writes bench/results/l7-latest.json (and a timestamped copy). See bench/README.md.
//
// Reuses the capture bench's lab handling (capture/lab.ts, on its own lab `l7bench`), its HAProxy
// tunnel (capture/haproxy.ts in `mode http`), its baseline tunnels' certificates and processes
// (capture/baseline-tunnel.ts), /proc accounting and statistics.

import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { haproxyPids, haproxyStderr, startHaproxyTunnel, stopHaproxyTunnel, type TunnelCheck, verifyHaproxyMtls } from './capture/haproxy.js';
import { agentMetrics, metricSum } from './capture/agent-metrics.js';
import { agentPids, bringUpLab, execIn, labDown, preflight, ROOT, useLab } from './capture/lab.js';
import { BaselineTunnel } from './capture/baseline-tunnel.js';
import { NODES, type NodeName, type ProcessKey } from './capture/plan.js';
import { backgroundBusyPercent, measured, type Pids, type Usage } from './capture/process-usage.js';
import { added, type Percentiles, percentilesMs } from './capture/stats.js';
import { formatChecks } from './lib/checks.js';
import { saveResults } from './lib/results.js';
import { l7Checks, L7_TARGETS, type L7Mode as Mode, type L7Row as Row } from './l7/targets.js';

// Not `tbench-l7`: a lab's namespaces are its name's prefix, and the capture bench's `tbench` swept them.
// `--lab <name>` runs it on a lab of another name, beside someone else's run of this bench (no name
// may be the start of another's).
function labArg(): string {
  try {
    return parseArgs({ options: { lab: { type: 'string', default: 'l7bench' } } }).values.lab;
  } catch (err) {
    process.stderr.write(`l7.bench.ts: ${(err as Error).message}\nusage: l7.bench.ts [--lab <name>]\n`);
    process.exit(2);
  }
}
const LAB = labArg();
const YAML = join(ROOT, 'bench/l7-mesh.yaml');
const HTTP_LOAD = join(ROOT, 'bench/lib/http-load.ts');
const NODE_HTTP_PROXY = join(ROOT, 'bench/l7/node-http-proxy.ts');
const NODE_IP: Record<NodeName, string> = { 'node-a': '172.31.91.11', 'node-b': '172.31.91.12' };

const RATES = [500, 1000, 2000] as const;
const SECONDS = 5;
const ROUNDS = 2;
const WARMUP_SECONDS = 1;
/**
 * Before the rounds every path carries this load once, unmeasured: a proxy's steady state is what a node
 * runs for months, not its first seconds (V8 compiles the hot paths of each agent and of the Node floor
 * during them; fresh agents ran p90 200-350 ms for their first 2 s at 1000/s). The same for each path.
 */
const STEADY_WARMUP = { rate: 1000, seconds: 5 } as const;
const SERVER_WAIT_MS = 30_000;
const BACKGROUND_SAMPLE_MS = 2_000;

const MODES: readonly Mode[] = ['direct', 'ambit-l4', 'ambit-l7', 'node-http', 'haproxy-http'];
const HAPROXY = { plain: 18080, tls: 18443 } as const;
const NODE_HTTP = { plain: 18180, tls: 18543 } as const;
const DIRECT_SERVER = { host: '10.248.2.20', port: 8080 } as const;
const PATHS: Record<Mode, { client: string; host: string; port: number }> = {
  direct: { client: 'direct/client', ...DIRECT_SERVER },
  // The Services' cluster IPs: the client's agent resolves them, as for any meshed client.
  'ambit-l4': { client: 'mesh/client', host: '10.106.0.10', port: 8080 },
  'ambit-l7': { client: 'mesh/client', host: '10.106.0.11', port: 8080 },
  'node-http': { client: 'direct/client', host: NODE_IP['node-a'], port: NODE_HTTP.plain },
  'haproxy-http': { client: 'direct/client', host: NODE_IP['node-a'], port: HAPROXY.plain },
};
/** Whose CPU a run is charged to: a direct run shows the agents' background work. */
const proxiesOf = (mode: Mode): ProcessKey[] => NODES.map((n) => `${mode === 'haproxy-http' ? 'haproxy' : mode === 'node-http' ? 'node-http' : 'ambit'}/${n}` as const);

const nodeHttpProxies = new BaselineTunnel('node-http proxy', 'node');

/** The Node floor: node-b's side in front of the direct server, node-a's side for the direct client. */
async function startNodeHttpProxies(): Promise<void> {
  const dir = nodeHttpProxies.makeCertificates();
  const node = (args: readonly string[]): string[] => [process.execPath, '--import', 'tsx', NODE_HTTP_PROXY, ...args];
  nodeHttpProxies.start('node-b', node(['server', NODE_IP['node-b'], String(NODE_HTTP.tls), `${DIRECT_SERVER.host}:${DIRECT_SERVER.port}`, dir]));
  nodeHttpProxies.start('node-a', node(['client', NODE_IP['node-a'], String(NODE_HTTP.plain), `${NODE_IP['node-b']}:${NODE_HTTP.tls}`, dir]));
  await nodeHttpProxies.ready(/^ready$/m, 30_000);
}

process.env['PATH'] = `${process.env['PATH'] ?? ''}:/usr/local/sbin:/usr/sbin:/sbin`;

function tearDown(): void {
  stopHaproxyTunnel();
  nodeHttpProxies.stop();
  labDown();
}

interface LoadReport {
  readonly completed: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly statuses: Record<string, number>;
  readonly lastError: string;
  readonly elapsedMs: number;
  readonly latenciesUs: number[];
}

async function load(mode: Mode, rate: number, seconds: number): Promise<LoadReport> {
  const { client, host, port } = PATHS[mode];
  const argv = [process.execPath, '--import', 'tsx', HTTP_LOAD, host, String(port), String(rate), String(seconds)];
  const report = JSON.parse(await execIn(client, argv, (seconds + 30) * 1000)) as LoadReport;
  if (report.completed === 0) {
    throw new Error(`HTTP load in ${mode}: no request completed (${report.errors} errors, ${report.timeouts} timeouts, statuses ${JSON.stringify(report.statuses)}, ${report.lastError})`);
  }
  return report;
}

async function serverReady(mode: Mode): Promise<void> {
  const deadline = Date.now() + SERVER_WAIT_MS;
  for (;;) {
    try {
      const r = await load(mode, 200, WARMUP_SECONDS);
      if (r.errors + r.timeouts > 0) throw new Error(`${r.errors} errors, ${r.timeouts} timeouts, statuses ${JSON.stringify(r.statuses)} ${r.lastError}`);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`the HTTP server never answered through the ${mode} path within ${SERVER_WAIT_MS / 1000} s: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

interface Run {
  readonly mode: Mode;
  readonly rate: number;
  readonly round: number;
  readonly completed: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly statuses: Record<string, number>;
  readonly achievedRate: number;
  readonly latencyMs: Percentiles;
  readonly usage: Usage;
}

/** istio_requests_total on node-a's agent, summed per destination Service named in `services`. */
async function requestsReported(services: readonly string[]): Promise<Record<string, number>> {
  const text = await agentMetrics('node-a');
  return Object.fromEntries(services.map((s) => [s, metricSum(text, 'istio_requests_total', [`destination_service_name="${s}"`])]));
}

function summarize(runs: readonly Run[], samples: Map<string, number[]>): Row[] {
  const rows: Row[] = [];
  for (const rate of RATES) {
    const direct = percentilesMs(samples.get(`direct/${rate}`)!);
    for (const mode of MODES) {
      const these = runs.filter((r) => r.mode === mode && r.rate === rate);
      const latencyMs = percentilesMs(samples.get(`${mode}/${rate}`)!);
      const completed = these.reduce((a, r) => a + r.completed, 0);
      const cpuPer1000: Record<string, number> = {};
      const rssPeakMiB: Record<string, number> = {};
      for (const key of proxiesOf(mode)) {
        const cpu = these.reduce((a, r) => a + (r.usage.processes[key]?.cpuSeconds ?? 0), 0);
        cpuPer1000[key] = cpu / (completed / 1000);
        rssPeakMiB[key] = Math.max(...these.map((r) => r.usage.processes[key]?.rssPeakKiB ?? 0)) / 1024;
      }
      rows.push({
        mode,
        rate,
        latencyMs,
        ...(mode === 'direct' ? {} : { addedMs: added(latencyMs, direct) }),
        cpuPer1000,
        rssPeakMiB,
        failures: these.reduce((a, r) => a + r.errors + r.timeouts, 0),
        achievedRate: these.reduce((a, r) => a + r.achievedRate, 0) / these.length,
        hostBusyPercent: these.reduce((a, r) => a + r.usage.hostBusyPercent, 0) / these.length,
      });
    }
  }
  return rows;
}

const f = (n: number, d = 3): string => n.toFixed(d);

function printReport(rows: readonly Row[], background: number): string[] {
  const out: string[] = [];
  const line = (s: string): void => {
    out.push(s);
    process.stdout.write(`${s}\n`);
  };
  line(`\nL7 bench: 1 KB POST body, 1 KB response, ${SECONDS} s per rate per path, ${ROUNDS} rounds interleaved, each path warmed first (${STEADY_WARMUP.seconds} s at ${STEADY_WARMUP.rate}/s, unmeasured); background host busy ${f(background, 0)} %`);
  if (background > 20) line('WARNING: the machine was busy before the bench started; compare ratios, not absolutes');
  line('');
  line('rate  path          p50 ms  p90 ms  p99 ms | added p50  p90     p99    | CPU s/1000 req node-a / node-b | RSS peak MiB a / b | rate/s  fail  host%');
  for (const r of rows) {
    const a = r.addedMs;
    const keys = proxiesOf(r.mode);
    line(
      `${String(r.rate).padEnd(5)} ${r.mode.padEnd(13)} ${f(r.latencyMs.p50).padStart(6)}  ${f(r.latencyMs.p90).padStart(6)}  ${f(r.latencyMs.p99).padStart(6)} | ` +
        `${a ? `${f(a.p50).padStart(7)} ${f(a.p90).padStart(7)} ${f(a.p99).padStart(7)}` : '      -       -       -'} | ` +
        `${keys.map((k) => f(r.cpuPer1000[k]!)).join(' / ').padEnd(30)} | ${keys.map((k) => f(r.rssPeakMiB[k]!, 0)).join(' / ').padEnd(18)} | ` +
        `${f(r.achievedRate, 0).padStart(6)}  ${String(r.failures).padStart(4)}  ${f(r.hostBusyPercent, 0).padStart(4)}`,
    );
  }
  line('(direct rows: CPU is the agents\' background work while the direct pods talk)');
  line('');
  line("Targets: Ambit's L7 path (ambit-l7) against the bare Node HTTP floor (node-http) in this run, HAProxy in HTTP mode beside each");
  for (const l of formatChecks(l7Checks(rows))) line(l);
  return out;
}

async function main(): Promise<void> {
  useLab(LAB, YAML);
  preflight();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: stopping\n`);
      tearDown();
      process.exit(130);
    });
  }
  try {
    await bringUpLab();
    startHaproxyTunnel('http', [{ name: 'web', ...HAPROXY, upstreamHost: DIRECT_SERVER.host, upstreamPort: DIRECT_SERVER.port }], NODE_IP);
    await startNodeHttpProxies();
    const startedAt = new Date();
    for (const mode of MODES) {
      await serverReady(mode).catch((err: unknown) => {
        const baseline = mode === 'haproxy-http' ? haproxyStderr() : mode === 'node-http' ? nodeHttpProxies.stderr() : '';
        throw baseline ? new Error(`${(err as Error).message}\n${baseline}`) : err;
      });
    }
    for (const mode of MODES) await load(mode, STEADY_WARMUP.rate, STEADY_WARMUP.seconds);
    const agents = agentPids();
    const haproxies = haproxyPids();
    const floors = nodeHttpProxies.pids();
    const pids: Pids = {};
    for (const n of NODES) {
      pids[`ambit/${n}`] = agents[n];
      pids[`node-http/${n}`] = floors[n];
      pids[`haproxy/${n}`] = haproxies[n];
    }
    const haproxyTunnel: TunnelCheck = await verifyHaproxyMtls({
      tlsPort: HAPROXY.tls,
      request: 'GET /probe HTTP/1.0\r\nHost: bench\r\n\r\n',
      answered: (stdout) => /^HTTP\/1\.[01] 200/m.test(stdout),
    });
    const reportedBefore = await requestsReported(['server-l4', 'server-l7']);
    const background = await backgroundBusyPercent(BACKGROUND_SAMPLE_MS);

    const runs: Run[] = [];
    const samples = new Map<string, number[]>();
    for (let round = 1; round <= ROUNDS; round++) {
      for (const rate of RATES) {
        // Rotate the order per rate and round so drift is shared among the paths.
        const shift = (round - 1 + RATES.indexOf(rate)) % MODES.length;
        const order = MODES.map((_, i) => MODES[(i + shift) % MODES.length]!);
        for (const mode of order) {
          process.stderr.write(`round ${round}/${ROUNDS}: ${rate} rps ${mode}\n`);
          const { result, usage } = await measured(pids, () => load(mode, rate, SECONDS));
          runs.push({
            mode,
            rate,
            round,
            completed: result.completed,
            errors: result.errors,
            timeouts: result.timeouts,
            statuses: result.statuses,
            achievedRate: result.completed / (result.elapsedMs / 1000),
            latencyMs: percentilesMs(result.latenciesUs),
            usage,
          });
          const key = `${mode}/${rate}`;
          samples.set(key, [...(samples.get(key) ?? []), ...result.latenciesUs]);
        }
      }
    }
    haproxyPids();
    nodeHttpProxies.pids();
    // That each Ambit path was what it claims: node-a's agent reported every L7 request as an HTTP
    // request (istio_requests_total), and none of the L4 path's.
    const reportedAfter = await requestsReported(['server-l4', 'server-l7']);
    const l7Sent = runs.filter((r) => r.mode === 'ambit-l7').reduce((a, r) => a + r.completed, 0);
    const pathCheck = {
      l7RequestsReported: reportedAfter['server-l7']! - reportedBefore['server-l7']!,
      l7RequestsCompleted: l7Sent,
      l4RequestsReported: reportedAfter['server-l4']! - reportedBefore['server-l4']!,
    };
    const rows = summarize(runs, samples);
    const lines = printReport(rows, background);
    const checkLine = `path check: node-a's agent reported ${pathCheck.l7RequestsReported} HTTP requests to server-l7 (${l7Sent} completed) and ${pathCheck.l4RequestsReported} to server-l4; HAProxy: ${haproxyTunnel.protocol} ${haproxyTunnel.cipher}, refused without a client certificate`;
    process.stdout.write(`${checkLine}\n`);
    lines.push(checkLine);
    if (pathCheck.l7RequestsReported < l7Sent || pathCheck.l4RequestsReported > 0) process.stdout.write('WARNING: the Ambit paths are not what the bench assumes (see path check)\n');

    const settings = { rounds: ROUNDS, seconds: SECONDS, rates: RATES, targets: L7_TARGETS };
    const slim = runs.map((r) => ({ ...r }));
    saveResults('l7-latest.json', 'l7', startedAt, background, { settings, pathCheck, haproxyTunnel, rows, report: lines, runs: slim });
  } finally {
    tearDown();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`l7 bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  tearDown();
  process.exit(1);
});

// `make bench` for the cross-node data path: brings up its own two-node lab, a bare Node HTTP/2 mTLS
// tunnel (the Node floor) and an HAProxy mTLS tunnel, measures throughput (one and two streams) and
// latency direct, through Ambit, through the Node floor and through HAProxy, interleaved, with the
// proxies' CPU and memory and the agents' GC, prints each target against HAProxy with pass or miss and
// writes the raw results to bench/results/latest.json (and a timestamped copy). See bench/README.md.
//
//   node --import tsx bench/capture.bench.ts [--data-threads <n>] [--rounds <n>]

import { parseArgs } from 'node:util';
import { agentPids, bringUpLab, labDown, preflight, verifyCapture } from './capture/lab.js';
import { haproxyPids, haproxyStderr, startHaproxyTunnel, stopHaproxyTunnel, verifyHaproxyMtls } from './capture/haproxy.js';
import { type IperfRun, iperf, latency, type LatencyRun, serverReady } from './capture/load-runs.js';
import { nodeH2Pids, nodeH2Stderr, startNodeH2Tunnel, stopNodeH2Tunnel } from './capture/node-h2.js';
import { BASELINE_UPSTREAM, DEFAULT_ROUNDS, IPERF_SECONDS, MODES, NODE_H2_PORTS, NODES, orderOf, PER_CONNECTION, PERSISTENT, STREAMS, TARGETS, VARIANTS } from './capture/plan.js';
import { backgroundBusyPercent, type Pids } from './capture/process-usage.js';
import { printReport } from './capture/report.js';
import { saveResults } from './lib/results.js';
import { summarize } from './capture/summary.js';

const BACKGROUND_SAMPLE_MS = 2_000;

const { values: args } = parseArgs({ options: { 'data-threads': { type: 'string' }, rounds: { type: 'string', default: String(DEFAULT_ROUNDS) } } });
/** The agents' HBONE engine threads: `ambit lab up --data-threads`, or the agent's default. */
const DATA_THREADS = args['data-threads'];
const ROUNDS = Number(args.rounds);
if (!(Number.isInteger(ROUNDS) && ROUNDS >= 1) || (DATA_THREADS !== undefined && !/^[1-9]\d*$/.test(DATA_THREADS))) {
  process.stderr.write('usage: capture.bench.ts [--data-threads <n>] [--rounds <n>]\n');
  process.exit(2);
}
const THREADS_LABEL = DATA_THREADS === undefined ? 'default --data-threads' : `--data-threads ${DATA_THREADS}`;

/** ip and haproxy live in sbin, which a non-login root shell may not have on its PATH. */
process.env['PATH'] = `${process.env['PATH'] ?? ''}:/usr/local/sbin:/usr/sbin:/sbin`;

/** Synchronous, so it also runs from a signal handler: the tunnels first, as they hold the nodes' netns. */
function tearDown(): void {
  stopHaproxyTunnel();
  stopNodeH2Tunnel();
  labDown();
}

function allPids(): Pids {
  const agents = agentPids();
  const haproxies = haproxyPids();
  const floors = nodeH2Pids();
  const pids: Pids = {};
  for (const node of NODES) {
    pids[`ambit/${node}`] = agents[node];
    pids[`node-h2/${node}`] = floors[node];
    pids[`haproxy/${node}`] = haproxies[node];
  }
  return pids;
}

async function main(): Promise<void> {
  preflight();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: stopping\n`);
      tearDown();
      process.exit(130);
    });
  }
  try {
    await bringUpLab(DATA_THREADS === undefined ? [] : ['--data-threads', DATA_THREADS]);
    startHaproxyTunnel();
    const upstream = (port: number): string => `${BASELINE_UPSTREAM.host}:${port}`;
    await startNodeH2Tunnel([
      { plain: NODE_H2_PORTS.echo, upstream: upstream(BASELINE_UPSTREAM.echoPort) },
      { plain: NODE_H2_PORTS.iperf, upstream: upstream(BASELINE_UPSTREAM.iperfPort) },
    ]);
    const startedAt = new Date();

    // Waits for the servers and the HAProxies (the YAML has no probe), and warms every path.
    for (const mode of MODES) {
      await serverReady(mode).catch((err: unknown) => {
        const tunnel = mode === 'haproxy' ? haproxyStderr() : mode === 'node-h2' ? nodeH2Stderr() : '';
        throw tunnel ? new Error(`${(err as Error).message}\n${tunnel}`) : err;
      });
    }
    const pids = allPids();
    const haproxyTunnel = await verifyHaproxyMtls();
    const background = await backgroundBusyPercent(BACKGROUND_SAMPLE_MS);

    const iperfRuns: IperfRun[] = [];
    const latencyRuns: LatencyRun[] = [];
    const samples = new Map<string, number[]>();
    for (let round = 1; round <= ROUNDS; round++) {
      for (const mode of orderOf(round)) {
        process.stderr.write(`round ${round}/${ROUNDS}: ${mode}\n`);
        for (const streams of STREAMS) iperfRuns.push(await iperf(mode, streams, round, pids));
        for (const variant of VARIANTS) {
          const { run, samples: s } = await latency(mode, variant, round, pids);
          latencyRuns.push(run);
          const key = `${mode}/${variant}`;
          samples.set(key, [...(samples.get(key) ?? []), ...s]);
        }
      }
    }
    // Still running at the end: else a HAProxy or Node floor row would measure a dead process.
    haproxyPids();
    nodeH2Pids();
    const capture = { ...(await verifyCapture()), haproxyTunnel };

    const summary = summarize(iperfRuns, latencyRuns, samples, THREADS_LABEL);
    printReport(iperfRuns, latencyRuns, summary, background, ROUNDS, THREADS_LABEL);
    const settings = { rounds: ROUNDS, dataThreads: DATA_THREADS ?? 'default', iperfSeconds: IPERF_SECONDS, streams: STREAMS, persistent: PERSISTENT, perConnection: PER_CONNECTION, targets: TARGETS };
    saveResults('latest.json', 'capture', startedAt, background, { settings, capture, summary, iperfRuns, latencyRuns });
  } finally {
    tearDown();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`capture bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  tearDown();
  process.exit(1);
});

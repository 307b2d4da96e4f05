// `make bench` (or alone): how long a node's enrolled pods wait, after their agent is killed (kill -9),
// until a new connection through the mesh is carried again, and where that time goes. Two lab nodes;
// a client pod on alpha opens a new connection to an echo pod on beta every 20 ms (HBONE across the
// nodes), each on its own; alpha's agent is killed `--runs` times. Each run reports the gap from the
// kill to the first connection made after it that got its echo back, and, from the agent's log, when
// the supervisor started the new process, when Node had loaded the agent's modules (its first log
// line), and when the configuration, the CA, the eBPF programs, the listeners, readiness and the pods'
// certificates were there.
//
// Two ways the agent is run: `local` (the lab's default: YAML files, the CA inside the agent) and
// `kubernetes` (as the DaemonSet runs it: the mesh from an API server, certificates from `ambit ca`
// over gRPC with a pod-bound token). One difference: the lab's agents reach its API server with a
// kubeconfig, which loads @kubernetes/client-node (about half a second of CPU) where a pod's in-cluster
// configuration does not. What a kubelet adds on top is in docs/reliability.md, "Crashes".
//
//   node --import tsx bench/restart-gap.bench.ts [--runs <n>] [--source local|kubernetes|both]

import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { agentPid, clientPod, echoIp, type FaultMesh, faultMeshYaml } from '../test/integration/helpers/fault-lab.js';
import { LabProcess, type Report } from '../test/integration/helpers/lab-process.js';
import { LabSession } from '../test/integration/helpers/lab-session.js';
import { backgroundBusyPercent } from './capture/process-usage.js';
import { saveResults } from './lib/results.js';

const { values: args } = parseArgs({ options: { runs: { type: 'string', default: '5' }, source: { type: 'string', default: 'both' } } });
const RUNS = Number(args.runs);
const SOURCES = args.source === 'both' ? (['local', 'kubernetes'] as const) : ([args.source] as const);
if (!Number.isInteger(RUNS) || RUNS < 1 || RUNS > 20 || !SOURCES.every((s) => s === 'local' || s === 'kubernetes')) {
  process.stderr.write('usage: restart-gap.bench.ts [--runs <1-20>] [--source local|kubernetes|both]\n');
  process.exit(2);
}
process.env['PATH'] = `${process.env['PATH'] ?? ''}:/usr/local/sbin:/usr/sbin:/sbin`;

const MESH: FaultMesh = { netOctet: 77, podOctet: 226, clients: 1 };
/**
 * The lab's kubelet restarts a crashed process at once only if it had run 30 s (agent/lab/kubelet.ts),
 * as a kubelet's first restart after a crash has no backoff: each run kills an agent that has run longer.
 */
const RAN_BEFORE_KILL_MS = 32_000;
/** A connection's own limit: one with no answer by then hung (the restart must refuse or carry, never hang). */
const ATTEMPT_LIMIT_MS = 10_000;

/** A new connection every 20 ms, each on its own, until `stopAt` (argv): one line per attempt with when it started and ended. */
const PROBE = `const net = require('net'); const [ip, stopAt] = [process.argv[1], Number(process.argv[2])];
const out = (o) => console.log(JSON.stringify({ at: Date.now(), ...o })); let inflight = 0;
const once = () => { const started = Date.now(); inflight++; let ended = false; const s = net.connect(9000, ip, () => s.write('x'));
  const done = (r) => { if (ended) return; ended = true; inflight--; clearTimeout(t); s.destroy(); out({ event: r, started }); };
  const t = setTimeout(() => done('timeout'), ${ATTEMPT_LIMIT_MS}); s.once('data', () => done('ok')); s.once('error', (e) => done(e.code || 'error')); s.once('close', () => done('closed')); };
const tick = () => { if (Date.now() >= stopAt) return inflight === 0 ? process.exit(0) : setTimeout(tick, 100); if (inflight < 50) once(); setTimeout(tick, 20); };
tick();`;

/** One kill: milliseconds after it, for the gap and for each step of the restart (undefined: not in the log). */
interface RestartRun {
  readonly gapMs: number;
  readonly refused: number;
  readonly hung: number;
  readonly steps: Readonly<Record<string, number | undefined>>;
}

const startedAt = new Date();
const busy = await backgroundBusyPercent(2_000);
const results: Record<string, RestartRun[]> = {};
let failed = false;
for (const source of SOURCES) {
  const lab = `rg${source[0]}${process.pid % 100}`;
  const session = LabSession.inTempDir(lab, 'ambit-restart-bench-');
  let probe: LabProcess | undefined;
  try {
    await session.up(faultMeshYaml(MESH), 180, source === 'kubernetes' ? ['--source', 'kubernetes'] : []);
    const stopAt = Date.now() + RUNS * (RAN_BEFORE_KILL_MS + 30_000) + 60_000;
    probe = new LabProcess(lab, clientPod(0), ['node', '-e', PROBE, echoIp(MESH), String(stopAt)]);
    await probe.line('a connection through the mesh', (r) => r['event'] === 'ok', 60_000);
    const runs: RestartRun[] = [];
    let agentSince = Date.now();
    for (let i = 0; i < RUNS; i++) {
      // Pacing, not synchronization: the kubelet must see a healthy agent, not a crash loop.
      await sleep(Math.max(0, agentSince + RAN_BEFORE_KILL_MS - Date.now()));
      const run = await killAndTime(session, probe, lab);
      runs.push(run);
      agentSince = Date.now();
      process.stdout.write(`${source} run ${i + 1}: ${describe(run)}\n`);
    }
    results[source] = runs;
    failed ||= runs.some((r) => r.hung > 0);
  } catch (err) {
    failed = true;
    process.stderr.write(`${source}: ${(err as Error).stack ?? String(err)}\n`);
  } finally {
    probe?.kill();
    await session.down();
  }
}

process.stdout.write(`\nkill -9 of alpha's agent to the first new connection carried again (machine ${busy.toFixed(0)} % busy before; ms after the kill, median of ${RUNS} runs, then each run's gap)\n`);
for (const [source, runs] of Object.entries(results)) {
  const steps = Object.keys(runs[0]?.steps ?? {});
  const medians = steps.map((s) => `${s} ${fmt(median(runs.map((r) => r.steps[s])))}`).join(', ');
  process.stdout.write(`  ${source.padEnd(10)} gap ${fmt(median(runs.map((r) => r.gapMs)))} (${runs.map((r) => r.gapMs).join(', ')}); ${medians}\n`);
}
saveResults('restart-gap.json', 'restart-gap', startedAt, busy, { runs: RUNS, results });
if (failed) process.exitCode = 1;

async function killAndTime(session: LabSession, probe: LabProcess, lab: string): Promise<RestartRun> {
  const pid = agentPid(lab, 'alpha');
  const killedAt = Date.now();
  process.kill(pid, 'SIGKILL');
  const after = (r: Report): boolean => Number(r['started']) >= killedAt;
  const back = await probe.line('a connection carried after the kill', (r) => r['event'] === 'ok' && after(r), 60_000);
  // Every attempt made before `back` has ended once the attempt limit passed after it.
  await probe.line('an attempt started after the earlier ones ended', (r) => Number(r['started']) >= Number(back['at']) + ATTEMPT_LIMIT_MS, ATTEMPT_LIMIT_MS + 20_000);
  const during = probe.reports().filter((r) => after(r) && Number(r['started']) < Number(back['started']));
  const steps = restartSteps(await session.agentLog('alpha'), killedAt);
  return {
    gapMs: Number(back['at']) - killedAt,
    refused: during.filter((r) => r['event'] === 'ECONNREFUSED').length,
    hung: during.filter((r) => r['event'] === 'timeout').length,
    steps,
  };
}

/**
 * The restarted agent's steps, in ms after the kill, from its log (the part after the supervisor's last
 * restart note): each step's line and its time. The process's start comes from the ready line's
 * startupMs (Node's clock starts with the process); the first line is written once the modules loaded.
 */
function restartSteps(log: string, killedAt: number): Record<string, number | undefined> {
  const lines = log.slice(log.lastIndexOf('restarting in')).split('\n');
  const json = (what: string): Record<string, unknown> | undefined => {
    const line = lines.find((l) => l.startsWith('{') && l.includes(what));
    return line === undefined ? undefined : (JSON.parse(line) as Record<string, unknown>);
  };
  const timeOf = (what: string): number | undefined => {
    const time = json(what)?.['time'];
    return time === undefined ? undefined : Date.parse(String(time)) - killedAt;
  };
  const spawnNote = lines.find((l) => l.includes('starting: ambit run'));
  const spawned = spawnNote === undefined ? undefined : Date.parse(/ambit lab (\S+)/.exec(spawnNote)?.[1] ?? '') - killedAt;
  const marks = (json('"msg":"agent ready')?.['startupMs'] ?? {}) as Record<string, number>;
  const certificatesMark = json('"msg":"workload certificates:')?.['startupMs'] as number | undefined;
  const processStart = marks['ready'] === undefined ? undefined : (timeOf('"msg":"agent ready') ?? 0) - marks['ready'];
  const sinceStart = (mark: number | undefined): number | undefined => (processStart === undefined || mark === undefined ? undefined : processStart + mark);
  return {
    spawned,
    processStart,
    firstLog: timeOf('"pid":'),
    configuration: sinceStart(marks['configuration']),
    certificateAuthority: timeOf('"msg":"certificate authority'),
    ebpf: timeOf('"msg":"eBPF capture loaded'),
    listeners: timeOf('"msg":"outbound listener ready'),
    ready: timeOf('"msg":"agent ready'),
    certificates: sinceStart(certificatesMark),
  };
}

function describe(run: RestartRun): string {
  const steps = Object.entries(run.steps).map(([k, v]) => `${k} ${fmt(v)}`).join(', ');
  return `gap ${run.gapMs} ms (${run.refused} refused, ${run.hung} hung); ${steps}`;
}

function median(values: readonly (number | undefined)[]): number | undefined {
  const known = values.filter((v): v is number => v !== undefined).sort((a, b) => a - b);
  return known.length === 0 ? undefined : known[Math.floor(known.length / 2)];
}

function fmt(ms: number | undefined): string {
  return ms === undefined ? 'not seen' : `${ms} ms`;
}

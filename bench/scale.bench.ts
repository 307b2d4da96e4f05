// `make scale` (and `make bench`): 10,000 concurrent tunnelled connections from five client pods on one
// lab node to an echo pod on another, each exchanging a 32-byte message every 5 s, held 60 s. Prints
// what the clients saw (none may fail, be lost or stall), each agent's RSS and CPU per 1,000 held
// connections and per 1,000 new connections, and what explains a miss (the kernel's listen-queue
// counters, HBONE connection ends by cause, the agents' warnings), and writes them to
// bench/results/scale.json.
//
//   node --import tsx bench/scale.bench.ts [--connections <n>] [--pods <n>] [--hold <seconds>]

import { parseArgs } from 'node:util';
import { type FaultMesh, faultMeshYaml, nodeGet } from '../test/integration/helpers/fault-lab.js';
import { LabSession } from '../test/integration/helpers/lab-session.js';
import { holdTunnels } from '../test/integration/helpers/tunnel-scale.js';
import { backgroundBusyPercent } from './capture/process-usage.js';
import { saveResults } from './lib/results.js';

const { values: args } = parseArgs({ options: { connections: { type: 'string', default: '10000' }, pods: { type: 'string', default: '5' }, hold: { type: 'string', default: '60' } } });
const CONNECTIONS = Number(args.connections);
const PODS = Number(args.pods);
const HOLD_SECONDS = Number(args.hold);
if (![CONNECTIONS, PODS, HOLD_SECONDS].every((n) => Number.isInteger(n) && n > 0) || PODS > 50) {
  process.stderr.write('usage: scale.bench.ts [--connections <n>] [--pods <1-50>] [--hold <seconds>]\n');
  process.exit(2);
}
process.env['PATH'] = `${process.env['PATH'] ?? ''}:/usr/local/sbin:/usr/sbin:/sbin`;

const LAB = `scb${process.pid % 1000}`;
const MESH: FaultMesh = { netOctet: 84, podOctet: 251, clients: PODS };
const session = LabSession.inTempDir(LAB, 'ambit-scale-bench-');
const startedAt = new Date();
const busy = await backgroundBusyPercent(2_000);
let failed = false;
try {
  await session.up(faultMeshYaml(MESH), 120);
  const run = { connections: CONNECTIONS, pods: PODS, everyMs: 5_000, holdMs: HOLD_SECONDS * 1000, stallMs: 10_000 };
  const r = await holdTunnels(LAB, MESH, run);
  const ok = r.opened === CONNECTIONS && r.failed === 0 && r.lost === 0 && r.stalled === 0;
  failed = !ok;
  const f = (n: number): string => n.toFixed(3);
  process.stdout.write(`\n${CONNECTIONS} tunnelled connections from ${PODS} pods, a message every ${run.everyMs / 1000} s, held ${HOLD_SECONDS} s (machine ${busy.toFixed(0)} % busy before)\n`);
  process.stdout.write(`  clients: opened ${r.opened} in ${r.openSeconds.toFixed(1)} s, failed ${r.failed}, lost ${r.lost}, stalled ${r.stalled} (${r.stalledFirst} of them a first exchange, waiting for its tunnel), ${r.messages} echoes, p99 ${r.p99Ms} ms, worst ${r.worstMs} ms ${JSON.stringify(r.errors)}  ${ok ? 'pass' : 'MISS'}\n`);
  for (const [node, c] of Object.entries(r.agents)) {
    process.stdout.write(`  ${node}: RSS ${c.rssMiB.toFixed(0)} MiB, +${f(c.rssMiBPer1k)} MiB per 1,000 held; ${f(c.holdVcpuPer1k)} vCPU per 1,000 held; ${f(c.openCpuSecondsPer1k)} CPU-s per 1,000 opened (vCPU at 1,000 new/s)\n`);
  }
  // Connections the kernel turned away before the agent saw them (a full accept queue, SYN cookies) log nothing in the agents.
  process.stdout.write(`  lost ${JSON.stringify(r.lostHow)}; listen queues: alpha ${JSON.stringify(r.kernel.alpha)}, beta ${JSON.stringify(r.kernel.beta)}\n`);
  const hboneEnds: Record<string, string> = {};
  for (const node of ['alpha', 'beta']) {
    const metrics = await nodeGet(LAB, node, 'http://127.0.0.1:15020/metrics');
    hboneEnds[node] = [...metrics.matchAll(/^ambit_hbone_connections_closed_total\{cause="([^"]+)"\} (\d+)$/gm)].map((m) => `${m[1]} ${m[2]}`).join(', ') || 'none';
  }
  process.stdout.write(`  HBONE connections ended, by cause: alpha ${hboneEnds['alpha']}; beta ${hboneEnds['beta']}\n`);
  // A miss is explained by what the agents logged above info (each line once, with its count), with the error an access log names.
  const logged: Record<string, string[]> = {};
  for (const node of ['alpha', 'beta']) {
    const lines = (await session.agentLog(node)).split('\n').filter((l) => /"level":(40|50|60)/.test(l)).map((l) => {
      const { msg, error } = JSON.parse(l) as { msg?: string; error?: string };
      return `${String(msg)}${error ? `: ${error}` : ''}`.replace(/\d+(\.\d+)*/g, 'N');
    });
    logged[node] = [...new Set(lines)].map((m) => `${lines.filter((l) => l === m).length}x ${m}`);
    if (!ok) process.stdout.write(`  ${node} logged:\n${logged[node]!.slice(0, 15).map((l) => `    ${l}`).join('\n')}\n`);
  }
  saveResults('scale.json', 'scale', startedAt, busy, { run, result: r, hboneEnds, logged });
} finally {
  await session.down();
}
process.exit(failed ? 1 : 0);

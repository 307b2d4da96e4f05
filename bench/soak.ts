// `make soak`: 30 minutes (--minutes) of the soak that make test runs for 2 (test/integration/soak.test.ts):
// mixed HTTP and L4 load across two lab nodes, a policy edit every 3 minutes and certificates of 30 s.
// Prints what the client made and failed, what the metrics counted, each agent's RSS and heap slope after
// warm-up (the heap's judged: a leak fails the run), its fds and live connections before and after, and
// writes it all to bench/results/soak.json.
//
//   node --import tsx bench/soak.ts [--minutes <n>]   (not a *.bench.ts: make bench would run it for 30 minutes)

import { parseArgs } from 'node:util';
import { faultMeshYaml } from '../test/integration/helpers/fault-lab.js';
import { LabSession } from '../test/integration/helpers/lab-session.js';
import { soak, soakMesh } from '../test/integration/helpers/soak-run.js';
import { backgroundBusyPercent } from './capture/process-usage.js';
import { saveResults } from './lib/results.js';

const { values: args } = parseArgs({ options: { minutes: { type: 'string', default: '30' } } });
const MINUTES = Number(args.minutes);
if (!(MINUTES > 0)) {
  process.stderr.write('usage: soak.ts [--minutes <n>]\n');
  process.exit(2);
}
process.env['PATH'] = `${process.env['PATH'] ?? ''}:/usr/local/sbin:/usr/sbin:/sbin`;

/**
 * The heap's troughs may rise at most this much per minute after warm-up: the clean 30-minute run rose
 * 0.06-0.29 MiB/min; a leak of one request's objects (about 11 KB) per kept-alive request of this load
 * rises about 13.
 */
const MAX_HEAP_SLOPE_MIB_PER_MIN = 1;

const LAB = `skb${process.pid % 1000}`;
const MESH = soakMesh(87, 254);
const session = LabSession.inTempDir(LAB, 'ambit-soak-bench-');
const startedAt = new Date();
const busy = await backgroundBusyPercent(2_000);
let failed = true;
try {
  await session.up(faultMeshYaml(MESH), 120, ['--cert-ttl', '30s']);
  const r = await soak(session, LAB, MESH, MINUTES * 60_000, 180_000, 30_000);
  const c = r.client;
  const made = Number(c['httpKept']) + Number(c['httpNew']);
  failed = c['failed'] !== 0 || c['lost'] !== 0 || r.counted.requestsSource !== made || r.counted.requestsDestination !== made;
  process.stdout.write(`\nsoak ${MINUTES} min (machine ${busy.toFixed(0)} % busy before): ${r.policyEdits} policy edits, ${r.renewals} certificate renewals on alpha\n`);
  process.stdout.write(`  client: ${made} requests (${String(c['httpKept'])} kept-alive, ${String(c['httpNew'])} new), ${String(c['l4New'])} L4 echoes, ${String(c['failed'])} failed ${JSON.stringify(c['reasons'])}, ${String(c['lost'])} held lost\n`);
  process.stdout.write(`  counted: ${r.counted.requestsSource} requests by alpha, ${r.counted.requestsDestination} by beta, ${r.counted.echoConnectionsSource} L4 connections to echo by alpha  ${failed ? 'MISS' : 'pass'}\n`);
  for (const n of ['alpha', 'beta'] as const) {
    const last = r.samples[n].at(-1)!;
    const heapFlat = r.heapSlope[n] <= MAX_HEAP_SLOPE_MIB_PER_MIN;
    failed ||= !heapFlat;
    process.stdout.write(`  ${n}: RSS ${last.rssMiB.toFixed(0)} MiB, slope ${r.rssSlope[n].toFixed(2)} MiB/min; heap ${last.heapMiB.toFixed(0)} MiB, slope ${r.heapSlope[n].toFixed(2)} MiB/min (at most ${MAX_HEAP_SLOPE_MIB_PER_MIN}: ${heapFlat ? 'pass' : 'MISS'}); fds ${r.fds[n].before} -> ${r.fds[n].after}; live connections ${r.liveConnections[n].before} -> ${r.liveConnections[n].during} -> ${r.liveConnections[n].after}\n`);
  }
  saveResults('soak.json', 'soak', startedAt, busy, { minutes: MINUTES, result: r });
} finally {
  await session.down();
}
process.exit(failed ? 1 : 0);

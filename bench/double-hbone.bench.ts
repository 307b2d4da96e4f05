// What crossing a network through an east-west gateway costs, in one process on loopback (no lab, no
// root): a stream on a pooled single-HBONE connection to the destination against double HBONE through
// `ambit gateway` (the two-network fixture of test/fixtures/hbone/double-hbone-mesh.ts: the client's
// pool, the gateway and the destination's HBONE server, each with its own engine). Taken in turns so a
// noisy neighbour hits both alike: the time to open a connection (double HBONE's inner TLS handshake
// is made every time, as ztunnel never pools inner tunnels) and an echoed bulk transfer.
//
//   node --import tsx bench/double-hbone.bench.ts [--rounds 7] [--bulk-mib 64]

import type { Duplex } from 'node:stream';
import { parseArgs } from 'node:util';
import { HbonePool } from '../agent/tunnel/hbone/pool.js';
import { OutboundOpener } from '../agent/tunnel/outbound-open.js';
import { planOutbound } from '../agent/tunnel/outbound-plan.js';
import { CLIENT, CLIENT_IP, REVIEWS, REVIEWS_IP, VIP, startDoubleHboneMesh } from '../test/fixtures/hbone/double-hbone-mesh.js';

const MiB = 1024 * 1024;
const { values: args } = parseArgs({ options: { rounds: { type: 'string', default: '7' }, 'bulk-mib': { type: 'string', default: '64' } } });
const ROUNDS = Number(args.rounds);
const BULK = Number(args['bulk-mib']) * MiB;
if (!(ROUNDS >= 1 && BULK >= MiB)) throw new Error('usage: double-hbone.bench.ts [--rounds N≥1] [--bulk-mib M≥1]');

/** Writes `bytes` to an echoing stream and reads them all back; milliseconds from first write to last byte. */
async function echoed(stream: Duplex, bytes: number): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024, 7);
  let received = 0;
  const started = performance.now();
  const done = new Promise<void>((resolve, reject) => {
    stream.on('data', (c: Buffer) => void (received += c.length));
    stream.once('end', resolve);
    stream.once('error', reject);
  });
  for (let sent = 0; sent < bytes; sent += chunk.length) if (!stream.write(chunk)) await new Promise((resolve) => stream.once('drain', resolve));
  stream.end();
  await done;
  if (received !== bytes) throw new Error(`echoed ${received} of ${bytes} bytes`);
  return performance.now() - started;
}

const median = (values: number[]): number => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

const mesh = await startDoubleHboneMesh();
const pool = new HbonePool({ certificates: mesh.trust.certificates });
const opener = new OutboundOpener({ hbone: pool, connectAsClient: async () => 'no plain connection in this bench' });
const client = mesh.snapshot.workloadsByIp.get(CLIENT_IP)!;
const openers: Record<'single' | 'double', () => Promise<Duplex>> = {
  single: async () => {
    const opened = await pool.open({ source: { identity: CLIENT, ip: CLIENT_IP }, destination: { ip: REVIEWS_IP, port: mesh.destinationPort }, expectedIdentities: [REVIEWS], authority: { ip: REVIEWS_IP, port: mesh.echo.port } });
    if (!opened.ok) throw opened.error;
    return opened.value;
  },
  double: async () => {
    const plan = planOutbound(mesh.snapshot, { workload: client, ip: CLIENT_IP, port: 40000 }, { ip: VIP, port: 9080 }, { node: 'a', clusterId: 'bench', pick: () => 0 });
    if (plan.transport !== 'double-hbone') throw new Error(`planned ${plan.transport}, not double-hbone`);
    const opened = await opener.open(plan);
    if (!opened.ok) throw new Error(opened.reason);
    return opened.stream;
  },
};
const samples = { single: { open: [] as number[], bulk: [] as number[] }, double: { open: [] as number[], bulk: [] as number[] } };
// Warm both: the first single-HBONE stream dials the pooled connection, the first double one the gateway's.
for (const open of Object.values(openers)) (await open()).destroy();
for (let round = 0; round < ROUNDS; round++) {
  for (const path of round % 2 === 0 ? (['single', 'double'] as const) : (['double', 'single'] as const)) {
    const started = performance.now();
    const stream = await openers[path]();
    samples[path].open.push(performance.now() - started);
    samples[path].bulk.push(await echoed(stream, BULK));
  }
}
await pool.close(100);
await mesh.close();

const mbits = (ms: number): string => ((BULK * 8) / MiB / (ms / 1000)).toFixed(0);
console.log(`${ROUNDS} rounds in turns, ${BULK / MiB} MiB echoed per round (medians)`);
for (const path of ['single', 'double'] as const) {
  const open = median(samples[path].open);
  const bulk = median(samples[path].bulk);
  console.log(`${(path === 'single' ? 'single HBONE (pooled connection)' : 'double HBONE (through the gateway)').padEnd(36)} open ${open.toFixed(1).padStart(6)} ms   bulk ${bulk.toFixed(0).padStart(5)} ms, ${mbits(bulk).padStart(5)} Mbit/s each way`);
}

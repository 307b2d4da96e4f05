// istiod unreachable, as an agent run with --source xds lives it (no capture, so no root): the agent
// keeps serving the last state istiod sent, stays ready, says so once, redials on its backoff (each
// dial counted where istiod's port is, every connection cut there as when istiod's pods are gone), and
// when istiod is back with a changed state it reports what it holds and applies the difference.
// AMBIT_XDS_OUTAGE_SECONDS sets the outage (default 15 s). What is checked is the agent's state
// (/config_dump), readiness and log: with --capture none it carries no traffic, and the lab, where it
// would, has no xDS source yet.

import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { type Server, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { ConfigDump } from '../../agent/admin/config-dump.js';
import { ADDRESS_TYPE_URL } from '../../agent/sources/xds/xds-source.js';
import { type RunningIstiod, startIstiod } from '../fixtures/istiod/running.js';
import { FakeXdsServer } from '../fixtures/istiod/xds-server.js';
import { TOKEN, productpageV1, pushBookinfo, uid } from './helpers/xds-bookinfo.js';

const MAIN = fileURLToPath(new URL('../../agent/cli/main.ts', import.meta.url));
const OUTAGE_MS = Number(process.env['AMBIT_XDS_OUTAGE_SECONDS'] ?? 15) * 1000;
/** The ADS client's backoff (ads-client.ts): 10 ms doubling to 15 s, each delay drawn from [d/2, d]. */
const BACKOFF = { initialMs: 10, maxMs: 15_000 };

interface LogLine {
  readonly level: number;
  readonly time: number;
  readonly msg: string;
}

/** The most attempts the backoff allows in `ms`: every delay at its shortest. */
function mostAttempts(ms: number): number {
  let attempts = 0;
  for (let at = 0, k = 0; ; k++) {
    at += Math.min(BACKOFF.maxMs, BACKOFF.initialMs * 2 ** k) / 2;
    if (at > ms) return attempts;
    attempts++;
  }
}

/** istiod's port with its pods gone: every connection accepted and cut at once, each one a dial. */
async function refusingPort(port: number, dials: number[]): Promise<Server> {
  const server = createServer((socket) => {
    dials.push(Date.now());
    socket.destroy();
  });
  // The gRPC server just let the port go; give the kernel a moment if it has not yet.
  for (let tries = 0; ; tries++) {
    try {
      server.listen(port, '127.0.0.1');
      await once(server, 'listening');
      return server;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || tries > 40) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

test(`istiod unreachable for ${OUTAGE_MS / 1000} s: the agent serves its last xDS state, stays ready, says so once, redials on its backoff, and applies istiod's changes once back`, { timeout: OUTAGE_MS + 180_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-xds-outage-'));
  const istiod: RunningIstiod = await startIstiod(TOKEN);
  pushBookinfo(istiod.server);
  const port = istiod.server.port;
  const { rootCertFile, tokenFile } = istiod.agentOptions.connection;
  const args = ['--import', 'tsx', MAIN, 'run', '--source', 'xds', '--istiod-address', `127.0.0.1:${port}`, '--istiod-root-cert', rootCertFile!, '--istiod-token', tokenFile!];
  const local = ['--node', 'node-a', '--capture', 'none', '--state-dir', join(dir, 'state'), '--readiness-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0', '--metrics-address', '127.0.0.1:0'];
  const env = { ...process.env, INSTANCE_IP: '10.20.0.1', POD_NAME: 'ambit-x7k2p', POD_NAMESPACE: 'istio-system', AMBIT_LOG_LEVEL: 'info' };
  const agent: ChildProcessWithoutNullStreams = spawn(process.execPath, [...args, ...local], { env });
  const lines: LogLine[] = [];
  let raw = '';
  let partial = '';
  const ports: Record<string, number> = {};
  agent.stdout.on('data', (d: Buffer) => {
    raw += d.toString();
    const text = partial + d.toString();
    const complete = text.split('\n');
    partial = complete.pop()!;
    for (const line of complete) {
      try {
        const entry = JSON.parse(line) as { level: number; time: string; msg: string };
        lines.push({ level: entry.level, time: Date.parse(entry.time), msg: entry.msg });
      } catch {
        continue;
      }
      const listening = /^(readiness|admin) server listening on 127\.0\.0\.1:(\d+)$/.exec(lines.at(-1)!.msg);
      if (listening) ports[listening[1]!] = Number(listening[2]);
    }
  });
  agent.stderr.on('data', (d: Buffer) => (raw += d.toString()));
  const until = async <T>(what: string, check: () => Promise<T | undefined>, ms: number): Promise<T> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const value = await check().catch(() => undefined);
      if (value !== undefined) return value;
      if (Date.now() > deadline || agent.exitCode !== null) assert.fail(`waiting for ${what}; agent log:\n${raw.slice(-6000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const ready = async (): Promise<number> => (await fetch(`http://127.0.0.1:${ports['readiness']}/healthz/ready`)).status;
  const workloads = async (): Promise<string[]> => {
    const res = await fetch(`http://127.0.0.1:${ports['admin']}/config_dump`);
    return ((await res.json()) as ConfigDump).workloads.map((w) => `${w.name}:${w.workloadIps.join(',')}`).sort();
  };
  const said = (level: number, message: RegExp, from = 0): LogLine[] => lines.filter((l) => l.level === level && l.time >= from && message.test(l.msg));
  const dials: number[] = [];
  let refusing: Server | undefined;
  let back: FakeXdsServer | undefined;
  try {
    // Generous: tsx compiles the whole agent on start, which takes seconds on a busy machine.
    await until('ready', async () => (ports['readiness'] && (await ready()) === 200 ? true : undefined), 120_000);
    const before = await workloads();
    assert.deepEqual(before, ['productpage-v1:10.1.0.5', 'reviews-v1:10.1.1.7']);

    const outageAt = Date.now();
    await istiod.server.stop();
    refusing = await refusingPort(port, dials);
    const warned = await until('the outage said', async () => said(40, /^xDS stream to .* ended: .*; serving xDS state version \d+, the last good state; reconnecting with backoff/, outageAt)[0], 20_000);
    console.log(`# said ${warned.time - outageAt} ms into the outage: ${warned.msg}`);
    // Throughout: ready, and the state istiod last sent.
    const readiness: number[] = [];
    while (Date.now() < outageAt + OUTAGE_MS) {
      readiness.push(await ready());
      assert.deepEqual(await workloads(), before, 'the agent dropped the last good state while istiod was away');
      await new Promise((r) => setTimeout(r, 1000));
    }
    assert.deepEqual([...new Set(readiness)], [200], 'readiness went false while istiod was away');
    refusing.close();
    const outageMs = Date.now() - outageAt;

    // Back, on the same port, with a changed state: productpage-v1 moved, reviews-v1 gone.
    back = new FakeXdsServer(istiod.tls);
    back.requiredToken = TOKEN;
    pushBookinfo(back);
    back.push(ADDRESS_TYPE_URL, [{ name: uid('productpage-v1'), version: '2', body: productpageV1('10.1.0.9') }], [uid('reviews-v1')]);
    await back.start(port);
    const returnedAt = Date.now();
    await until('the changed state applied', async () => ((await workloads()).join() === 'productpage-v1:10.1.0.9' ? true : undefined), BACKOFF.maxMs + 10_000);
    const appliedMs = Date.now() - returnedAt;
    const { request } = await back.request((r) => r.typeUrl === ADDRESS_TYPE_URL && r.responseNonce === '');
    assert.deepEqual(request.initialResourceVersions[uid('reviews-v1')], '1', 'the agent did not tell istiod what it held');
    await until('the return said', async () => said(30, /^istiod at .* answered again after [\d.]+ s and \d+ failed attempts/, returnedAt)[0], 5_000);
    assert.equal(await ready(), 200);

    const gaps = dials.slice(1).map((at, i) => at - dials[i]!);
    console.log(`# outage ${outageMs} ms: ${dials.length} dials at ${dials.map((at) => at - outageAt).join(', ')} ms; changed state applied ${appliedMs} ms after istiod was back`);
    const warnings = lines.filter((l) => l.level >= 40 && l.time >= outageAt).map((l) => l.msg);
    assert.deepEqual(warnings, [warned.msg], 'the outage was said more than once');
    assert.ok(dials.length >= 3, `istiod's port saw ${dials.length} dials in ${outageMs} ms: the agent stopped trying`);
    // grpc-js may dial twice for one attempt (istiod-unreachable.test.ts); one more attempt for the
    // stream that was up when istiod went. Redialling once a second would make 2 × 15 in 15 s.
    const allowed = mostAttempts(outageMs) + 1;
    assert.ok(dials.length <= 2 * allowed, `istiod's port saw ${dials.length} dials in ${outageMs} ms, more than the backoff allows (${allowed} attempts)`);
    assert.ok(Math.max(...gaps) >= Math.min(BACKOFF.maxMs / 2, OUTAGE_MS / 8), `the gaps between dials did not grow: ${gaps.join(', ')} ms`);
  } finally {
    refusing?.close();
    agent.kill('SIGTERM');
    if (agent.exitCode === null) await once(agent, 'exit');
    await back?.stop();
    await istiod.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

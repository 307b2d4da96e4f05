// A restarted agent carries traffic again sooner the fewer modules it loads (docs/reliability.md,
// "Crashes"): `ambit run` loads OpenTelemetry only with a collector to export to, and grpc-js only
// when something calls over gRPC (istiod's CA or xDS, an ext_authz or rate limit service). These start a
// real agent (local YAML, embedded CA, no capture) and read which packages it loaded by the time it was ready.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../../agent/cli/main.ts', import.meta.url));
const RECORDER = fileURLToPath(new URL('./helpers/record-modules.ts', import.meta.url));
const MESH = fileURLToPath(new URL('../fixtures/config/mesh', import.meta.url));
const LOOPBACK = ['--readiness-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0', '--metrics-address', '127.0.0.1:0'];

/** The npm packages an agent started with `flags` had loaded once it logged 'agent ready'. */
async function packagesLoadedUntilReady(flags: readonly string[]): Promise<Set<string>> {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-run-modules-'));
  const record = join(dir, 'modules.txt');
  const run = ['run', '--node', 'n1', '--capture', 'none', '--config', MESH, '--state-dir', join(dir, 'state'), ...LOOPBACK, ...flags];
  const args = ['--import', 'tsx', '--import', RECORDER, MAIN, ...run];
  const agent = spawn(process.execPath, args, { env: { ...process.env, AMBIT_RECORD_MODULES: record } });
  let logs = '';
  const ready = new Promise<void>((resolve, reject) => {
    agent.stdout.on('data', (d: Buffer) => {
      logs += d.toString();
      if (logs.includes('"msg":"agent ready')) resolve();
    });
    agent.stderr.on('data', (d: Buffer) => (logs += d.toString()));
    agent.once('exit', (code) => reject(new Error(`the agent exited (${code}) before it was ready; its log:\n${logs}`)));
  });
  try {
    await ready;
    const urls = (await readFile(record, 'utf8')).split('\n');
    return new Set(urls.flatMap((url) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1] ?? []));
  } finally {
    if (agent.exitCode === null) {
      agent.kill('SIGTERM');
      await once(agent, 'exit');
    }
    await rm(dir, { recursive: true, force: true });
  }
}

// prom-client (the metrics, always on) requires @opentelemetry/api for its exemplars: that one stays.
const TRACING_PACKAGES = /^@opentelemetry\/(?!api$)/;

test('ambit run without --otlp-endpoint, --ca istiod or --source xds loads neither the OpenTelemetry SDK nor grpc-js', { timeout: 180_000 }, async () => {
  const loaded = await packagesLoadedUntilReady([]);
  assert.ok(loaded.has('pino') && loaded.has('yaml'), `the recorder saw the agent's own dependencies: ${[...loaded].join(', ')}`);
  assert.deepEqual([...loaded].filter((p) => TRACING_PACKAGES.test(p)), [], 'OpenTelemetry loads only with a collector (RequestTracer.create)');
  assert.equal(loaded.has('@grpc/grpc-js'), false, 'grpc-js loads only with the first gRPC call (agent/identity/grpc-runtime.ts)');
});

test('with --otlp-endpoint the same start loads the OpenTelemetry SDK and exporter, before it is ready', { timeout: 180_000 }, async () => {
  // Nothing listens there: spans would be dropped, and none are made before a request.
  const loaded = await packagesLoadedUntilReady(['--otlp-endpoint', 'http://127.0.0.1:9/v1/traces']);
  assert.ok(loaded.has('@opentelemetry/sdk-trace-base') && loaded.has('@opentelemetry/exporter-trace-otlp-http'), `loaded: ${[...loaded].join(', ')}`);
  assert.equal(loaded.has('@grpc/grpc-js'), false);
});

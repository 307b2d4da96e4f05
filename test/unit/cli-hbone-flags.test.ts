// `ambit run`'s HBONE engine flags reach the engine the agent starts, with clear errors for bad values,
// and the engine's limit counters reach Prometheus as ambit_hbone_limited_total.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseRunArgs } from '../../agent/cli/run.js';
import { MeshMetrics } from '../../agent/telemetry/metrics.js';
import { EngineHost } from '../../agent/tunnel/hbone/engine-host.js';
import { DEFAULT_RELAY_IDLE_TIMEOUT_MS, setRelayIdleTimeout } from '../../agent/tunnel/relay-idle.js';

const capture = ['--node', 'n1', '--config', 'mesh/', '--capture', 'ebpf', '--pod-cgroup', '/sys/fs/cgroup/pods/{namespace}/{name}'];

test('the engine flags become the engine options of the capture, and the engine runs with them', () => {
  const { config } = parseRunArgs([
    ...capture,
    '--data-threads', '2',
    '--hbone-max-pending-connects', '7',
    '--hbone-max-connections', '900',
    '--hbone-max-connections-per-identity', '30',
    '--hbone-max-connections-per-address', '40',
    '--hbone-max-connection-memory', '8Mi',
    '--hbone-idle-timeout', '90s',
  ]);
  assert.equal(config.capture.mode, 'ebpf');
  const options = config.capture.mode === 'ebpf' ? config.capture.hboneEngine : undefined;
  assert.deepEqual(options, {
    threads: 2,
    maxPendingConnects: 7,
    maxConnections: 900,
    maxConnectionsPerIdentity: 30,
    maxConnectionsPerAddress: 40,
    maxConnectionMemory: 8 * 1024 * 1024,
    idleTimeoutMs: 90_000,
  });
  const host = EngineHost.start({}, options);
  try {
    const effective = host.engine.options();
    assert.deepEqual(
      [effective.threads, effective.maxPendingConnects, effective.maxConnections, effective.maxConnectionsPerIdentity, effective.maxConnectionsPerAddress, effective.maxConnectionMemory, effective.idleTimeoutMs],
      [2, 7, 900, 30, 40, 8 * 1024 * 1024, 90_000],
      'the engine holds the values the flags gave',
    );
  } finally {
    host.close();
  }
});

test('--tcp-idle-timeout reaches the streams the engine carries, as it reaches the relays', () => {
  const { relayIdleTimeoutMs } = parseRunArgs([...capture, '--tcp-idle-timeout', '45s']);
  // What `ambit run` does with it before the agent (and its engine) starts.
  setRelayIdleTimeout(relayIdleTimeoutMs);
  const host = EngineHost.start();
  try {
    assert.equal(host.engine.options().streamIdleTimeoutMs, 45_000);
  } finally {
    host.close();
    setRelayIdleTimeout(DEFAULT_RELAY_IDLE_TIMEOUT_MS);
  }
});

test('bad engine flag values are refused, naming the flag and what it takes', () => {
  const refused = (flag: string, value: string, message: RegExp): void =>
    assert.throws(() => parseRunArgs([...capture, flag, value]), (err: Error) => message.test(err.message), `${flag} ${value}`);
  refused('--data-threads', '0', /--data-threads "0": expected a whole number from 1 to 64/);
  refused('--hbone-max-pending-connects', 'many', /--hbone-max-pending-connects "many": expected a whole number/);
  refused('--hbone-max-connection-memory', '1k', /--hbone-max-connection-memory "1k": expected bytes from 64Ki to 4Gi/);
  refused('--hbone-idle-timeout', '10ms', /--hbone-idle-timeout "10ms": expected a duration of at least 1s/);
});

test('the engine counters are exported: limits by name, events, and what is open', async () => {
  const metrics = new MeshMetrics('test');
  const counts: Record<string, number> = { limitPendingConnects: 3, limitConnectionsPerAddress: 1, connectionsOpen: 2, streamsOpen: 5, resetBeforeAnswer: 4 };
  metrics.registerHboneEngine(() => counts);
  const text = await metrics.registry.metrics();
  assert.match(text, /^ambit_hbone_limited_total\{limit="maxPendingConnects"\} 3$/m);
  assert.match(text, /^ambit_hbone_limited_total\{limit="maxConnectionsPerAddress"\} 1$/m);
  assert.match(text, /^ambit_hbone_limited_total\{limit="maxConnectionMemory"\} 0$/m);
  assert.match(text, /^ambit_hbone_events_total\{event="reset_before_answer"\} 4$/m);
  assert.match(text, /^ambit_hbone_open\{kind="streams"\} 5$/m);
  counts['limitPendingConnects'] = 9;
  assert.match(await metrics.registry.metrics(), /^ambit_hbone_limited_total\{limit="maxPendingConnects"\} 9$/m, 'read again at each scrape');
});

test('HBONE connection ends are exported by cause, as the engine host counted them', async () => {
  const metrics = new MeshMetrics('test');
  const ends: Record<string, number> = { idle: 2, 'ping-timeout': 1 };
  metrics.registerHboneConnectionEnds(() => ends);
  const text = await metrics.registry.metrics();
  assert.match(text, /^ambit_hbone_connections_closed_total\{cause="idle"\} 2$/m);
  assert.match(text, /^ambit_hbone_connections_closed_total\{cause="ping-timeout"\} 1$/m);
  ends['memory-limit'] = 1;
  assert.match(await metrics.registry.metrics(), /^ambit_hbone_connections_closed_total\{cause="memory-limit"\} 1$/m, 'read again at each scrape');
});

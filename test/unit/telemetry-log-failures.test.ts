// Logs that cannot be written cost lines, never the agent (issue 14 §3): the agent's own log on a
// stdout that fails (a full disk under the log file) and the flow log on a full disk or an unwritable
// path. Each case runs the real writer against /dev/full (every write fails with ENOSPC) or a missing
// directory, and checks that the process goes on, counts what it lost, and says so.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { openSync, closeSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FlowLog, type FlowRecord } from '../../agent/telemetry/flow-log.js';
import { captureLog } from './helpers/log-capture.js';

const LOG_MODULE = fileURLToPath(new URL('../../agent/telemetry/log.ts', import.meta.url));

/** A child that logs 20 lines every 10 ms for 1 s through the agent's logger, counting timer ticks; prints {ticks, droppedLines, cpuMs} on stderr. */
const LOGGING_CHILD = `import { createLogger, logWriterStats } from ${JSON.stringify(LOG_MODULE)};
const log = createLogger('info', { node: 'n1' });
let ticks = 0; const cpu = process.cpuUsage();
const timer = setInterval(() => { ticks++; for (let i = 0; i < 20; i++) log.info({ i }, 'connection complete'); }, 10);
setTimeout(() => { clearInterval(timer); const used = process.cpuUsage(cpu); process.stderr.write(JSON.stringify({ ticks, ...logWriterStats(), cpuMs: (used.user + used.system) / 1000 })); process.exit(0); }, 1000);`;

function runLoggingChild(stdoutFd: number): Promise<{ code: number | null; report: Record<string, unknown> }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', LOGGING_CHILD], { stdio: ['ignore', stdoutFd, 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.once('exit', (code) => {
      clearTimeout(killer);
      let report: Record<string, unknown> = {};
      try {
        report = JSON.parse(err.slice(err.lastIndexOf('{'))) as Record<string, unknown>;
      } catch {
        report = { stderr: err.slice(-500) };
      }
      resolve({ code, report });
    });
  });
}

test("the agent's log on a stdout that fails with ENOSPC: the event loop runs on, lines are dropped and counted, no spinning", { timeout: 30_000 }, async () => {
  const full = openSync('/dev/full', 'w');
  try {
    const { code, report } = await runLoggingChild(full);
    assert.equal(code, 0, `the process did not finish on its own (a blocked event loop is killed after 15 s): ${JSON.stringify(report)}`);
    // 100 ticks in 1 s when nothing blocks; a loaded machine gets fewer, a blocked loop none.
    assert.ok(Number(report['ticks']) >= 30, `the event loop ran ${String(report['ticks'])} times in 1 s`);
    assert.ok(Number(report['droppedLines']) > 0, `no dropped line was counted: ${JSON.stringify(report)}`);
    assert.equal(report['failing'], 'ENOSPC');
    // Retries wait a second between tries: the writer costs about what formatting the lines does.
    assert.ok(Number(report['cpuMs']) < 700, `the process used ${String(report['cpuMs'])} ms of CPU in 1 s`);
  } finally {
    closeSync(full);
  }
});

const record = (i: number): FlowRecord => ({
  time: new Date().toISOString(),
  node_name: 'n1',
  flow: {
    time: new Date().toISOString(),
    verdict: 'FORWARDED',
    Type: 'L3_L4',
    node_name: 'n1',
    traffic_direction: 'EGRESS',
    IP: { source: '10.1.0.1', destination: '10.1.0.2', ipVersion: 'IPv4' },
    l4: { TCP: { source_port: 40000 + i, destination_port: 9080 } },
    source: {},
    destination: {},
    is_mtls: true,
    Summary: 'TCP 10/10 bytes',
  },
});

const until = async (what: string, check: () => boolean, ms: number): Promise<void> => {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

test('the flow log on a full disk: records are dropped and counted, one warning says so, the process goes on', { timeout: 30_000 }, async () => {
  const { logger, records } = captureLog();
  const flows = new FlowLog({ kind: 'file', path: '/dev/full', maxBytes: 1 << 20, keep: 1 }, logger);
  try {
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 100; i++) flows.write(record(i));
      await new Promise((r) => setTimeout(r, 50));
    }
    await until('records to be dropped', () => flows.dropped > 0, 5_000);
    const warnings = records.filter((r) => r['level'] === 40);
    assert.equal(warnings.length, 1, `expected one warning, got ${JSON.stringify(warnings)}`);
    assert.match(String(warnings[0]!['msg']), /cannot write the flow log \/dev\/full: .*ENOSPC|no space/i);
    assert.match(String(warnings[0]!['msg']), /ambit_log_lines_dropped_total\{log="flow"\}.*traffic is not affected/);
  } finally {
    await flows.close();
  }
});

test('the flow log at a path that cannot be opened: dropped while it cannot, written again once it can, and both said', { timeout: 30_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-flowlog-'));
  const path = join(dir, 'missing', 'flows.log');
  const { logger, records } = captureLog();
  const flows = new FlowLog({ kind: 'file', path, maxBytes: 1 << 20, keep: 1 }, logger);
  try {
    await until('the open to fail', () => records.some((r) => r['level'] === 40), 5_000);
    for (let i = 0; i < 10; i++) flows.write(record(i));
    assert.equal(flows.dropped, 10);
    assert.match(String(records.find((r) => r['level'] === 40)!['msg']), /cannot write the flow log .*missing\/flows\.log: ENOENT/);
    mkdirSync(join(dir, 'missing'));
    // The file is tried again within REOPEN_MS (5 s); records keep coming meanwhile, as under traffic.
    let i = 10;
    await until('the flow log to be written again', () => {
      flows.write(record(i++));
      return records.some((r) => r['level'] === 30 && /can be written again/.test(String(r['msg'])));
    }, 10_000);
    flows.write(record(i++));
    await flows.close();
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    assert.ok(lines.length >= 2, `the file holds ${lines.length} records after it could be written again`);
    assert.match(String(records.find((r) => r['level'] === 30)!['msg']), new RegExp(`${flows.dropped} flow records were dropped since`));
  } finally {
    await flows.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

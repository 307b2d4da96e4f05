// YAML and JSON nesting bombs against every parser of configuration: local files, Kubernetes list
// bodies and watch events. On Node 20 the yaml package turns the first stack overflows into errors and
// then V8 aborts (exit 134); on Node 24 every parse overflows, and a deep API object still crashes the
// agent through JSON.stringify. So each attack runs in a child process (fixtures/nesting-bomb-child.ts)
// and the test reads its exit status, what it kept and what it said.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MAX_CONFIG_BYTES, MAX_NESTING_DEPTH } from '../../agent/config/input-limits.js';
import { parseConfigFile } from '../../agent/config/load.js';
import { KubeApiClient } from '../../agent/sources/kubernetes/api-client.js';

const CHILD = fileURLToPath(new URL('./fixtures/nesting-bomb-child.ts', import.meta.url));
const TIMES = 10;
const DEPTH = 5000;

interface ChildRun {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

function runChild(mode: string): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, mode, String(TIMES), String(DEPTH)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    });
  });
}

function survived<T>(run: ChildRun): T {
  assert.equal(run.signal, null, `the child was killed by ${run.signal}: ${run.stderr.slice(-2000)}`);
  assert.equal(run.status, 0, `the child exited with ${run.status}: ${run.stderr.slice(-2000)}`);
  return JSON.parse(run.stdout) as T;
}

describe('nesting bombs', () => {
  it(`the bomb is real: the yaml package alone cannot parse it (Node 20 aborts within ${TIMES} parses, Node 24 overflows its stack on each)`, async () => {
    const run = await runChild('raw-yaml');
    if (run.signal === 'SIGABRT' || run.status === 134) return;
    const result = survived<{ survived: number; overflowed: number }>(run);
    assert.equal(result.overflowed, TIMES, `expected a V8 abort or a stack overflow on every parse, got ${run.stdout}`);
  });

  it(`local files: a ${DEPTH}-deep document is refused ${TIMES} times with its file and line, and the file's last good objects stay`, async () => {
    const result = survived<{ survived: number; objects: string[]; diagnostics: string[] }>(await runChild('files'));
    assert.equal(result.survived, TIMES);
    assert.deepEqual(result.objects, ['Namespace/shop']);
    const refused = result.diagnostics.filter((d) => d.includes('refused unread'));
    assert.equal(refused.length, 1, result.diagnostics.join('\n'));
    assert.match(refused[0]!, new RegExp(`/mesh\\.yaml:6: refused unread: collections nest deeper than ${MAX_NESTING_DEPTH} levels`));
  });

  it(`Kubernetes: a bomb in a list body and in ${TIMES} watch events is refused by API path; the pod keeps its last good version and later events apply`, async () => {
    const result = survived<{ survived: number; before: string[]; namespaces: string[]; workloads: string[]; logs: string[] }>(await runChild('kubernetes'));
    assert.deepEqual(result.before, ['shop/web']);
    assert.deepEqual(result.workloads, ['shop/web'], 'the good version of the bombed pod stays in force');
    assert.deepEqual(result.namespaces, ['after-bombs', 'shop'], 'the watch went on past the bombs');
    assert.ok(result.logs.some((m) => m.startsWith('kube-apiserver:/api/v1/namespaces/shop/pods/bomb-listed:1: refused unread')), result.logs.join('\n'));
    assert.ok(result.logs.some((m) => m.startsWith('kube-apiserver:/api/v1/namespaces/shop/pods/web:1: refused unread')), result.logs.join('\n'));
  });
});

describe('configuration limits in one process', () => {
  const nested = (depth: number): string => `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  x: ${'['.repeat(depth - 2)}${']'.repeat(depth - 2)}\n`;

  it(`accepts ${MAX_NESTING_DEPTH} levels and refuses ${MAX_NESTING_DEPTH + 1}, naming the line`, () => {
    // The root mapping and `data` are two levels; the flow sequences make up the rest.
    assert.equal(parseConfigFile(nested(MAX_NESTING_DEPTH), 'ok.yaml').readable, true);
    const refused = parseConfigFile(nested(MAX_NESTING_DEPTH + 1), 'deep.yaml');
    assert.equal(refused.readable, false);
    assert.deepEqual(refused.diagnostics.map((d) => `${d.location.file}:${d.location.line}`), ['deep.yaml:5']);
  });

  it('counts block nesting too: "- - - -" on one line, and indentation', () => {
    const compact = parseConfigFile(`a: 1\n---\n${'- '.repeat(DEPTH)}x\n`, 'compact.yaml');
    assert.equal(compact.readable, false);
    assert.equal(compact.diagnostics[0]?.location.line, 3);
    const indented = Array.from({ length: MAX_NESTING_DEPTH + 1 }, (_, i) => `${' '.repeat(i)}k:`).join('\n');
    assert.equal(parseConfigFile(`${indented} 1\n`, 'indented.yaml').readable, false);
  });

  it(`refuses a file over ${MAX_CONFIG_BYTES / 1024 / 1024} MiB before parsing it`, () => {
    const result = parseConfigFile(`# ${'x'.repeat(MAX_CONFIG_BYTES)}\n`, 'huge.yaml');
    assert.equal(result.readable, false);
    assert.match(result.diagnostics[0]!.message, /over the 4\.0 MiB limit for one configuration file; split it/);
  });

  it('does not expand aliases: a billion-laughs document is read as one small object', () => {
    const levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i < 10; i++) levels.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill(`*${String.fromCharCode(96 + i)}`).join(',')}]`);
    const text = `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: laughs\n  labels: {}\n${levels.map((l) => `x${l}`).join('\n')}\n`;
    const started = process.hrtime.bigint();
    const result = parseConfigFile(text, 'laughs.yaml');
    assert.equal(result.objects.length, 1);
    assert.ok(process.hrtime.bigint() - started < 1_000_000_000n, 'parsed in under a second');
  });

  it('refuses a Kubernetes list body over 128 MiB while it streams, instead of buffering it whole', async () => {
    // A server that never ends its answer: only a bound on what is buffered ends the call.
    const chunk = Buffer.alloc(1024 * 1024, 0x20);
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const pump = (): void => {
        while (res.write(chunk)) if (res.destroyed) return;
        res.once('drain', pump);
      };
      res.on('close', () => res.removeAllListeners('drain'));
      pump();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const client = new KubeApiClient({ server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, credentials: async () => ({ headers: {} }) });
      const timeout = new Promise<'timeout'>((resolve) => setTimeout(resolve, 20_000, 'timeout').unref());
      const result = await Promise.race([client.list('/api/v1/pods', { limit: 500 }), timeout]);
      assert.notEqual(result, 'timeout', 'the list call never returned');
      assert.ok(result !== 'timeout' && !result.ok);
      assert.match(result.error.message, /^reading the list of \/api\/v1\/pods: the answer is larger than 128 MiB; refused before decoding it$/);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

// `ambit run`'s L7 flags: the HTTP servers' header, request and idle timeouts and the path
// normalization reach the agent's configuration, with their defaults, and mistakes are refused with a
// message that names the flag.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseRunArgs } from '../../agent/cli/run.js';
import { UsageError } from '../../agent/cli/usage.js';

const common = ['--node', 'n1', '--capture', 'none', '--config', 'mesh/'];

test('defaults: Node\'s 60 s for headers and 300 s for a request, Istio\'s 1 h idle, MERGE_SLASHES', () => {
  assert.deepEqual(parseRunArgs(common).config.http, {
    limits: { headersTimeoutMs: 60_000, requestTimeoutMs: 300_000, idleTimeoutMs: 3_600_000 },
    pathNormalization: 'MERGE_SLASHES',
  });
});

test('each flag sets its bound; 0 turns the request and idle timeouts off', () => {
  const http = parseRunArgs([...common, '--http-headers-timeout', '10s', '--http-request-timeout', '0', '--http-idle-timeout', '90s', '--path-normalization', 'BASE']).config.http;
  assert.deepEqual(http, { limits: { headersTimeoutMs: 10_000, requestTimeoutMs: 0, idleTimeoutMs: 90_000 }, pathNormalization: 'BASE' });
});

test('mistakes are refused naming the flag', () => {
  const refused = (args: string[], message: RegExp) => assert.throws(() => parseRunArgs([...common, ...args]), (err: Error) => err instanceof UsageError && message.test(err.message));
  refused(['--http-headers-timeout', '0'], /headers timeout must be above 0/);
  refused(['--http-headers-timeout', 'soon'], /--http-headers-timeout "soon": expected a duration/);
  refused(['--http-headers-timeout', '2m', '--http-request-timeout', '1m'], /cannot exceed the request timeout/);
  refused(['--http-idle-timeout=-1s'], /--http-idle-timeout "-1s"/);
  refused(['--path-normalization', 'merge_slashes'], /--path-normalization "merge_slashes": expected NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES/);
});

// A data-path listener that Node tells of accept failures (agent/tunnel/accept-errors.ts): each one is
// counted by listener and error, the log says what happened and what to do once per 10 s, and the
// listener keeps serving. Without the handler the second such error would end the agent (an 'error'
// event with no listener throws).

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, connect, createServer } from 'node:net';
import { test } from 'node:test';
import { Counter, Registry } from 'prom-client';
import { survivesAcceptErrors } from '../../agent/tunnel/accept-errors.js';
import { captureLog } from './helpers/log-capture.js';

test('accept errors are counted and said once per 10 s, and the listener goes on accepting', async () => {
  const { logger, records } = captureLog();
  const refused = new Counter({ name: 'ambit_accept_errors_total', help: 'test', labelNames: ['listener', 'error'], registers: [new Registry()] });
  const server = createServer((socket) => socket.end('ok'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    survivesAcceptErrors(server, 'outbound', logger, refused);
    // What net.Server emits when libuv reports a failed accept.
    for (let i = 0; i < 3; i++) server.emit('error', Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', syscall: 'accept' }));
    server.emit('error', Object.assign(new Error('accept ENOBUFS'), { code: 'ENOBUFS', syscall: 'accept' }));
    const counts = (await refused.get()).values.map((v) => `${v.labels['listener']} ${v.labels['error']} ${v.value}`);
    assert.deepEqual(counts.sort(), ['outbound EMFILE 3', 'outbound ENOBUFS 1']);
    const errors = records.filter((r) => r['level'] === 50);
    assert.equal(errors.length, 1, `expected one report in 10 s, got ${errors.length}`);
    assert.match(String(errors[0]!['msg']), /the outbound listener cannot accept connections \(EMFILE\): the agent is at its open-files limit \(\d+\).*raise it/);
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
    let answer = '';
    client.on('data', (d: Buffer) => (answer += d.toString()));
    await once(client, 'close');
    assert.equal(answer, 'ok', 'the listener stopped accepting after the errors');
  } finally {
    server.close();
  }
});

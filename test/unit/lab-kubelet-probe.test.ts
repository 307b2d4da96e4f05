// The lab kubelet's httpGet probe (agent/lab/kubelet.ts curlProbeArgs), run with the real curl against
// loopback servers: the status is what curl prints, an HTTPS probe does not verify the certificate, and
// httpHeaders reach the server as given.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { curlProbeArgs } from '../../agent/lab/kubelet.js';
import type { LabProbe } from '../../agent/lab/plan.js';
import { selfSignedTls } from './helpers/self-signed.js';

let seen: IncomingHttpHeaders | undefined;
const answer = (req: IncomingMessage, res: ServerResponse): void => {
  seen = req.headers;
  res.writeHead(req.url === '/ready' ? 204 : 503).end();
};
const plain = http.createServer(answer);
let tls: https.Server | undefined;

const portOf = (s: http.Server): number => (s.address() as AddressInfo).port;
const curl = (args: string[]): Promise<string> =>
  new Promise((resolve) => execFile('curl', args, { timeout: 10_000 }, (_err, stdout) => resolve(stdout)));
const probe = (port: number, more: Partial<LabProbe & { kind: 'httpGet' }> = {}): LabProbe & { kind: 'httpGet' } => ({
  kind: 'httpGet',
  path: 'ready',
  port,
  resolvedPort: port,
  scheme: 'HTTP',
  httpHeaders: [],
  periodSeconds: 1,
  timeoutSeconds: 2,
  failureThreshold: 1,
  successThreshold: 1,
  ...more,
});

before(async () => {
  tls = https.createServer(await selfSignedTls('lab-probe.invalid'), answer);
  await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => tls!.listen(0, '127.0.0.1', r));
});

after(async () => {
  await new Promise<void>((r) => plain.close(() => r()));
  await new Promise<void>((r) => tls!.close(() => r()));
});

test('HTTP: the path gets its slash and the status is printed', async () => {
  assert.equal(await curl(curlProbeArgs('127.0.0.1', probe(portOf(plain)))), '204');
  assert.equal(await curl(curlProbeArgs('127.0.0.1', probe(portOf(plain), { path: '/other' }))), '503');
});

test('HTTPS: the self-signed certificate is accepted, as by a kubelet; httpHeaders are sent', async () => {
  const headers = [{ name: 'Host', value: 'web.internal' }, { name: 'X-Probe', value: 'lab' }];
  assert.equal(await curl(curlProbeArgs('127.0.0.1', probe(portOf(tls!), { scheme: 'HTTPS', httpHeaders: headers }))), '204');
  assert.equal(seen?.['host'], 'web.internal');
  assert.equal(seen?.['x-probe'], 'lab');
});

// includeRequestBodyInCheck through the real inbound proxy, against real authorizers on loopback (HTTP,
// and gRPC serving envoy.service.auth.v3.Authorization/Check): the body reaches the authorizer as text
// (http.body) or bytes (raw_body, packAsBytes), cut to maxRequestBytes with x-envoy-auth-partial-body
// when allowPartialMessage, 413 without asking anyone when not; the pod still receives every byte, and
// a provider without the setting lets the body stream.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { AUTHORIZATION_SERVICE } from '../../agent/policy/ext-authz-grpc.js';
import { type CheckRequest, type CheckResponse, CheckResponseSchema } from '../../agent/proto/envoy/service/auth/v3/external_auth_pb.js';
import { type InboundHarness, inboundHarness } from './helpers/inbound-harness.js';

interface HttpCheck {
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

const MAX = 64;
/** Past the 1 MiB the proxy keeps of a body for retries. */
const LARGE = 2 * 1024 * 1024;
const httpChecks: HttpCheck[] = [];
const grpcChecks: CheckRequest[] = [];
/** Told of each gRPC check as it arrives. */
const grpcCheckArrived = new EventEmitter();
let httpAuthz: http.Server;
let grpcAuthz: grpc.Server;
let harness: InboundHarness;

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

before(async () => {
  httpAuthz = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      httpChecks.push({ headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => httpAuthz.listen(0, '127.0.0.1', r));
  grpcAuthz = new grpc.Server();
  grpcAuthz.addService(AUTHORIZATION_SERVICE, {
    Check: (call: grpc.ServerUnaryCall<CheckRequest, CheckResponse>, done: grpc.sendUnaryData<CheckResponse>) => {
      grpcChecks.push(call.request);
      grpcCheckArrived.emit('check', call.request);
      done(null, create(CheckResponseSchema, { status: { code: 0 }, httpResponse: { case: 'okResponse', value: {} } }));
    },
  });
  const grpcPort = await new Promise<number>((resolve, reject) => grpcAuthz.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, port) => (e ? reject(e) : resolve(port))));
  const httpPort = (httpAuthz.address() as AddressInfo).port;
  const policy = (name: string, provider: string, path: string) => `
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ${name}, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  action: CUSTOM
  provider: {name: ${provider}}
  rules: [{to: [{operation: {paths: ["${path}"]}}]}]`;
  harness = await inboundHarness(
    `
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    extensionProviders:
    - name: grpc-text
      envoyExtAuthzGrpc:
        service: 127.0.0.1
        port: ${grpcPort}
        includeRequestBodyInCheck: {maxRequestBytes: ${MAX}}
    - name: grpc-bytes-partial
      envoyExtAuthzGrpc:
        service: 127.0.0.1
        port: ${grpcPort}
        includeRequestBodyInCheck: {maxRequestBytes: ${MAX}, allowPartialMessage: true, packAsBytes: true}
    - name: grpc-large
      envoyExtAuthzGrpc:
        service: 127.0.0.1
        port: ${grpcPort}
        includeRequestBodyInCheck: {maxRequestBytes: ${LARGE}, packAsBytes: true}
    - name: grpc-plain
      envoyExtAuthzGrpc: {service: 127.0.0.1, port: ${grpcPort}}
    - name: http-partial
      envoyExtAuthzHttp:
        service: 127.0.0.1
        port: ${httpPort}
        includeRequestHeadersInCheck: ["x-envoy-auth-partial-body"]
        includeRequestBodyInCheck: {maxRequestBytes: ${MAX}, allowPartialMessage: true}
    - name: http-strict
      envoyExtAuthzHttp:
        service: 127.0.0.1
        port: ${httpPort}
        failOpen: true
        includeRequestBodyInCheck: {maxRequestBytes: ${MAX}}` +
      policy('grpc-text', 'grpc-text', '/grpc-text/*') +
      policy('grpc-bytes', 'grpc-bytes-partial', '/grpc-bytes/*') +
      policy('grpc-large', 'grpc-large', '/grpc-large/*') +
      policy('grpc-plain', 'grpc-plain', '/grpc-plain/*') +
      policy('http-partial', 'http-partial', '/http-partial/*') +
      policy('http-strict', 'http-strict', '/http-strict/*'),
  );
});

after(async () => {
  await harness.close();
  httpAuthz.close();
  grpcAuthz.forceShutdown();
});

test('gRPC: a body within maxRequestBytes goes whole in http.body, marked not partial, and the pod gets it', async () => {
  const body = Buffer.from('{"order": 42, "note": "fits in the check"}');
  const answer = await harness.request('/grpc-text/orders', { 'content-type': 'application/json' }, body);
  assert.equal(answer.status, 200);
  const http = grpcChecks.at(-1)!.attributes!.request!.http!;
  assert.equal(http.body, body.toString());
  assert.equal(http.rawBody.length, 0);
  assert.equal(http.size, BigInt(body.length));
  assert.equal(http.headers['x-envoy-auth-partial-body'], 'false');
  assert.deepEqual(harness.podRequests.at(-1)!.body, { bytes: body.length, sha256: sha256(body) });
});

test('a body over maxRequestBytes without allowPartialMessage is 413 before any authorizer is asked, failOpen or not; the connection serves the next request', async () => {
  for (const path of ['/grpc-text/big', '/http-strict/big']) {
    const checks = grpcChecks.length + httpChecks.length;
    const pods = harness.podRequests.length;
    // 16 MiB: more than loopback's socket buffers hold, so the proxy must read the rest for the connection to go on.
    const answer = await harness.request(path, {}, Buffer.alloc(16 * 1024 * 1024, 'b'));
    assert.equal(answer.status, 413, path);
    assert.equal(answer.body, 'Payload Too Large');
    assert.equal(grpcChecks.length + httpChecks.length, checks, 'no authorizer was asked');
    assert.equal(harness.podRequests.length, pods, 'the pod was not reached');
  }
  // The harness's client keeps one connection: this request goes on the one the 413s were answered on.
  const exact = Buffer.alloc(MAX, 'a');
  assert.equal((await harness.request('/http-strict/exact', {}, exact)).status, 200, 'a body of exactly maxRequestBytes passes');
  assert.deepEqual(httpChecks.at(-1)!.body, exact);
});

test('gRPC packAsBytes with allowPartialMessage: the first maxRequestBytes in raw_body as they are, partial: true; the pod gets all 2 MiB', async () => {
  const body = randomBytes(LARGE);
  const answer = await harness.request('/grpc-bytes/upload', { 'x-envoy-auth-partial-body': 'false' }, body);
  assert.equal(answer.status, 200);
  const http = grpcChecks.at(-1)!.attributes!.request!.http!;
  assert.deepEqual(Buffer.from(http.rawBody), body.subarray(0, MAX));
  assert.equal(http.body, '');
  assert.equal(http.headers['x-envoy-auth-partial-body'], 'true', "the proxy's header, not the client's");
  assert.deepEqual(harness.podRequests.at(-1)!.body, { bytes: body.length, sha256: sha256(body) });
});

test('a maxRequestBytes above the 1 MiB kept for retries: the whole 1.5 MiB body is held for the check and still reaches the pod', async () => {
  const body = randomBytes(1.5 * 1024 * 1024);
  assert.equal((await harness.request('/grpc-large/upload', {}, body)).status, 200);
  const http = grpcChecks.at(-1)!.attributes!.request!.http!;
  assert.equal(sha256(Buffer.from(http.rawBody)), sha256(body));
  assert.equal(http.headers['x-envoy-auth-partial-body'], 'false');
  assert.deepEqual(harness.podRequests.at(-1)!.body, { bytes: body.length, sha256: sha256(body) });
});

test('HTTP with allowPartialMessage: the authorizer gets the first maxRequestBytes with their Content-Length and the listed partial header; the pod gets everything', async () => {
  const body = Buffer.from('x'.repeat(1000));
  const answer = await harness.request('/http-partial/form', {}, body);
  assert.equal(answer.status, 200);
  const check = httpChecks.at(-1)!;
  assert.deepEqual(check.body, body.subarray(0, MAX));
  assert.equal(check.headers['content-length'], String(MAX));
  assert.equal(check.headers['x-envoy-auth-partial-body'], 'true');
  assert.deepEqual(harness.podRequests.at(-1)!.body, { bytes: body.length, sha256: sha256(body) });
});

test('a provider without includeRequestBodyInCheck sends no body; a request without a body is checked without one', async () => {
  assert.equal((await harness.request('/grpc-plain/x', {}, Buffer.from('not for the authorizer'))).status, 200);
  const plain = grpcChecks.at(-1)!.attributes!.request!.http!;
  assert.equal(plain.body, '');
  assert.equal(plain.size, -1n);
  assert.equal(plain.headers['x-envoy-auth-partial-body'], undefined);
  assert.equal(harness.podRequests.at(-1)!.body.sha256, sha256(Buffer.from('not for the authorizer')));
  assert.equal((await harness.request('/grpc-text/get')).status, 200);
  assert.equal(grpcChecks.at(-1)!.attributes!.request!.http!.headers['x-envoy-auth-partial-body'], undefined);
});

test('without includeRequestBodyInCheck the body streams: the check is made while the client is still sending it', async () => {
  const checked = once(grpcCheckArrived, 'check', { signal: AbortSignal.timeout(5000) });
  const answered = new Promise<number>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: harness.port, path: '/grpc-plain/stream', method: 'POST', headers: { host: 'reviews:9080' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.once('error', reject);
    req.write('first part, ');
    // The rest is sent only once the authorizer was asked: a proxy that waited for the body would never ask.
    checked.then(() => req.end('then the rest'), (error: Error) => req.destroy(error));
  });
  const [check] = (await checked) as [CheckRequest];
  assert.equal(check.attributes!.request!.http!.path, '/grpc-plain/stream');
  assert.equal(await answered, 200);
  assert.equal(harness.podRequests.at(-1)!.body.sha256, sha256(Buffer.from('first part, then the rest')));
});

test('over HTTP/2 (as a gRPC client sends): the body goes with the check in DATA frames past maxRequestBytes, and the pod gets it whole', async () => {
  const session = http2.connect(`http://127.0.0.1:${harness.port}`);
  try {
    const body = randomBytes(300_000);
    const stream = session.request({ ':method': 'POST', ':path': '/grpc-bytes/h2', ':authority': 'reviews:9080' });
    stream.end(body);
    const [headers] = (await once(stream, 'response', { signal: AbortSignal.timeout(10_000) })) as [http2.IncomingHttpHeaders];
    stream.resume();
    await once(stream, 'end');
    assert.equal(headers[':status'], 200);
    const check = grpcChecks.at(-1)!.attributes!.request!.http!;
    assert.equal(check.path, '/grpc-bytes/h2');
    assert.deepEqual(Buffer.from(check.rawBody), body.subarray(0, MAX));
    assert.equal(check.headers['x-envoy-auth-partial-body'], 'true');
    assert.deepEqual(harness.podRequests.at(-1)!.body, { bytes: body.length, sha256: sha256(body) });
  } finally {
    session.close();
  }
});

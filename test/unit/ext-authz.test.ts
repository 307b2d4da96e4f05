// CUSTOM AuthorizationPolicy through the real inbound proxy, against real authorizers on loopback: an
// HTTP one and a gRPC one serving envoy.service.auth.v3.Authorization/Check (written here, as Istio's
// ext-authz sample behaves: allow when `x-ext-authz: allow`). MeshConfig comes from the istio-system/istio
// ConfigMap. Checked: allow with headersToUpstreamOnAllow / ok_response headers reaching the pod, denial
// with the authorizer's status, body and headers, failOpen, statusOnError, the timeout, a policy that
// does not match asking no one, an unknown provider denying, and a targetRefs policy applying.

import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { AUTHORIZATION_SERVICE } from '../../agent/policy/ext-authz-grpc.js';
import { type CheckRequest, type CheckResponse, CheckResponseSchema } from '../../agent/proto/envoy/service/auth/v3/external_auth_pb.js';
import { type InboundHarness, PRODUCTPAGE, inboundHarness } from './helpers/inbound-harness.js';

const DENIED_BODY = 'denied by ext_authz for not found header `x-ext-authz: allow` in the request';
const httpChecks: http.IncomingHttpHeaders[] = [];
const grpcChecks: CheckRequest[] = [];
let httpAuthz: http.Server;
let grpcAuthz: grpc.Server;
let silent: http.Server;
let grpcPort = 0;
let harness: InboundHarness;

before(async () => {
  httpAuthz = http.createServer((req, res) => {
    httpChecks.push({ ...req.headers, ':path': req.url ?? '' });
    const allowed = req.headers['x-ext-authz'] === 'allow';
    res.writeHead(allowed ? 200 : 403, { 'x-ext-authz-check-result': allowed ? 'allowed' : 'denied', 'x-other': 'not copied' }).end(allowed ? '' : DENIED_BODY);
  });
  await new Promise<void>((r) => httpAuthz.listen(0, '127.0.0.1', r));
  silent = http.createServer(() => {}); // takes the check and never answers
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  grpcAuthz = new grpc.Server();
  grpcAuthz.addService(AUTHORIZATION_SERVICE, {
    Check: (call: grpc.ServerUnaryCall<CheckRequest, CheckResponse>, done: grpc.sendUnaryData<CheckResponse>) => {
      grpcChecks.push(call.request);
      const allowed = call.request.attributes?.request?.http?.headers['x-ext-authz'] === 'allow';
      const header = (value: string) => ({ header: { key: 'x-ext-authz-check-result', value } });
      done(
        null,
        create(
          CheckResponseSchema,
          allowed
            ? { status: { code: 0 }, httpResponse: { case: 'okResponse', value: { headers: [header('allowed')], headersToRemove: ['x-ext-authz'] } } }
            : { status: { code: 7 }, httpResponse: { case: 'deniedResponse', value: { status: { code: 418 }, headers: [header('denied')], body: DENIED_BODY } } },
        ),
      );
    },
  });
  grpcPort = await new Promise<number>((resolve, reject) => grpcAuthz.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, port) => (e ? reject(e) : resolve(port))));
  const port = (s: http.Server) => (s.address() as AddressInfo).port;
  harness = await inboundHarness(
    `
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    extensionProviders:
    - name: sample-ext-authz-http
      envoyExtAuthzHttp:
        service: 127.0.0.1
        port: ${port(httpAuthz)}
        includeRequestHeadersInCheck: ["x-ext-authz"]
        headersToUpstreamOnAllow: ["x-ext-authz-check-*"]
        headersToDownstreamOnDeny: ["x-ext-authz-check-result"]
    - name: sample-ext-authz-grpc
      envoyExtAuthzGrpc:
        service: 127.0.0.1
        port: ${grpcPort}
    - name: down
      envoyExtAuthzHttp: {service: 127.0.0.1, port: 1, statusOnError: "503"}
    - name: down-open
      envoyExtAuthzGrpc: {service: 127.0.0.1, port: 1, failOpen: true}
    - name: slow
      envoyExtAuthzHttp: {service: 127.0.0.1, port: ${port(silent)}, timeout: 0.2s}
    - name: zipkin
      zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz-http, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  action: CUSTOM
  provider: {name: sample-ext-authz-http}
  rules: [{to: [{operation: {paths: ["/http/*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz-grpc, namespace: bookinfo}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  action: CUSTOM
  provider: {name: sample-ext-authz-grpc}
  rules: [{to: [{operation: {paths: ["/grpc/*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz-other-service, namespace: bookinfo}
spec:
  targetRefs: [{kind: Service, name: ratings}]
  action: CUSTOM
  provider: {name: down}
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: errors, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  action: CUSTOM
  provider: {name: down}
  rules: [{to: [{operation: {paths: ["/down"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: errors-open, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  action: CUSTOM
  provider: {name: down-open}
  rules: [{to: [{operation: {paths: ["/open"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: slow, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  action: CUSTOM
  provider: {name: slow}
  rules: [{to: [{operation: {paths: ["/slow"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: typo, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  action: CUSTOM
  provider: {name: no-such-provider}
  rules: [{to: [{operation: {paths: ["/typo"]}}]}]
`,
  );
});

after(async () => {
  await harness.close();
  httpAuthz.close();
  silent.closeAllConnections();
  silent.close();
  grpcAuthz.forceShutdown();
});

test('HTTP authorizer: allowed with its header copied to the pod, denied with its status, body and listed header', async () => {
  harness.podRequests.length = 0;
  const allowed = await harness.request('/http/headers?x=1', { 'x-ext-authz': 'allow', 'x-secret': 'not sent' });
  assert.equal(allowed.status, 200);
  assert.equal(harness.podRequests.at(-1)!.headers['x-ext-authz-check-result'], 'allowed');
  assert.equal(harness.podRequests.at(-1)!.headers['x-other'], undefined, 'only the listed headers go upstream');
  const check = httpChecks.at(-1)!;
  assert.equal(check[':path'], '/http/headers?x=1');
  assert.equal(check.host, 'reviews:9080');
  assert.equal(check['x-ext-authz'], 'allow');
  assert.equal(check['x-secret'], undefined, 'headers not in includeRequestHeadersInCheck stay with the agent');
  const denied = await harness.request('/http/headers', { 'x-ext-authz': 'deny' });
  assert.equal(denied.status, 403);
  assert.equal(denied.body, DENIED_BODY);
  assert.equal(denied.headers['x-ext-authz-check-result'], 'denied');
  assert.equal(denied.headers['x-other'], undefined);
});

test('gRPC authorizer (Authorization/Check), attached by targetRefs to the Service: ok_response headers applied, denied_response sent as it is', async () => {
  harness.podRequests.length = 0;
  const allowed = await harness.request('/grpc/x', { 'x-ext-authz': 'allow' });
  assert.equal(allowed.status, 200);
  const atPod = harness.podRequests.at(-1)!.headers;
  assert.equal(atPod['x-ext-authz-check-result'], 'allowed');
  assert.equal(atPod['x-ext-authz'], undefined, 'headers_to_remove removed it');
  const attrs = grpcChecks.at(-1)!.attributes!;
  assert.equal(attrs.source?.principal, PRODUCTPAGE);
  assert.equal(attrs.request?.http?.path, '/grpc/x');
  assert.equal(attrs.request?.http?.method, 'GET');
  assert.equal(attrs.destination?.address?.address.case === 'socketAddress' && attrs.destination.address.address.value.portValue, 9080);
  const denied = await harness.request('/grpc/x', { 'x-ext-authz': 'no' });
  assert.equal(denied.status, 418);
  assert.equal(denied.body, DENIED_BODY);
  assert.equal(denied.headers['x-ext-authz-check-result'], 'denied');
});

test('a request no CUSTOM rule matches asks no authorizer; a policy targeting another Service does not apply', async () => {
  const asked = httpChecks.length + grpcChecks.length;
  assert.equal((await harness.request('/reviews/1')).status, 200);
  assert.equal(httpChecks.length + grpcChecks.length, asked);
});

test('authorizer failures: statusOnError, failOpen, the timeout, and an unknown provider fails closed', async () => {
  assert.equal((await harness.request('/down')).status, 503);
  assert.equal((await harness.request('/open')).status, 200);
  const started = Date.now();
  const slow = await harness.request('/slow');
  assert.equal(slow.status, 403);
  assert.ok(Date.now() - started < 5000, `the 0.2 s timeout applied (took ${Date.now() - started} ms)`);
  const typo = await harness.request('/typo');
  assert.equal(typo.status, 403);
  assert.equal(typo.body, 'RBAC: access denied');
  assert.ok(harness.logLines.some((l) => String(l['msg']).includes('"no-such-provider"')), 'the unknown provider is logged');
});

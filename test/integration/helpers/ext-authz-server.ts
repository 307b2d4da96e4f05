// The lab's external authorizer, run as a pod's command: Istio's ext-authz sample as its docs describe it
// (allow when the request has `x-ext-authz: allow`, answer x-ext-authz-check-result, deny with 403 and
// its sentence), over HTTP on one port and as envoy.service.auth.v3.Authorization/Check over gRPC on
// another; plus a JWKS document served over HTTP for RequestAuthentication's jwksUri. A gRPC check that
// carries the request body (includeRequestBodyInCheck) is printed with it.
// argv: <http port> <grpc port> <jwks port> <jwks file>. Each check is printed as one JSON line.

import { readFileSync } from 'node:fs';
import http from 'node:http';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { AUTHORIZATION_SERVICE } from '../../../agent/policy/ext-authz-grpc.js';
import { type CheckRequest, type CheckResponse, CheckResponseSchema } from '../../../agent/proto/envoy/service/auth/v3/external_auth_pb.js';

const [httpPort, grpcPort, jwksPort, jwksFile] = process.argv.slice(2);
const DENIED = 'denied by ext_authz for not found header `x-ext-authz: allow` in the request';

http
  .createServer((req, res) => {
    const allowed = req.headers['x-ext-authz'] === 'allow';
    console.log(JSON.stringify({ via: 'http', path: req.url, allowed }));
    res.writeHead(allowed ? 200 : 403, { 'x-ext-authz-check-result': allowed ? 'allowed' : 'denied' }).end(allowed ? '' : DENIED);
  })
  .listen(Number(httpPort));

http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(readFileSync(jwksFile!))).listen(Number(jwksPort));

const server = new grpc.Server();
server.addService(AUTHORIZATION_SERVICE, {
  Check: (call: grpc.ServerUnaryCall<CheckRequest, CheckResponse>, done: grpc.sendUnaryData<CheckResponse>) => {
    const httpAttrs = call.request.attributes?.request?.http;
    const allowed = httpAttrs?.headers['x-ext-authz'] === 'allow';
    // The body the proxy sent with the check (includeRequestBodyInCheck), when it sent one.
    const body = httpAttrs?.headers['x-envoy-auth-partial-body'] === undefined ? {} : { body: httpAttrs.body, partial: httpAttrs.headers['x-envoy-auth-partial-body'] };
    console.log(JSON.stringify({ via: 'grpc', path: httpAttrs?.path, source: call.request.attributes?.source?.principal, allowed, ...body }));
    const result = { header: { key: 'x-ext-authz-check-result', value: allowed ? 'allowed' : 'denied' } };
    done(
      null,
      create(
        CheckResponseSchema,
        allowed
          ? { status: { code: 0 }, httpResponse: { case: 'okResponse', value: { headers: [result] } } }
          : { status: { code: 7 }, httpResponse: { case: 'deniedResponse', value: { status: { code: 403 }, headers: [result], body: DENIED } } },
      ),
    );
  },
});
server.bindAsync(`0.0.0.0:${grpcPort}`, grpc.ServerCredentials.createInsecure(), (error) => {
  if (error) throw error;
});

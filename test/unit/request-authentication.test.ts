// RequestAuthentication through the real inbound proxy: Istio's JWT task (a token from an issuer the rule
// names gets in; a forged one is 401; none passes on, and a requestPrincipals policy then answers 403),
// RS256 inline and ES256 from a jwksUri on loopback (fetched once, then cached), the token locations
// (header prefix, query parameter, cookie), forwardOriginalToken, outputPayloadToHeader and
// outputClaimToHeaders (a client cannot send those itself), and request.auth.claims conditions.

import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { type InboundHarness, inboundHarness } from './helpers/inbound-harness.js';
import { nowSeconds, signToken, testIssuer } from './helpers/jwt-tokens.js';

const rsa = testIssuer('RS256', 'rsa-1');
const ec = testIssuer('ES256', 'ec-1');
const stranger = testIssuer('RS256', 'rsa-1');
let jwksFetches = 0;
let jwksServer: http.Server;
let harness: InboundHarness;

const claims = (iss: string, extra: Record<string, unknown> = {}) => ({ iss, sub: 'alice', aud: 'reviews', exp: nowSeconds() + 600, ...extra });

before(async () => {
  jwksServer = http.createServer((_req, res) => {
    jwksFetches++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(ec.jwks);
  });
  await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
  const jwksUri = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`;
  harness = await inboundHarness(
    `
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules:
  - issuer: testing@secure.istio.io
    jwks: '${rsa.jwks}'
    audiences: [reviews]
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders: [{header: x-jwt-user, claim: sub}]
  - issuer: https://ec.example
    jwksUri: ${jwksUri}
    fromHeaders: [{name: x-token, prefix: "Token "}]
    fromParams: [token]
    fromCookies: [session]
    forwardOriginalToken: true
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from: [{source: {requestPrincipals: ["testing@secure.istio.io/*", "https://ec.example/alice"]}}]
    to: [{operation: {paths: ["/secure*"]}}]
  - to: [{operation: {paths: ["/public"]}}]
  - to: [{operation: {paths: ["/admin"]}}]
    when: [{key: "request.auth.claims[groups]", values: ["admins"]}]
  - to: [{operation: {paths: ["/write"]}}]
    when: [{key: "request.auth.claims[scope]", values: ["write"]}]
`,
  );
});

after(async () => {
  await harness.close();
  jwksServer.close();
});

test("Istio's JWT task: a valid token is 200, a forged one 401, none passes on to the requestPrincipals policy's 403", async () => {
  const good = await harness.request('/secure', { authorization: `Bearer ${signToken(rsa, claims('testing@secure.istio.io'))}` });
  assert.equal(good.status, 200);
  const forged = await harness.request('/secure', { authorization: `Bearer ${signToken(stranger, claims('testing@secure.istio.io'))}` });
  assert.equal(forged.status, 401);
  assert.equal(forged.body, 'Jwt verification fails');
  assert.match(String(forged.headers['www-authenticate']), /^Bearer realm="http:\/\/reviews:9080\/secure", error="invalid_token"$/);
  const forgedOnPublic = await harness.request('/public', { authorization: `Bearer ${signToken(stranger, claims('testing@secure.istio.io'))}` });
  assert.equal(forgedOnPublic.status, 401, 'an invalid token is refused wherever it is sent');
  assert.equal((await harness.request('/public')).status, 200, 'no token: authentication passes, the policy allows /public');
  const missing = await harness.request('/secure');
  assert.equal(missing.status, 403);
  assert.equal(missing.body, 'RBAC: access denied');
  const wrongAudience = await harness.request('/secure', { authorization: `Bearer ${signToken(rsa, claims('testing@secure.istio.io', { aud: 'ratings' }))}` });
  assert.equal(wrongAudience.status, 401);
  assert.equal(wrongAudience.body, 'Audiences in Jwt are not allowed');
  const unknownIssuer = await harness.request('/public', { authorization: `Bearer ${signToken(rsa, claims('https://other.example'))}` });
  assert.equal(unknownIssuer.status, 401);
  assert.equal(unknownIssuer.body, 'Jwt issuer is not configured');
});

test('the token is not forwarded, the payload and a claim are, and a client cannot forge those headers', async () => {
  harness.podRequests.length = 0;
  const token = signToken(rsa, claims('testing@secure.istio.io'));
  assert.equal((await harness.request('/secure', { authorization: `Bearer ${token}`, 'x-jwt-user': 'mallory' })).status, 200);
  const seen = harness.podRequests.at(-1)!.headers;
  assert.equal(seen.authorization, undefined, 'forwardOriginalToken is false: the token stays with the agent');
  assert.equal(seen['x-jwt-user'], 'alice');
  assert.deepEqual(JSON.parse(Buffer.from(String(seen['x-jwt-payload']), 'base64url').toString()), claims('testing@secure.istio.io', { exp: JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).exp }));
  assert.equal((await harness.request('/public', { 'x-jwt-user': 'mallory', 'x-jwt-payload': 'e30' })).status, 200);
  const anonymous = harness.podRequests.at(-1)!.headers;
  assert.equal(anonymous['x-jwt-user'], undefined);
  assert.equal(anonymous['x-jwt-payload'], undefined);
});

test('ES256 from a jwksUri, fetched once and cached; header prefix, query parameter and cookie locations; forwardOriginalToken keeps it', async () => {
  const before = jwksFetches;
  const token = signToken(ec, claims('https://ec.example'));
  harness.podRequests.length = 0;
  assert.equal((await harness.request('/secure', { 'x-token': `Token ${token}` })).status, 200);
  assert.equal(harness.podRequests.at(-1)!.headers['x-token'], `Token ${token}`, 'forwarded as sent');
  assert.equal((await harness.request(`/secure?token=${token}`)).status, 200);
  assert.equal((await harness.request('/secure', { cookie: `theme=dark; session=${token}` })).status, 200);
  assert.equal(jwksFetches - before, 1, 'one fetch for three requests');
  // Authorization: Bearer is where the other rule looks (its default), not this issuer's rule: refused.
  const misplaced = await harness.request('/secure', { authorization: `Bearer ${token}` });
  assert.equal(misplaced.status, 401);
  assert.equal(misplaced.body, 'Jwt issuer is not configured');
});

test('request.auth.claims: a list claim matches when one element does', async () => {
  const admin = signToken(rsa, claims('testing@secure.istio.io', { groups: ['dev', 'admins'] }));
  const dev = signToken(rsa, claims('testing@secure.istio.io', { groups: ['dev'] }));
  assert.equal((await harness.request('/admin', { authorization: `Bearer ${admin}` })).status, 200);
  assert.equal((await harness.request('/admin', { authorization: `Bearer ${dev}` })).status, 403);
  assert.equal((await harness.request('/admin')).status, 403);
});

test('request.auth.claims[scope] is matched word by word, as Istio splits scope and permission on spaces', async () => {
  const token = (scope: string) => signToken(rsa, claims('testing@secure.istio.io', { scope }));
  assert.equal((await harness.request('/write', { authorization: `Bearer ${token('read write')}` })).status, 200);
  assert.equal((await harness.request('/write', { authorization: `Bearer ${token('read rewrite')}` })).status, 403);
});

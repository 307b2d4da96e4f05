// Double HBONE with an independent client: the Go HBONE peer (Go's own TLS and HTTP/2) opens a CONNECT
// to `ambit gateway` and, inside that stream, its own TLS session and CONNECT to the destination node's
// HBONE server, as ztunnel nests them. Our gateway must route on the Service authority and relay the
// inner session untouched: the Go client checks the destination's identity itself, and the destination
// sees the Go client's.

import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import type { WorkloadCertificate } from '../../agent/identity/workload-certificate.js';
import type { SpiffeId } from '../../agent/state/model.js';
import { CLIENT, type DoubleHboneMesh, GATEWAY, GATEWAY_IP, HOSTNAME, INTRUDER, REVIEWS, REVIEWS_IP, startDoubleHboneMesh } from '../fixtures/hbone/double-hbone-mesh.js';
import { type PemFiles, buildGoPeer, run, writePem } from '../fixtures/hbone/peers.js';
import { tempDir } from '../fixtures/identity/test-ca.js';

describe('double HBONE interop: the Go peer nests one tunnel in another through ambit gateway', () => {
  let mesh: DoubleHboneMesh;
  let dir: string;
  let binary: string;

  const pemOf = async (identity: SpiffeId, name: string): Promise<PemFiles> => {
    const result = await mesh.trust.certificates.fetch(identity);
    if (!result.ok) assert.fail(result.error.message);
    return writePem(dir, name, result.value as WorkloadCertificate);
  };
  const nested = async (pem: PemFiles, message: string): Promise<string> => {
    const gateway = `${GATEWAY_IP}:${mesh.gatewayPort}`;
    const { stdout } = await run(binary, ['nested', gateway, `${HOSTNAME}:9080`, pem.cert, pem.key, pem.ca, GATEWAY, REVIEWS, 'net1', message], { timeout: 20_000 });
    return stdout.trim();
  };

  before(async () => {
    mesh = await startDoubleHboneMesh();
    dir = await tempDir('double-hbone-interop');
    binary = await buildGoPeer(dir);
  }, { timeout: 240_000 });

  after(async () => {
    await mesh?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the Go client reaches the destination through the gateway, each side proving its identity to the other', { timeout: 60_000 }, async () => {
    const client = await pemOf(CLIENT, 'client');
    assert.equal(await nested(client, 'hello from go, twice wrapped'), 'outer 200 inner 200 proto HTTP/2.0 echo hello from go, twice wrapped');
    const inner = mesh.seenByDestination.at(-1);
    assert.ok(inner, 'the destination got the inner CONNECT');
    assert.equal(inner.peerIdentity, CLIENT, 'the inner mTLS carried the Go client\'s identity through the gateway');
    assert.deepEqual(inner.service, { hostname: HOSTNAME, port: 9080 });
    assert.equal(inner.authority.ip, REVIEWS_IP);
    assert.equal(inner.headers.originNetwork, 'net1');
    const outer = mesh.gatewayEvents.find((e) => e.type === 'tunnel-opened');
    assert.ok(outer && outer.type === 'tunnel-opened' && outer.request.peerIdentity === CLIENT);
  });

  it('the gateway answers a client its policy does not allow with 401 on the outer CONNECT', { timeout: 60_000 }, async () => {
    const intruder = await pemOf(INTRUDER, 'intruder');
    const seen = mesh.seenByDestination.length;
    assert.equal(await nested(intruder, 'let me in'), 'outer status 401');
    assert.equal(mesh.seenByDestination.length, seen, 'nothing reached the destination');
  });
});

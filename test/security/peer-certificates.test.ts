// Certificates a client of the HBONE server (15008) may present that chain to the mesh's own root and
// must still be refused: expired, not yet valid, made for servers only (EKU), naming two identities,
// or a CA certificate passed off as a workload's. Each is signed here with the mesh CA's real key, next
// to a control certificate made the same way that is accepted, so a refusal is the check, not the craft.

import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect as connectTls } from 'node:tls';
import { ECDSA_P256, generateP256KeyPair, privateKeyToPem, x509 } from '../../agent/identity/pki.js';
import { spiffeId } from '../../agent/state/model.js';
import { type TestHboneServer, type TestTrust, openTrust, startHboneServer } from '../fixtures/hbone/mesh.js';
import { type TestCa, makePluggedInCa, tempDir } from '../fixtures/identity/test-ca.js';

const TD = 'cluster.local';
const SERVER = spiffeId(TD, 'shop', 'web');
const CLIENT = spiffeId(TD, 'shop', 'client');
const POD_IP = '127.0.0.2';
const HOUR_MS = 3600 * 1000;

interface Leaf {
  readonly identities?: readonly string[];
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  readonly usages?: readonly string[];
  readonly ca?: boolean;
}

describe('HBONE server: client certificates from our own root that must still be refused', () => {
  let dir: string;
  let ca: TestCa;
  let trust: TestTrust;
  let server: TestHboneServer;

  before(async () => {
    dir = await tempDir('peer-certs');
    ca = await makePluggedInCa(join(dir, 'cacerts'), { intermediate: false });
    trust = await openTrust(TD, [SERVER], ca.dir);
    server = await startHboneServer(trust, new Map([[POD_IP, SERVER]]));
  });

  after(async () => {
    await server?.close();
    await trust?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** A workload certificate as Ambit's CA makes one, signed by the mesh CA, with `leaf`'s changes. */
  async function sign(leaf: Leaf): Promise<{ cert: string; key: string }> {
    const keys = await generateP256KeyPair();
    const signer = new x509.X509Certificate(ca.signingPem);
    const cert = await x509.X509CertificateGenerator.create({
      issuer: signer.subjectName,
      publicKey: keys.publicKey,
      signingKey: ca.signingKeys.privateKey,
      signingAlgorithm: ECDSA_P256,
      notBefore: leaf.notBefore ?? new Date(Date.now() - HOUR_MS),
      notAfter: leaf.notAfter ?? new Date(Date.now() + HOUR_MS),
      extensions: [
        new x509.BasicConstraintsExtension(leaf.ca ?? false, undefined, true),
        new x509.KeyUsagesExtension(leaf.ca ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.digitalSignature : x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        new x509.ExtendedKeyUsageExtension([...(leaf.usages ?? [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth])]),
        await x509.AuthorityKeyIdentifierExtension.create(ca.signingKeys.publicKey),
        new x509.SubjectAlternativeNameExtension((leaf.identities ?? [CLIENT]).map((value) => ({ type: 'url' as const, value })), true),
      ],
    });
    return { cert: `${cert.toString('pem')}\n`, key: await privateKeyToPem(keys.privateKey) };
  }

  /** Connects with `leaf` and reports how the server ended it: refused with its reason, or accepted. */
  async function present(leaf: Leaf): Promise<{ refused?: string; accepted: boolean }> {
    const before = server.events.length;
    const { cert, key } = await sign(leaf);
    const socket = connectTls({ host: POD_IP, port: server.port, cert, key, ca: ca.rootPem, ALPNProtocols: ['h2'], rejectUnauthorized: false });
    socket.on('error', () => undefined);
    socket.resume();
    const deadline = Date.now() + 5_000;
    for (;;) {
      const seen = server.events.slice(before);
      const refused = seen.find((e) => e.type === 'connection-refused');
      if (refused?.type === 'connection-refused') {
        socket.destroy();
        return { refused: refused.reason, accepted: false };
      }
      if (seen.some((e) => e.type === 'session-opened')) {
        socket.destroy();
        return { accepted: true };
      }
      if (Date.now() > deadline) {
        socket.destroy();
        assert.fail(`the server neither accepted nor refused the client within 5 s: ${JSON.stringify(seen)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  it('accepts the control: a certificate made the same way, valid now, for both usages, one identity', async () => {
    assert.deepEqual(await present({}), { accepted: true });
  });

  it('refuses an expired certificate', async () => {
    const outcome = await present({ notBefore: new Date(Date.now() - 2 * HOUR_MS), notAfter: new Date(Date.now() - HOUR_MS) });
    assert.match(outcome.refused ?? 'accepted', /expired/);
  });

  it('refuses a certificate that is not valid yet', async () => {
    const outcome = await present({ notBefore: new Date(Date.now() + HOUR_MS), notAfter: new Date(Date.now() + 2 * HOUR_MS) });
    assert.match(outcome.refused ?? 'accepted', /not yet valid/);
  });

  it('refuses a certificate whose extended key usage allows serving only, not a client', async () => {
    const outcome = await present({ usages: [x509.ExtendedKeyUsage.serverAuth] });
    assert.match(outcome.refused ?? 'accepted', /purpose/);
  });

  it('refuses a certificate that names two identities', async () => {
    const outcome = await present({ identities: [CLIENT, spiffeId(TD, 'kube-system', 'admin')] });
    assert.match(outcome.refused ?? 'accepted', /URI/);
  });

  it('refuses a CA certificate presented as a workload', async () => {
    const outcome = await present({ ca: true });
    assert.ok(outcome.refused, 'a CA certificate was accepted as a client');
  });
});

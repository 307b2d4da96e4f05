// A throwaway self-signed certificate (P-256, one hour) for loopback TLS servers whose certificate the
// client under test must not verify, made with the library the agent uses.

import { ECDSA_P256, generateP256KeyPair, privateKeyToPem, x509 } from '../../../agent/identity/pki.js';

export async function selfSignedTls(commonName: string): Promise<{ cert: string; key: string }> {
  const keys = await generateP256KeyPair();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: `CN=${commonName}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3_600_000),
    keys,
    signingAlgorithm: ECDSA_P256,
  });
  return { cert: cert.toString('pem'), key: await privateKeyToPem(keys.privateKey) };
}

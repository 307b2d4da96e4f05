// The CA's signing key and certificates, from disk: the operator's plugged-in CA (Istio's `cacerts`
// layout) or the agent's own root, generated once and kept in the state directory so that restarts
// keep the trust every peer already has. Everything loaded is validated before anything is signed.

import { X509Certificate, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { verifyChain, describeCertificate, sameCertificate } from './chain.js';
import { type IdentityResult, fail, messageOf, ok } from './errors.js';
import { type SigningKey, ECDSA_P256, generateP256KeyPair, importSigningKey, privateKeyToPem, splitPemCertificates, x509 } from './pki.js';

/** The file names of Istio's plugged-in CA secret (`cacerts`), which this directory layout copies. */
export const CA_FILES = { caCert: 'ca-cert.pem', caKey: 'ca-key.pem', rootCert: 'root-cert.pem', certChain: 'cert-chain.pem' } as const;

export interface CaMaterial {
  readonly origin: 'generated' | 'persisted' | 'plugged-in';
  readonly dir: string;
  /** The certificate whose key signs workload certificates: the root itself, or an intermediate. */
  readonly signingCert: x509.X509Certificate;
  readonly signingKey: SigningKey;
  /** The signing certificate and the intermediates above it, roots excluded: what follows every leaf. */
  readonly chainPem: readonly string[];
  readonly rootsPem: readonly string[];
  /** Key identifier of the signing certificate, copied into every issued certificate's AKI. */
  readonly authorityKeyId: string;
}

export interface OpenCaOptions {
  /** The agent's state directory; its own root lives in `<stateDir>/ca/`. */
  readonly stateDir: string;
  /** A plugged-in CA directory; when set, nothing is generated and nothing in the state dir is used. */
  readonly pluggedInDir?: string;
  readonly trustDomain: string;
  /** Lifetime of a generated root. Default: ten years, as istiod's self-signed root. */
  readonly rootTtlSeconds?: number;
}

const TEN_YEARS_SECONDS = 10 * 365 * 24 * 3600;
/** Certificates start this much in the past, so that a peer whose clock lags a little accepts them. */
export const CLOCK_SKEW_SECONDS = 120;

/** The plugged-in CA if configured, else the persisted root, else a new root written to the state dir. */
export async function openCaMaterial(options: OpenCaOptions): Promise<IdentityResult<CaMaterial>> {
  if (options.pluggedInDir !== undefined) return loadCaDirectory(options.pluggedInDir, 'plugged-in');
  const dir = join(options.stateDir, 'ca');
  const exists = await stat(dir).then(() => true, () => false);
  if (!exists) return generateRootCa(dir, options.trustDomain, options.rootTtlSeconds ?? TEN_YEARS_SECONDS);
  const loaded = await loadCaDirectory(dir, 'persisted');
  if (loaded.ok) return loaded;
  // Never replace a broken root silently: every peer trusts the old one and would refuse the new.
  return fail(
    'ca-files',
    `${loaded.error.message} (this is the agent's own CA; to start over with a new root, remove ${dir}, and every peer will need the new root-cert.pem)`,
    loaded.error.file,
  );
}

/** Reads and cross-checks the four files; every error names the file and what to change in it. */
export async function loadCaDirectory(dir: string, origin: 'persisted' | 'plugged-in'): Promise<IdentityResult<CaMaterial>> {
  const path = (name: string): string => join(dir, name);
  const texts = new Map<string, string>();
  for (const name of [CA_FILES.caCert, CA_FILES.caKey, CA_FILES.rootCert, CA_FILES.certChain]) {
    try {
      texts.set(name, await readFile(path(name), 'utf8'));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const what = code === 'ENOENT' ? 'missing' : `cannot be read (${messageOf(err)})`;
      return fail('ca-files', `${path(name)}: ${what}; a CA directory needs ca-cert.pem, ca-key.pem, root-cert.pem and cert-chain.pem`, path(name));
    }
  }
  const certificates = (name: string): X509Certificate[] | string => {
    try {
      const pems = splitPemCertificates(texts.get(name) ?? '');
      return pems.length > 0 ? pems.map((pem) => new X509Certificate(pem)) : 'holds no PEM certificate';
    } catch (err) {
      return `holds a certificate that cannot be parsed (${messageOf(err)})`;
    }
  };

  const caCerts = certificates(CA_FILES.caCert);
  if (typeof caCerts === 'string') return fail('ca-files', `${path(CA_FILES.caCert)}: ${caCerts}`, path(CA_FILES.caCert));
  if (caCerts.length !== 1) {
    return fail('ca-files', `${path(CA_FILES.caCert)}: holds ${caCerts.length} certificates; it must hold only the signing certificate (put intermediates in cert-chain.pem)`, path(CA_FILES.caCert));
  }
  const caCert = caCerts[0]!;
  if (!caCert.ca) {
    return fail('ca-files', `${path(CA_FILES.caCert)}: ${describeCertificate(caCert)} is not a CA certificate (basicConstraints CA:TRUE is missing), so it cannot sign workload certificates`, path(CA_FILES.caCert));
  }
  const signingCert = new x509.X509Certificate(caCert.raw);
  const keyUsage = signingCert.getExtension(x509.KeyUsagesExtension);
  if (keyUsage && (keyUsage.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
    return fail('ca-files', `${path(CA_FILES.caCert)}: its keyUsage lacks keyCertSign, so it may not sign certificates; reissue it with keyCertSign`, path(CA_FILES.caCert));
  }
  if (new Date() > new Date(caCert.validTo)) {
    return fail('ca-files', `${path(CA_FILES.caCert)}: expired on ${caCert.validTo}; plug in a renewed CA certificate`, path(CA_FILES.caCert));
  }

  const key = await importSigningKey(texts.get(CA_FILES.caKey) ?? '');
  if (!key.ok) return fail('ca-files', `${path(CA_FILES.caKey)}: ${key.error.message}`, path(CA_FILES.caKey));
  if (!caCert.checkPrivateKey(key.value.keyObject)) {
    return fail('ca-files', `${path(CA_FILES.caKey)}: does not match the certificate in ${path(CA_FILES.caCert)}; put the private key of that certificate here`, path(CA_FILES.caKey));
  }

  const roots = certificates(CA_FILES.rootCert);
  if (typeof roots === 'string') return fail('ca-files', `${path(CA_FILES.rootCert)}: ${roots}`, path(CA_FILES.rootCert));
  const notRoot = roots.find((root) => !root.ca || !root.checkIssued(root) || !root.verify(root.publicKey));
  if (notRoot) {
    return fail('ca-files', `${path(CA_FILES.rootCert)}: ${describeCertificate(notRoot)} is not a self-signed CA certificate; root-cert.pem holds only roots`, path(CA_FILES.rootCert));
  }

  const chain = certificates(CA_FILES.certChain);
  if (typeof chain === 'string') return fail('ca-files', `${path(CA_FILES.certChain)}: ${chain}`, path(CA_FILES.certChain));
  // Istio's cert-chain.pem is ca-cert, its intermediates, then the root; the roots travel separately.
  const chainBelowRoots = chain.filter((cert) => !roots.some((root) => sameCertificate(root, cert)));
  const signingIsRoot = roots.some((root) => sameCertificate(root, caCert));
  if (!signingIsRoot && (chainBelowRoots.length === 0 || !sameCertificate(chainBelowRoots[0]!, caCert))) {
    return fail('ca-files', `${path(CA_FILES.certChain)}: must start with the certificate in ca-cert.pem, then its intermediates (cat ca-cert.pem <intermediates> root-cert.pem > cert-chain.pem)`, path(CA_FILES.certChain));
  }
  const verified = verifyChain(caCert, chainBelowRoots.slice(1), roots);
  if (!verified.ok) {
    return fail('ca-files', `${path(CA_FILES.certChain)}: does not lead from ca-cert.pem to a root in root-cert.pem: ${verified.problem}`, path(CA_FILES.certChain));
  }

  const ski = signingCert.getExtension(x509.SubjectKeyIdentifierExtension);
  const authorityKeyId = ski?.keyId ?? (await x509.SubjectKeyIdentifierExtension.create(signingCert.publicKey)).keyId;
  return ok({
    origin,
    dir,
    signingCert,
    signingKey: key.value,
    // The verified path, not the file: it holds exactly the certificates a peer needs, in order.
    chainPem: verified.path.filter((cert) => !roots.some((root) => sameCertificate(root, cert))).map((cert) => cert.toString()),
    rootsPem: roots.map((root) => root.toString()),
    authorityKeyId,
  });
}

/** Makes a P-256 root, writes it in the same four-file layout (key 0600), then loads it back. */
async function generateRootCa(dir: string, trustDomain: string, ttlSeconds: number): Promise<IdentityResult<CaMaterial>> {
  const keys = await generateP256KeyPair();
  const now = Date.now();
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    keys,
    signingAlgorithm: ECDSA_P256,
    name: [{ O: [trustDomain] }, { CN: ['Ambit root CA'] }],
    serialNumber: randomSerial(),
    notBefore: new Date(now - CLOCK_SKEW_SECONDS * 1000),
    notAfter: new Date(now + ttlSeconds * 1000),
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const certPem = root.toString('pem') + '\n';
  // Write beside the final place and rename, so a crash never leaves a half-written CA behind.
  const staging = `${dir}.staging-${process.pid}`;
  try {
    await rm(staging, { recursive: true, force: true });
    await mkdir(staging, { recursive: true, mode: 0o700 });
    await writeFile(join(staging, CA_FILES.caKey), await privateKeyToPem(keys.privateKey), { mode: 0o600 });
    for (const name of [CA_FILES.caCert, CA_FILES.rootCert, CA_FILES.certChain]) {
      await writeFile(join(staging, name), certPem, { mode: 0o644 });
    }
    await rename(staging, dir);
  } catch (err) {
    await rm(staging, { recursive: true, force: true }).catch(() => undefined);
    return fail('ca-files', `${dir}: cannot write the new root CA (${messageOf(err)}); the state directory must be writable by the agent`, dir);
  }
  const loaded = await loadCaDirectory(dir, 'persisted');
  return loaded.ok ? ok({ ...loaded.value, origin: 'generated' }) : loaded;
}

/** 128 random bits, top bit cleared so the DER INTEGER stays positive (RFC 5280 §4.1.2.2). */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  return bytes.toString('hex');
}

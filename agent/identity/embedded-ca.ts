// The CA that signs workload certificates from CSRs with the material from ca-material.ts, for
// identities the requesting node is entitled to: inside the agent in local mode and the lab (through
// the same CaClient interface as a remote CA), and inside `ambit ca` (agent/ca/) in a cluster.

import { isIP } from 'node:net';
import type { SpiffeId } from '../state/model.js';
import type { CaClient } from './ca-client.js';
import { type CaMaterial, type OpenCaOptions, CLOCK_SKEW_SECONDS, openCaMaterial, randomSerial } from './ca-material.js';
import { verifyWorkloadCsr } from './csr.js';
import { type IdentityResult, fail, messageOf, ok } from './errors.js';
import { type IdentitiesOnNode, authorizeNode } from './node-authorization.js';
import { x509 } from './pki.js';
import { parseSpiffeId } from './spiffe.js';

export interface EmbeddedCaOptions {
  readonly trustDomain: string;
  readonly identitiesOnNode: IdentitiesOnNode;
  /** Longest lifetime a requester may ask for. Default: 90 days, istiod's MAX_WORKLOAD_CERT_TTL. */
  readonly maxTtlSeconds?: number;
  /** How far NotBefore is backdated for peers with lagging clocks. Default: CLOCK_SKEW_SECONDS. */
  readonly clockSkewSeconds?: number;
}

export interface SignRequest {
  /** The node the request comes from; in local mode, the agent's own node. */
  readonly requestingNode: string;
  readonly identity: SpiffeId;
  readonly ttlSeconds: number;
}

const NINETY_DAYS_SECONDS = 90 * 24 * 3600;

export class EmbeddedCa {
  readonly #material: CaMaterial;
  readonly #options: EmbeddedCaOptions;

  /** Loads the plugged-in CA, or the persisted root, or makes one; see openCaMaterial. */
  static async open(options: OpenCaOptions & EmbeddedCaOptions): Promise<IdentityResult<EmbeddedCa>> {
    const material = await openCaMaterial(options);
    return material.ok ? ok(new EmbeddedCa(material.value, options)) : material;
  }

  constructor(material: CaMaterial, options: EmbeddedCaOptions) {
    this.#material = material;
    this.#options = options;
  }

  /** Where the CA came from and where its files are, for the start-up log. */
  get origin(): Pick<CaMaterial, 'origin' | 'dir'> {
    return { origin: this.#material.origin, dir: this.#material.dir };
  }

  /** The roots peers must trust: root-cert.pem. */
  get rootsPem(): readonly string[] {
    return this.#material.rootsPem;
  }

  /** Issues a certificate for `request.identity` to the key that signed `csrPem`, leaf first and root last. */
  async sign(csrPem: string, request: SignRequest): Promise<IdentityResult<readonly string[]>> {
    const parsed = parseSpiffeId(request.identity);
    if (!parsed.ok) return parsed;
    if (parsed.value.trustDomain !== this.#options.trustDomain) {
      return fail('invalid-request', `this CA issues identities in trust domain ${this.#options.trustDomain}, and ${request.identity} is in ${parsed.value.trustDomain}`);
    }
    const maxTtl = this.#options.maxTtlSeconds ?? NINETY_DAYS_SECONDS;
    if (!Number.isInteger(request.ttlSeconds) || request.ttlSeconds <= 0 || request.ttlSeconds > maxTtl) {
      return fail('invalid-request', `requested lifetime ${request.ttlSeconds} s for ${request.identity} is not a whole number of seconds from 1 to ${maxTtl}`);
    }
    // Authorization before the CSR check: it is cheaper, and a refused node learns nothing more.
    const authorized = authorizeNode(this.#options.identitiesOnNode, request.requestingNode, request.identity);
    if (!authorized.ok) return authorized;
    const csr = await verifyWorkloadCsr(csrPem, request.identity);
    if (!csr.ok) return csr;

    return this.#issue(request.identity, csr.value.publicKeySpki, request.ttlSeconds, [{ type: 'url', value: request.identity }], [
      x509.ExtendedKeyUsage.serverAuth,
      x509.ExtendedKeyUsage.clientAuth,
    ]);
  }

  /**
   * A TLS server certificate for this CA's own endpoint (`ambit ca`), for `names` (DNS names or IP
   * addresses) and `publicKeySpki`, chained to the same roots the workloads trust, as istiod serves
   * port 15012 with a certificate from its own CA.
   */
  async issueServingCertificate(publicKeySpki: ArrayBuffer, names: readonly string[], ttlSeconds: number): Promise<IdentityResult<readonly string[]>> {
    if (names.length === 0) return fail('invalid-request', 'a serving certificate needs at least one DNS name or IP address');
    const sans = names.map((name): x509.JsonGeneralName => (isIP(name) !== 0 ? { type: 'ip', value: name } : { type: 'dns', value: name }));
    return this.#issue(names.join(', '), publicKeySpki, ttlSeconds, sans, [x509.ExtendedKeyUsage.serverAuth]);
  }

  /** Signs one leaf with an empty subject (as Istio): the SANs alone name it, so they are critical. */
  async #issue(
    what: string,
    publicKeySpki: ArrayBuffer,
    ttlSeconds: number,
    sans: readonly x509.JsonGeneralName[],
    usages: readonly string[],
  ): Promise<IdentityResult<readonly string[]>> {
    const material = this.#material;
    const now = Date.now();
    // A leaf that outlives its issuer would fail verification at the end anyway; end it with the CA.
    const notAfter = Math.min(now + ttlSeconds * 1000, material.signingCert.notAfter.getTime());
    try {
      const publicKey = new x509.PublicKey(publicKeySpki);
      const leaf = await x509.X509CertificateGenerator.create({
        issuer: material.signingCert.subjectName,
        publicKey,
        signingKey: material.signingKey.cryptoKey,
        signingAlgorithm: material.signingKey.signingAlgorithm,
        serialNumber: randomSerial(),
        notBefore: new Date(now - (this.#options.clockSkewSeconds ?? CLOCK_SKEW_SECONDS) * 1000),
        notAfter: new Date(notAfter),
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
          new x509.ExtendedKeyUsageExtension([...usages]),
          await x509.SubjectKeyIdentifierExtension.create(publicKey),
          new x509.AuthorityKeyIdentifierExtension(material.authorityKeyId),
          new x509.SubjectAlternativeNameExtension([...sans], true),
        ],
      });
      return ok([`${leaf.toString('pem')}\n`, ...material.chainPem, ...material.rootsPem]);
    } catch (err) {
      return fail('ca-unavailable', `signing the certificate for ${what} failed: ${messageOf(err)}`);
    }
  }

  /** This CA as a node's CaClient: every request is made on behalf of `node`. */
  clientFor(node: string): CaClient {
    return { requestCertificate: (csrPem, identity, ttlSeconds) => this.sign(csrPem, { requestingNode: node, identity, ttlSeconds }) };
  }
}

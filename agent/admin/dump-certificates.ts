// The certificates this node holds, as ztunnel dumps them (src/admin.rs CertsDump and CertDump).

import { X509Certificate } from 'node:crypto';
import type { CertificateStatus } from '../identity/certificate-manager.js';
import { compareBytes } from './byte-order.js';

/** One certificate as ztunnel dumps it. */
export interface CertDump {
  /** The PEM text, base64-encoded (as ztunnel: the PEM's own line breaks would not survive JSON tooling). */
  readonly pem: string;
  /** Decimal, as ztunnel; istioctl prints it in hex. */
  readonly serialNumber: string;
  /** RFC 3339, whole seconds, UTC. */
  readonly validFrom: string;
  readonly expirationTime: string;
}

/** One identity's certificates: the leaf and intermediates, and the roots apart. */
export interface CertsDump {
  readonly identity: string;
  /** `Initializing`, `Available` or `Unavailable: <why>`. */
  readonly state: string;
  readonly certChain: readonly CertDump[];
  readonly rootCerts: readonly CertDump[];
}

/** As ztunnel's dump_certs: sorted by identity; chains only for Available certificates. */
export function certificatesDump(statuses: readonly CertificateStatus[]): CertsDump[] {
  return [...statuses]
    .sort((a, b) => compareBytes(a.identity, b.identity))
    .map((s): CertsDump => {
      const c = s.certificate;
      if (s.state !== 'Available' || !c) {
        return { identity: s.identity, state: s.state === 'Unavailable' ? `Unavailable: ${s.error ?? 'unknown error'}` : s.state, certChain: [], rootCerts: [] };
      }
      return { identity: s.identity, state: 'Available', certChain: [c.leafPem, ...c.intermediatesPem].map(certDump), rootCerts: c.rootsPem.map(certDump) };
    });
}

function certDump(pem: string): CertDump {
  const cert = new X509Certificate(pem);
  return {
    pem: Buffer.from(pem).toString('base64'),
    serialNumber: BigInt(`0x${cert.serialNumber}`).toString(10),
    validFrom: rfc3339Seconds(new Date(cert.validFrom)),
    expirationTime: rfc3339Seconds(new Date(cert.validTo)),
  };
}

function rfc3339Seconds(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}

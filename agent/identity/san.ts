// The SPIFFE id a certificate speaks for: its one URI subjectAltName, read with node:crypto. Node
// prints SANs as `TYPE:value, TYPE:value` and JSON-quotes any value that holds a comma or quote, so the
// reader below splits on that grammar rather than on ", " (which a crafted URI could forge).

import type { X509Certificate } from 'node:crypto';
import type { SpiffeId } from '../state/model.js';
import { type IdentityResult, fail } from './errors.js';
import { parseSpiffeId } from './spiffe.js';

export interface SanEntry {
  /** `URI`, `DNS`, `IP Address`, `email`, … as node:crypto names them. */
  readonly type: string;
  readonly value: string;
}

/**
 * Exactly one URI SAN, a valid SPIFFE id; DNS or IP SANs beside it are allowed (Istio ignores them).
 * Messages describe the certificate as "it", for the caller to say whose certificate it is.
 */
export function spiffeIdOfCertificate(cert: X509Certificate): IdentityResult<SpiffeId> {
  const entries = parseSubjectAltName(cert.subjectAltName ?? '');
  if (entries === undefined) return fail('untrusted-peer', `its subjectAltName cannot be read: ${JSON.stringify(cert.subjectAltName)}`);
  const uris = entries.filter((entry) => entry.type === 'URI');
  if (uris.length !== 1) {
    const listed = uris.length > 0 ? ` (${uris.map((u) => u.value).join(', ')})` : '';
    return fail('untrusted-peer', `it carries ${uris.length} URI subjectAltNames${listed}; a workload certificate carries exactly one, its SPIFFE id`);
  }
  const parsed = parseSpiffeId(uris[0]!.value);
  return parsed.ok ? { ok: true, value: parsed.value.id } : fail('untrusted-peer', `its URI subjectAltName is unusable: ${parsed.error.message}`);
}

/** Splits node:crypto's subjectAltName text; undefined when it does not follow node's grammar. */
export function parseSubjectAltName(text: string): SanEntry[] | undefined {
  const entries: SanEntry[] = [];
  let at = 0;
  while (at < text.length) {
    const colon = text.indexOf(':', at);
    if (colon < 0) return undefined;
    const type = text.slice(at, colon);
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      end = closingQuote(text, colon + 2);
      if (end < 0) return undefined;
      try {
        value = JSON.parse(text.slice(colon + 1, end + 1)) as string;
      } catch {
        return undefined;
      }
      end += 1;
    } else {
      const comma = text.indexOf(', ', colon + 1);
      end = comma < 0 ? text.length : comma;
      value = text.slice(colon + 1, end);
    }
    entries.push({ type, value });
    if (end === text.length) break;
    if (!text.startsWith(', ', end)) return undefined;
    at = end + 2;
  }
  return entries;
}

function closingQuote(text: string, from: number): number {
  for (let i = from; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === '"') return i;
  }
  return -1;
}

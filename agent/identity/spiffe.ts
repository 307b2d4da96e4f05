// SPIFFE ids as Istio uses them: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`, parsed
// as strictly as ztunnel does (exactly five path pieces, `ns` and `sa` in place), plus the SPIFFE
// spec's character sets, so that a name that could be read two ways never becomes an identity.

import { type SpiffeId, spiffeId } from '../state/model.js';
import { type IdentityResult, fail, ok } from './errors.js';

export interface SpiffeIdParts {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

export interface ParsedSpiffeId extends SpiffeIdParts {
  readonly id: SpiffeId;
}

const PREFIX = 'spiffe://';
// SPIFFE ID spec §2.1 and §2.2: lowercase trust domains; path segments of letters, digits, . - _
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;

export function parseSpiffeId(text: string): IdentityResult<ParsedSpiffeId> {
  const bad = (why: string): IdentityResult<ParsedSpiffeId> =>
    fail('invalid-identity', `${JSON.stringify(text)} is not a SPIFFE id of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>: ${why}`);
  if (!text.startsWith(PREFIX)) return bad(`it does not start with ${PREFIX}`);
  const pieces = text.slice(PREFIX.length).split('/');
  if (pieces.length !== 5) return bad(`expected 5 path pieces after ${PREFIX}, found ${pieces.length}`);
  const [trustDomain, ns, namespace, sa, serviceAccount] = pieces as [string, string, string, string, string];
  if (ns !== 'ns' || sa !== 'sa') return bad('the path must be /ns/<namespace>/sa/<service-account>');
  const problem = checkParts({ trustDomain, namespace, serviceAccount });
  if (problem) return bad(problem);
  return ok({ id: text as SpiffeId, trustDomain, namespace, serviceAccount });
}

/** Builds the id for a workload, refusing parts that would not parse back to the same parts. */
export function formatSpiffeId(parts: SpiffeIdParts): IdentityResult<SpiffeId> {
  const problem = checkParts(parts);
  if (problem) {
    return fail('invalid-identity', `cannot make a SPIFFE id from trust domain ${JSON.stringify(parts.trustDomain)}, namespace ${JSON.stringify(parts.namespace)}, service account ${JSON.stringify(parts.serviceAccount)}: ${problem}`);
  }
  return ok(spiffeId(parts.trustDomain, parts.namespace, parts.serviceAccount));
}

/** The trust domain of an id that came from `parseSpiffeId` or `formatSpiffeId`. */
export function trustDomainOf(id: SpiffeId): string {
  const end = id.indexOf('/', PREFIX.length);
  return id.slice(PREFIX.length, end);
}

function checkParts(parts: SpiffeIdParts): string | undefined {
  if (!TRUST_DOMAIN.test(parts.trustDomain)) return 'the trust domain must be lowercase letters, digits, ".", "-" or "_"';
  for (const [what, value] of [['namespace', parts.namespace], ['service account', parts.serviceAccount]] as const) {
    if (!SEGMENT.test(value) || value === '.' || value === '..') return `the ${what} must be letters, digits, ".", "-" or "_" (and not "." or "..")`;
  }
  return undefined;
}

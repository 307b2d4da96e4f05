// The one error type of the identity subsystem. Each reason is a distinct outcome a caller may act on
// (refuse a connection, retry a fetch, stop at start-up), and each message tells an operator what to fix.

export type IdentityErrorReason =
  /** A string that is not `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`. */
  | 'invalid-identity'
  /** CA files on disk (plugged-in or persisted) are missing, unreadable or inconsistent. */
  | 'ca-files'
  /** A CSR that cannot be parsed, whose signature fails, or that asks for something else than requested. */
  | 'invalid-csr'
  /** A certificate request the CA refuses on its merits (trust domain, lifetime). */
  | 'invalid-request'
  /** The requesting node may not hold the identity (no enrolled pod with it runs there). */
  | 'not-authorized'
  /** The CA could not be reached or failed while signing; worth retrying. */
  | 'ca-unavailable'
  /** What the CA answered is not a usable chain for the requested identity. */
  | 'invalid-response'
  /** A peer's certificate chain does not verify against the trust bundle, or has no single SPIFFE id. */
  | 'untrusted-peer'
  /** A verified peer from another trust domain, or not one of the identities expected. */
  | 'unexpected-peer'
  /** The certificate manager was closed. */
  | 'closed';

export class IdentityError extends Error {
  override readonly name = 'IdentityError';
  readonly reason: IdentityErrorReason;
  /** The file a `ca-files` error is about, so tooling can point at it. */
  readonly file: string | undefined;

  constructor(reason: IdentityErrorReason, message: string, file?: string) {
    super(message);
    this.reason = reason;
    this.file = file;
  }
}

/** Expected outcomes are values: a refused request or an untrusted peer is not an exception. */
export type IdentityResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: IdentityError };

export function ok<T>(value: T): IdentityResult<T> {
  return { ok: true, value };
}

export function fail<T = never>(reason: IdentityErrorReason, message: string, file?: string): IdentityResult<T> {
  return { ok: false, error: new IdentityError(reason, message, file) };
}

/** The message of anything thrown by a library (node:crypto, @peculiar/x509), for wrapping in context. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// The one error type of the HBONE transport: each reason is an outcome a caller may act on (retry,
// refuse the user connection, count a response flag), each message tells an operator what to check.

export type HboneErrorReason =
  /** We hold no usable certificate for the source (client) or destination (server) identity. */
  | 'no-certificate'
  /** No TCP connection to the peer's 15008 within the connect timeout. */
  | 'connect-timeout'
  /** The TCP connection was refused or the peer is unreachable. */
  | 'connect-failed'
  /** The TLS handshake failed, or finished without TLS 1.3 and h2. */
  | 'tls-failed'
  /** The server's certificate does not chain to our roots or names none of the expected identities. */
  | 'unexpected-server'
  /** The server hung up before HTTP/2 started: it most likely refused our certificate. */
  | 'refused-by-server'
  /** The server answered the CONNECT with a status other than 200. */
  | 'http-status'
  /** The stream or its session failed before the response (reset, GOAWAY, ping timeout). */
  | 'stream-failed'
  /** The server refused the stream unprocessed (RST_STREAM REFUSED_STREAM, as after its GOAWAY): safe to send again. */
  | 'refused-stream'
  /** The request cannot be sent as asked (bad address, empty identity set). */
  | 'invalid-request'
  /** The pool was closed. */
  | 'closed';

export class HboneError extends Error {
  override readonly name = 'HboneError';
  readonly reason: HboneErrorReason;
  /** The server's :status, for `http-status`. */
  readonly status: number | undefined;

  constructor(reason: HboneErrorReason, message: string, status?: number) {
    super(message);
    this.reason = reason;
    this.status = status;
  }
}

export type HboneResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: HboneError };

export function ok<T>(value: T): HboneResult<T> {
  return { ok: true, value };
}

export function fail<T = never>(reason: HboneErrorReason, message: string, status?: number): HboneResult<T> {
  return { ok: false, error: new HboneError(reason, message, status) };
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// The one request target every L7 decision reads and the pod receives: the request-target (HTTP/1.1)
// or :path (HTTP/2) and the Host / :authority turned into a normalized origin-form path and an
// authority, or a refusal with Envoy's status. Pure: the proxies call it once per request at the edge,
// so authorization, routing, rate limits, telemetry and the forwarded request all see the same path.

/** Istio's meshConfig.pathNormalization options, weakest first. */
export type PathNormalization = 'NONE' | 'BASE' | 'MERGE_SLASHES' | 'DECODE_AND_MERGE_SLASHES';
export const PATH_NORMALIZATIONS: readonly PathNormalization[] = ['NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'];

/**
 * Ambit's default is one step stronger than Istio's (BASE): Istio documents BASE as open to
 * CVE-2021-31920 (`//admin` is not `/admin` to a policy, but is to many applications).
 */
export const DEFAULT_PATH_NORMALIZATION: PathNormalization = 'MERGE_SLASHES';

/** What the HTTP server parsed, before any of it is trusted. */
export interface ReceivedTarget {
  readonly version: 'HTTP/1.1' | 'HTTP/2';
  readonly method: string;
  /** The request-target (HTTP/1.1) or :path (HTTP/2) as received; undefined when absent. */
  readonly target: string | undefined;
  /** :authority (HTTP/2), else the Host header the server kept; '' when none. */
  readonly authority: string;
  /** Every Host header as received (a client may send several). */
  readonly hostHeaders: readonly string[];
}

/** Envoy's local-reply status and response_code_details for a target it will not proxy. */
export interface TargetRefusal {
  readonly status: 400 | 404;
  readonly reason: string;
  readonly details: string;
}

export type RequestTarget = { readonly ok: true; readonly path: string; readonly authority: string } | ({ readonly ok: false } & TargetRefusal);

export type NormalizedPath = { readonly ok: true; readonly path: string } | { readonly ok: false; readonly reason: string };

const refuse = (status: 400 | 404, reason: string, details: string): RequestTarget => ({ ok: false, status, reason, details });

/**
 * The target to judge and forward, in Envoy's order: a method that is not upper case is refused (Istio);
 * CONNECT matches no route (404, as Envoy without a CONNECT route); absolute-form becomes origin-form,
 * its authority the request's (a Host header that disagrees is refused); a fragment is stripped (as
 * Istio's Envoys are configured; Envoy's own default refuses it); a path that does not start with "/"
 * is refused (404 absolute_path_rejected, as Envoy), as is `%00` anywhere in the target; then the path
 * is normalized with `mode`. The query string is kept as sent.
 */
export function requestTarget(received: ReceivedTarget, mode: PathNormalization = DEFAULT_PATH_NORMALIZATION): RequestTarget {
  const { method, version } = received;
  if (method !== method.toUpperCase()) return refuse(400, `method ${JSON.stringify(method)} is not upper case`, 'invalid_method');
  if (method === 'CONNECT') return refuse(404, 'CONNECT is not proxied on an HTTP port', 'route_not_found');
  const target = received.target;
  if (target === undefined || target === '') return refuse(404, 'the request has no path', 'missing_path_rejected');
  if (received.hostHeaders.length > 1) return refuse(400, `${received.hostHeaders.length} Host headers; a request carries one`, 'duplicate_host');
  let authority = received.authority;
  let rest = target;
  const absolute = version === 'HTTP/1.1' ? /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)(.*)$/s.exec(target) : null;
  if (absolute) {
    const [, scheme, targetAuthority, tail] = absolute as unknown as [string, string, string, string];
    if (!/^https?$/i.test(scheme)) return refuse(400, `absolute-form target with scheme ${JSON.stringify(scheme)}`, 'invalid_url');
    if (!validAuthority(targetAuthority)) return refuse(400, `absolute-form target with authority ${JSON.stringify(targetAuthority)}`, 'invalid_url');
    const host = received.hostHeaders[0];
    if (host !== undefined && host.toLowerCase() !== targetAuthority.toLowerCase()) {
      return refuse(400, `the Host header ${JSON.stringify(host)} disagrees with the target's authority ${JSON.stringify(targetAuthority)}`, 'host_mismatch');
    }
    authority = targetAuthority;
    rest = tail.startsWith('/') ? tail : `/${tail}`;
  }
  if (version === 'HTTP/2') {
    const host = received.hostHeaders[0];
    // RFC 9113 §8.3.1: a Host that names another entity than :authority makes the request malformed.
    if (host !== undefined && authority !== '' && host.toLowerCase() !== authority.toLowerCase()) {
      return refuse(400, `the Host header ${JSON.stringify(host)} disagrees with :authority ${JSON.stringify(authority)}`, 'host_mismatch');
    }
  }
  if (!validAuthority(authority)) return refuse(400, `authority ${JSON.stringify(authority)} is not a host[:port]`, 'invalid_authority');
  // A backslash is a slash to BASE and up, so "\\admin" is an origin-form "/admin".
  if (!rest.startsWith('/') && !(mode !== 'NONE' && rest.startsWith('\\'))) {
    return refuse(404, `path ${JSON.stringify(rest)} does not start with "/"`, 'absolute_path_rejected');
  }
  const path = normalizeOriginForm(rest, mode);
  if (!path.ok) return refuse(400, path.reason, 'path_normalization_failed');
  return { ok: true, path: path.path, authority };
}

/**
 * An origin-form target (path, query, fragment) as it is forwarded: `%00` refused, the fragment
 * dropped, the path normalized with `mode`, the query kept as sent. The proxies apply it to what a
 * route's rewrite made too, so that what goes upstream is what the destination will read.
 */
export function normalizeOriginForm(target: string, mode: PathNormalization = DEFAULT_PATH_NORMALIZATION): NormalizedPath {
  if (/%00/.test(target)) return { ok: false, reason: 'the target contains %00' };
  const hash = target.indexOf('#');
  const rest = hash < 0 ? target : target.slice(0, hash);
  const q = rest.indexOf('?');
  const path = normalizePath(q < 0 ? rest : rest.slice(0, q), mode);
  return path.ok ? { ok: true, path: path.path + (q < 0 ? '' : rest.slice(q)) } : path;
}

/**
 * Istio's path normalization of a path without query or fragment (istio.io "Authorization Policy
 * Normalization", Envoy's normalize_path and merge_slashes), in one pass: every "%" must start a
 * two-digit escape (else refused, as Envoy refuses paths it cannot normalize); escapes of unreserved
 * characters are decoded once, `%2F` and `%5C` too with DECODE_AND_MERGE_SLASHES, the others keep
 * their escape with upper-case hex (RFC 3986 §6.2.2.1; Envoy keeps the case as sent); `\` becomes
 * `/`; characters RFC 3986 does not allow raw in a path are percent-encoded; "." and ".." are
 * resolved (RFC 3986 §5.2.4); then runs of "/" are merged (MERGE_SLASHES and up). The result is a
 * fixed point: normalizing it again changes nothing.
 */
export function normalizePath(path: string, mode: PathNormalization = DEFAULT_PATH_NORMALIZATION): NormalizedPath {
  if (mode === 'NONE') return { ok: true, path };
  const decodeSlashes = mode === 'DECODE_AND_MERGE_SLASHES';
  let out = '';
  for (let i = 0; i < path.length; i++) {
    const c = path[i]!;
    if (c === '%') {
      const hex = path.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return { ok: false, reason: `malformed percent-encoding ${JSON.stringify(path.slice(i, i + 3))} in the path` };
      const byte = parseInt(hex, 16);
      const decoded = String.fromCharCode(byte);
      if (UNRESERVED.test(decoded)) out += decoded;
      else if (decodeSlashes && (byte === 0x2f || byte === 0x5c)) out += '/';
      else out += `%${hex.toUpperCase()}`;
      i += 2;
    } else if (c === '\\') out += '/';
    else if (PATH_CHAR.test(c)) out += c;
    else out += percentEncode(c);
  }
  out = removeDotSegments(out);
  if (mode !== 'BASE') out = out.replace(/\/{2,}/g, '/');
  return { ok: true, path: out === '' ? '/' : out };
}

const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
/** RFC 3986 pchar without pct-encoded, plus "/": what a path may hold unescaped. */
const PATH_CHAR = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/]$/;

/**
 * A character the path may not hold raw, escaped. HTTP/1.1 and HTTP/2 hand Node's servers bytes, which
 * they read as latin1, so a code point below 256 is one byte; anything above is escaped as UTF-8.
 */
function percentEncode(c: string): string {
  const code = c.charCodeAt(0);
  const bytes = code < 0x100 ? [code] : [...new TextEncoder().encode(c)];
  return bytes.map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
}

/** RFC 3986 §5.2.4 on an absolute path. */
function removeDotSegments(input: string): string {
  const out: string[] = [];
  const segments = input.split('/');
  // The first item is what precedes the leading "/" ("" for an absolute path).
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    const last = i === segments.length - 1;
    if (s === '.' || s === '..') {
      if (s === '..' && out.length > 1) out.pop();
      if (last) out.push('');
      continue;
    }
    out.push(s);
  }
  return out.join('/');
}

/** host[:port] with a reg-name, IPv4 or bracketed IPv6 host: nothing that would move the request elsewhere (no userinfo, path or space). */
function validAuthority(authority: string): boolean {
  return /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::\d{0,5})?$/.test(authority);
}

// Path and authority rewrites and redirect locations, with Envoy's semantics for what istiod generates:
// `rewrite.uri` replaces the part of the path the route matched (the prefix of a prefix match, the
// whole path of an exact or regex match, and "/" when the route had no uri match), the query string
// is kept, and `uriRegexRewrite` substitutes every match in the path. Routes translated from Gateway API
// HTTPRoutes carry the API's own path modifiers instead (ReplaceFullPath, ReplacePrefixMatch).

import type { PathModifier } from '../config/gateway-api/types.js';
import type { HTTPMatchRequest, HTTPRedirect, HTTPRewrite } from '../config/istio-networking.js';
import { authorityHost, authorityPort, pathOnly, queryPart } from './request.js';

export interface RewrittenTarget {
  readonly path: string;
  readonly authority: string;
}

/** Applies a route's rewrite to a request path and authority; `match` is the block that selected it. */
export function applyRewrite(rewrite: HTTPRewrite | undefined, match: HTTPMatchRequest | undefined, path: string, authority: string): RewrittenTarget {
  if (!rewrite) return { path, authority };
  const newAuthority = rewrite.authority ?? authority;
  const base = pathOnly(path);
  const query = queryPart(path);
  if (rewrite.path) return { path: modifyPath(rewrite.path, match, base) + query, authority: newAuthority };
  if (rewrite.uriRegexRewrite) {
    const { regex, rewrite: replacement } = rewrite.uriRegexRewrite;
    regex.lastIndex = 0;
    return { path: base.replace(regex, re2Substitution(replacement)) + query, authority: newAuthority };
  }
  if (rewrite.uri === undefined) return { path, authority: newAuthority };
  const matched = matchedPrefixLength(match, base);
  return { path: rewrite.uri + base.slice(matched) + query, authority: newAuthority };
}

/**
 * How much of the path Envoy's prefix_rewrite replaces: a prefix match's own length, the whole path for
 * exact and regex matches, and one character ("/") when the route matched on other fields only, because
 * istiod then emits `prefix: "/"`.
 */
function matchedPrefixLength(match: HTTPMatchRequest | undefined, path: string): number {
  const uri = match?.uri;
  if (!uri) return path.startsWith('/') ? 1 : 0;
  if (uri.kind === 'prefix') return Math.min(uri.value.length, path.length);
  return path.length;
}

/**
 * RE2's substitution syntax (`\1`, and `\\` for a backslash) in JavaScript's (`$1`); a literal `$` must
 * not be read as a group reference by String.replace.
 */
export function re2Substitution(replacement: string): string {
  let out = '';
  for (let i = 0; i < replacement.length; i++) {
    const c = replacement[i]!;
    const next = replacement[i + 1];
    if (c === '$') out += '$$';
    else if (c === '\\' && next !== undefined && /\d/.test(next)) {
      out += `$${next}`;
      i++;
    } else if (c === '\\' && next === '\\') {
      out += '\\';
      i++;
    } else out += c;
  }
  return out;
}

export interface RedirectRequest {
  readonly authority: string;
  readonly path: string;
  readonly port: number;
  readonly scheme?: 'http' | 'https';
}

/**
 * The Location of an Istio redirect. `uri` replaces the whole path (Istio documents this whatever the
 * match kind) and keeps the query unless it brings its own; `authority` replaces the host; the port is
 * fixed, the request's (FROM_REQUEST_PORT), the scheme's default (FROM_PROTOCOL_DEFAULT, so omitted),
 * or else whatever the authority carried.
 */
export function redirectLocation(redirect: HTTPRedirect, req: RedirectRequest, match?: HTTPMatchRequest): string {
  const scheme = redirect.scheme ?? req.scheme ?? 'http';
  const source = redirect.authority ?? req.authority;
  const host = authorityHost(source);
  const hostPart = host.includes(':') ? `[${host}]` : host;
  let port: number | undefined;
  if (typeof redirect.port === 'number') port = redirect.port;
  else if (redirect.port === 'FROM_REQUEST_PORT') port = req.port;
  else if (redirect.port === undefined) port = authorityPort(source);
  const defaultPort = scheme === 'https' ? 443 : 80;
  const portPart = port !== undefined && port !== defaultPort ? `:${port}` : '';
  let path = req.path;
  if (redirect.path) path = modifyPath(redirect.path, match, pathOnly(req.path)) + queryPart(req.path);
  else if (redirect.uri !== undefined) path = redirect.uri.includes('?') ? redirect.uri : redirect.uri + queryPart(req.path);
  return `${scheme}://${hostPart}${portPart}${path}`;
}

/**
 * Gateway API's path modifiers on a path without its query. ReplacePrefixMatch swaps the matched
 * PathPrefix element by element, so that neither a doubled nor a missing "/" appears at the seam
 * ("/foo" → "/xyz/": "/foo/bar" becomes "/xyz/bar"; "/foo" → "": "/foo" becomes "/").
 */
export function modifyPath(modifier: PathModifier, match: HTTPMatchRequest | undefined, path: string): string {
  if (modifier.type === 'ReplaceFullPath') return modifier.value === '' ? '/' : modifier.value;
  const prefix = match?.uri?.kind === 'pathPrefix' ? match.uri.value : '/';
  const rest = prefix === '/' ? path : path.slice(prefix.length);
  const replacement = modifier.value.endsWith('/') ? modifier.value.slice(0, -1) : modifier.value;
  const joined = replacement + rest;
  if (joined === '') return '/';
  return joined.startsWith('/') ? joined : `/${joined}`;
}

// What the L7 decision engine knows about one HTTP request: its target, method, path, headers (with
// repeated headers kept apart) and the workload that sent it. Built once per request at the edge of the
// data path from Node's http/http2 objects; every decision module reads it and none changes it.

import type { Labels } from '../config/kubernetes.js';

/** Lowercase header name → values in arrival order (a header sent twice has two values). */
export type RequestHeaders = ReadonlyMap<string, readonly string[]>;

/** The workload that sent the request, as the source agent knows it from the captured pod. */
export interface RequestSource {
  readonly namespace: string;
  readonly labels: Labels;
  /** For useSourceIp hashing and for the cookie a consistent-hash cookie policy issues. */
  readonly ip?: string;
  readonly port?: number;
}

export interface HttpRequestAttributes {
  /**
   * The mesh host the request is for, fully qualified (`reviews.bookinfo.svc.cluster.local`). The data
   * path knows it from the captured Service VIP; `requestHost` derives it from an authority otherwise.
   */
  readonly host: string;
  /** The Host / :authority header as sent (may carry a port). */
  readonly authority: string;
  /** The Service port the request was sent to. */
  readonly port: number;
  readonly method: string;
  /** :path as sent, query string included. */
  readonly path: string;
  readonly scheme?: 'http' | 'https';
  readonly headers: RequestHeaders;
  readonly source: RequestSource;
}

/**
 * Headers from Node's shapes: `rawHeaders` (a flat [name, value, ...] list, which keeps repeated
 * headers apart) or a headers object (http2, or IncomingMessage.headers, where Node may already have
 * joined some repeated headers). Pseudo-headers (":path") are dropped: the attributes carry them.
 */
export function requestHeaders(raw: readonly string[] | Readonly<Record<string, string | readonly string[] | undefined>>): RequestHeaders {
  const out = new Map<string, string[]>();
  if (isFlatList(raw)) {
    for (let i = 0; i + 1 < raw.length; i += 2) addHeader(out, raw[i]!, raw[i + 1]!);
  } else {
    for (const [name, value] of Object.entries(raw)) {
      if (value === undefined) continue;
      if (typeof value === 'string') addHeader(out, name, value);
      else for (const v of value) addHeader(out, name, v);
    }
  }
  return out;
}

/** One header line into the map (a module function, not a closure made per request). */
function addHeader(out: Map<string, string[]>, name: string, value: string): void {
  const key = name.toLowerCase();
  if (key.startsWith(':')) return;
  const values = out.get(key);
  if (values) values.push(value);
  else out.set(key, [value]);
}

function isFlatList(raw: unknown): raw is readonly string[] {
  return Array.isArray(raw);
}

/**
 * A header's value the way Envoy's route matchers see it: repeated headers joined with ",", as RFC 9110
 * allows for list-valued fields (and as Envoy has done since CVE-2020-25017). Undefined when absent.
 */
export function joinedHeader(headers: RequestHeaders, name: string): string | undefined {
  const values = headers.get(name.toLowerCase());
  return values && values.length > 0 ? values.join(',') : undefined;
}

/** The path without its query string or fragment: route matchers and rewrites work on this. */
export function pathOnly(path: string): string {
  const end = path.search(/[?#]/);
  return end < 0 ? path : path.slice(0, end);
}

/** The query string of a path, "?" included, or "" (kept as sent when a rewrite replaces the path). */
export function queryPart(path: string): string {
  const q = path.indexOf('?');
  if (q < 0) return '';
  const hash = path.indexOf('#', q);
  return hash < 0 ? path.slice(q) : path.slice(q, hash);
}

/** Query parameters, decoded, each name with its values in order. */
export function queryParams(path: string): ReadonlyMap<string, readonly string[]> {
  const out = new Map<string, string[]>();
  for (const [name, value] of new URLSearchParams(queryPart(path).slice(1))) {
    const values = out.get(name);
    if (values) values.push(value);
    else out.set(name, [value]);
  }
  return out;
}

/** Cookie values by name from every Cookie header (HTTP/2 may split them into several headers). */
export function requestCookies(headers: RequestHeaders): ReadonlyMap<string, string> {
  const out = new Map<string, string>();
  for (const header of headers.get('cookie') ?? []) {
    for (const pair of header.split(';')) {
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      // The first cookie of a name wins, as Envoy's cookie hash reads it.
      if (!out.has(name)) out.set(name, pair.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1'));
    }
  }
  return out;
}

/** The host part of an authority ("reviews:9080" → "reviews", "[fd00::1]:80" → "fd00::1"), lowercased. */
export function authorityHost(authority: string): string {
  const a = authority.trim().toLowerCase();
  if (a.startsWith('[')) {
    const end = a.indexOf(']');
    return end < 0 ? a : a.slice(1, end);
  }
  const colon = a.lastIndexOf(':');
  // More than one colon without brackets is a bare IPv6 address, not host:port.
  return colon >= 0 && a.indexOf(':') === colon ? a.slice(0, colon) : a;
}

/** The port of an authority, if it names one. */
export function authorityPort(authority: string): number | undefined {
  const m = /^(?:\[[^\]]*\]|[^:]*):(\d{1,5})$/.exec(authority.trim());
  return m ? Number(m[1]) : undefined;
}

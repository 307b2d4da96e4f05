// Refuses the requests a web page could make a browser send to the loopback admin server: DNS
// rebinding (a page on an attacker's name that resolves to 127.0.0.1, so the request carries the
// attacker's name as Host) and cross-site POSTs (a form or fetch from any other origin, which needs no
// answer to stop the agent through /quitquitquit). curl, `ambit zc` and istioctl send neither an
// Origin nor a Sec-Fetch-Site header and name the address they dial, so they are not affected.

import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { ipInBlock } from '../system/ip-block.js';

/** Methods that change something; a browser sends them cross-site without asking first (forms). */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Why `req` is refused, or undefined when it may be served. `boundHost` is the address the server
 * listens on: when an operator binds it elsewhere than loopback, that address is a fine Host too.
 */
export function browserRefusal(req: IncomingMessage, boundHost: string): string | undefined {
  const host = req.headers.host;
  // HTTP/1.1 without Host never reaches us (Node answers 400); HTTP/1.0 without it is no browser.
  if (host !== undefined && !isAllowedHost(host, boundHost)) {
    return `Host ${JSON.stringify(host)} is not a loopback name or address; the admin server answers requests made to localhost, 127.0.0.1 or [::1] only (a DNS rebinding guard)`;
  }
  if (SAFE_METHODS.has(req.method ?? 'GET')) return undefined;
  const origin = req.headers.origin;
  if (origin !== undefined && !(host !== undefined && sameOrigin(origin, host))) {
    return `a cross-origin ${req.method} (Origin: ${origin}) is refused; change the agent with curl or ambit, never from a web page`;
  }
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') {
    return `a ${site} ${req.method} (Sec-Fetch-Site: ${site}) is refused; change the agent with curl or ambit, never from a web page`;
  }
  return undefined;
}

function isAllowedHost(header: string, boundHost: string): boolean {
  const name = hostName(header);
  if (name === undefined) return false;
  if (name === 'localhost' || name.endsWith('.localhost')) return true;
  if (isIP(name) === 0) return false;
  return ipInBlock(name, '127.0.0.0/8') || ipInBlock(name, '::1') || name === boundHost.toLowerCase();
}

/** The name or address of a Host header, without port, brackets or a trailing dot; lower case. */
function hostName(header: string): string | undefined {
  const text = header.trim().toLowerCase();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(text);
  if (bracketed) return bracketed[1];
  const plain = /^([^:[\]]+?)\.?(?::\d+)?$/.exec(text);
  return plain?.[1];
}

/** An Origin naming this very server: its own scheme-less host:port as the Host header says it. */
function sameOrigin(origin: string, host: string): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false; // "null" (sandboxed frames, file://) and anything unparsable
  }
  return url.protocol === 'http:' && url.host === host.trim().toLowerCase();
}

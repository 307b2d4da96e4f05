// The envoyExtAuthzHttp check: the request's method and path (behind pathPrefix) sent to the authorizer
// with the headers the provider lets through and, with includeRequestBodyInCheck, the body's first bytes
// (x-envoy-auth-partial-body only when the provider lists it, as Envoy's allowed headers); a 200 allows, any other answer below 500 is
// the denial the client gets, and a 5xx, a timeout or a refused connection is an error (Envoy's rules).

import { request as httpRequest } from 'node:http';
import type { ExtAuthzHttpProvider } from '../config/mesh-config.js';
import { wildcardMatch } from './authorization.js';
import { type AuthorizerAddress, type AuthorizerAnswer, type ExtAuthzRequest, type HeaderToSet, checkHeaders } from './ext-authz.js';

/** An authorizer's denial body larger than this is cut: it goes to the client as it is. */
const MAX_DENIAL_BODY = 64 * 1024;
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'te', 'trailer', 'content-length', 'host']);

export function checkOverHttp(provider: ExtAuthzHttpProvider, address: AuthorizerAddress, request: ExtAuthzRequest): Promise<AuthorizerAnswer> {
  const body = request.body?.bytes ?? Buffer.alloc(0);
  const headers: Record<string, string> = { host: request.authority, 'content-length': String(body.length) };
  // Istio sends Host, Method, Path and Content-Length (of the body sent, else 0), then the headers the provider lists.
  for (const [name, value] of Object.entries(checkHeaders(request))) {
    if (!HOP_BY_HOP.has(name) && provider.includeRequestHeadersInCheck.some((n) => wildcardMatch(n, name))) headers[name] = value;
  }
  for (const [name, value] of Object.entries(provider.includeAdditionalHeadersInCheck)) headers[name] = value;
  return new Promise((resolve) => {
    let outgoing: ReturnType<typeof httpRequest>;
    try {
      outgoing = httpRequest(
        { host: address.host, port: address.port, method: request.method, path: `${provider.pathPrefix}${request.path}`, headers, agent: false },
        (response) => {
          const chunks: Buffer[] = [];
          let size = 0;
          response.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size <= MAX_DENIAL_BODY) chunks.push(chunk);
          });
          response.on('error', (error) => resolve({ kind: 'error', message: error.message }));
          response.on('end', () => {
            const status = response.statusCode ?? 500;
            const received = headerList(response.rawHeaders);
            if (status >= 500) return resolve({ kind: 'error', message: `the authorizer answered ${status}` });
            if (status === 200) {
              const removed = received.filter((h) => h.name === 'x-envoy-auth-headers-to-remove').flatMap((h) => h.value.split(',').map((n) => n.trim().toLowerCase()));
              return resolve({
                kind: 'ok',
                upstreamHeaders: pick(received, provider.headersToUpstreamOnAllow),
                removeHeaders: removed.filter((n) => n !== '' && n !== 'host'),
                responseHeaders: pick(received, provider.headersToDownstreamOnAllow),
              });
            }
            // A list also lets WWW-Authenticate and Location through (Istio's rule); no list lets every header through.
            const onDeny = [...provider.headersToDownstreamOnDeny, 'www-authenticate', 'location'];
            const denialHeaders = provider.headersToDownstreamOnDeny.length > 0 ? pick(received, onDeny) : received.filter((h) => !HOP_BY_HOP.has(h.name));
            resolve({ kind: 'denied', status, headers: denialHeaders, body: Buffer.concat(chunks).toString('utf8') });
          });
        },
      );
    } catch (error) {
      // Node refuses to send a header value or path it considers invalid: an error, for failOpen and statusOnError.
      return resolve({ kind: 'error', message: `the check could not be sent: ${(error as Error).message}` });
    }
    // The provider's timeout bounds the whole check, not only silence on the socket.
    const timer = setTimeout(() => outgoing.destroy(new Error(`the authorizer did not answer within ${provider.timeoutMs} ms`)), provider.timeoutMs);
    outgoing.once('close', () => clearTimeout(timer));
    outgoing.on('error', (error) => resolve({ kind: 'error', message: `${address.host}:${address.port}: ${error.message}` }));
    outgoing.end(body);
  });
}

function headerList(raw: readonly string[]): HeaderToSet[] {
  const out: HeaderToSet[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push({ name: raw[i]!.toLowerCase(), value: raw[i + 1]!, append: false });
  return out;
}

/** The received headers whose names the provider lists (exact, `prefix*` or `*suffix`). */
function pick(received: readonly HeaderToSet[], names: readonly string[]): HeaderToSet[] {
  return received.filter((h) => !HOP_BY_HOP.has(h.name) && names.some((n) => wildcardMatch(n, h.name)));
}

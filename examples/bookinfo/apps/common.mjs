// Plumbing shared by the bookinfo apps: a small JSON HTTP/1.1 server with /health, and a bounded
// JSON client that forwards trace headers. Each app file then holds only its own behaviour.

import { createServer, request } from 'node:http';
import { hostname } from 'node:os';

// The tracing headers bookinfo's services copy from each incoming request onto their outgoing calls,
// so a tracer (or a mesh's access logs) can join the calls of one user request across services.
const TRACE_HEADERS = Object.freeze([
  'x-request-id',
  'traceparent',
  'tracestate',
  'b3',
  'x-b3-traceid',
  'x-b3-spanid',
  'x-b3-parentspanid',
  'x-b3-sampled',
  'x-b3-flags',
]);

const UPSTREAM_TIMEOUT_MS = positiveInteger('UPSTREAM_TIMEOUT_MS', 3_000);

/** Who is answering, from the env the pod's YAML sets (downward API), for every response and log line. */
export function identity(service) {
  return {
    service,
    version: process.env.VERSION ?? 'v1',
    pod: process.env.POD_NAME ?? hostname(),
    namespace: process.env.POD_NAMESPACE ?? 'default',
    ...(process.env.NODE_NAME ? { node: process.env.NODE_NAME } : {}),
  };
}

/** An upstream's base URL from the environment; a malformed one stops the app at start, not per request. */
export function upstreamUrl(variable, fallback) {
  const value = process.env[variable] ?? fallback;
  try {
    return new URL(value);
  } catch {
    throw new Error(`${variable}=${value} is not a URL (expected e.g. ${fallback})`);
  }
}

/** One or more upstream calls that failed; the server turns it into a 503 naming them. */
export class UpstreamError extends Error {
  constructor(failed, message) {
    super(message);
    this.failed = failed;
  }
}

/**
 * GETs `path` from the upstream at `base` with the caller's trace headers and returns the parsed JSON.
 * Throws UpstreamError on a connection error, a timeout, a non-2xx answer or a body that is not JSON.
 */
export async function getJson(upstream, base, path, trace) {
  const url = new URL(path, base).href;
  let response;
  try {
    response = await get(url, trace);
  } catch (err) {
    throw new UpstreamError([upstream], `${upstream}: GET ${url} failed: ${err.message}`);
  }
  let body;
  try {
    body = JSON.parse(response.body);
  } catch {
    body = undefined;
  }
  if (response.status < 200 || response.status > 299) {
    // Keep the upstream's own explanation, so a 503 deep in the chain reads end to end at the top.
    const why = typeof body?.error === 'string' ? body.error : response.body.slice(0, 200);
    throw new UpstreamError([upstream], `${upstream}: GET ${url} answered ${response.status}: ${why}`);
  }
  if (body === undefined) throw new UpstreamError([upstream], `${upstream}: GET ${url} answered with a body that is not JSON`);
  return body;
}

/** Awaits several upstream calls together and, if any failed, throws one UpstreamError naming them all. */
export async function allUpstreams(calls) {
  const settled = await Promise.allSettled(calls);
  const errors = settled.filter((s) => s.status === 'rejected').map((s) => s.reason);
  const unexpected = errors.find((e) => !(e instanceof UpstreamError));
  if (unexpected) throw unexpected;
  if (errors.length > 0) throw new UpstreamError(errors.flatMap((e) => e.failed), errors.map((e) => e.message).join('; '));
  return settled.map((s) => s.value);
}

/**
 * Serves `routes` ([pattern, handler] pairs; a handler gets the path's match and the request's trace
 * headers and returns the JSON body) on PORT (9080) and HOST (0.0.0.0), plus GET /health.
 */
export function serve(service, routes) {
  const self = identity(service);
  const port = portFromEnv();
  const host = process.env.HOST ?? '0.0.0.0';
  const server = createServer(async (req, res) => {
    const started = performance.now();
    const path = (req.url ?? '/').split('?')[0];
    const trace = traceHeaders(req);
    const { status, body } = await answer(self, routes, req.method, path, trace);
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify(body)}\n`);
    // The lab probes /health every few seconds; logging those would drown the requests that matter.
    if (path !== '/health') {
      const requestId = trace['x-request-id'] ? ` x-request-id=${trace['x-request-id']}` : '';
      console.log(`${req.method} ${req.url} ${status} ${Math.round(performance.now() - started)}ms${requestId}`);
    }
  });
  server.listen(port, host, () => {
    const { address, port: bound } = server.address();
    console.log(`${self.service} ${self.version} (pod ${self.pod}) listening on http://${address}:${bound}`);
  });
}

async function answer(self, routes, method, path, trace) {
  if (method !== 'GET' && method !== 'HEAD') return { status: 405, body: { ...self, error: `method ${method} not allowed` } };
  if (path === '/health') return { status: 200, body: { ...self, status: 'ok' } };
  for (const [pattern, handler] of routes) {
    const match = pattern.exec(path);
    if (!match) continue;
    try {
      return { status: 200, body: { ...self, ...(await handler(match, trace)), trace } };
    } catch (err) {
      if (err instanceof UpstreamError) return { status: 503, body: { ...self, error: err.message, failed: err.failed, trace } };
      // A bug must cost one request, not the process.
      console.error(err);
      return { status: 500, body: { ...self, error: `internal error: ${err.message}` } };
    }
  }
  return { status: 404, body: { ...self, error: `no route for ${path}` } };
}

function traceHeaders(req) {
  const trace = {};
  for (const name of TRACE_HEADERS) {
    const value = req.headers[name];
    if (typeof value === 'string') trace[name] = value;
  }
  return trace;
}

/** One GET on a fresh connection, bounded by UPSTREAM_TIMEOUT_MS from start to the body's last byte. */
function get(url, headers) {
  return new Promise((resolve, reject) => {
    // agent: false opens a new connection per call, as bookinfo's services do: Service VIPs balance
    // connections, so a kept-alive connection would pin every call to the first pod it reached.
    const req = request(url, { headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
      res.on('close', () => {
        if (!res.complete) reject(new Error('connection closed before the response ended'));
      });
    });
    // Reject before destroying, so the timeout (not the resulting socket error) is the reason given.
    const timer = setTimeout(() => {
      reject(new Error(`timed out after ${UPSTREAM_TIMEOUT_MS} ms`));
      req.destroy();
    }, UPSTREAM_TIMEOUT_MS);
    req.on('error', reject);
    req.on('close', () => clearTimeout(timer));
    req.end();
  });
}

function portFromEnv() {
  const raw = process.env.PORT ?? '9080';
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`PORT=${raw} is not a port number`);
  return port;
}

function positiveInteger(variable, fallback) {
  const raw = process.env[variable];
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${variable}=${raw} is not a positive integer`);
  return value;
}

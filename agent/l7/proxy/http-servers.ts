// The HTTP servers both L7 proxies feed connections to (they never listen): Node's parsers with the
// protections Ambit relies on pinned (strict HTTP/1 parsing, no extended CONNECT), and the limits that
// keep a slow or silent client from holding an agent socket: a deadline for a request's headers (and a
// new connection's first bytes), one for a whole HTTP/1.1 request, and an idle timeout for kept-alive
// connections. A VirtualService timeout stays the per-route bound on the upstream's answer.

import http, { type IncomingMessage, STATUS_CODES, type ServerResponse } from 'node:http';
import http2, { type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2';
import type { Duplex } from 'node:stream';

export interface HttpServerLimits {
  /** How long a client may take to send a request's complete headers (and a new connection its first bytes). */
  readonly headersTimeoutMs: number;
  /** How long a client may take to send a whole HTTP/1.1 request, body included; 0: no limit. */
  readonly requestTimeoutMs: number;
  /** A kept-alive connection with no request in flight is closed after this; 0: never. */
  readonly idleTimeoutMs: number;
}

/** Node's own header and request timeouts, and Envoy's (and so Istio's) idle timeout for HTTP connections. */
export const DEFAULT_HTTP_SERVER_LIMITS: HttpServerLimits = { headersTimeoutMs: 60_000, requestTimeoutMs: 300_000, idleTimeoutMs: 3_600_000 };

/** Why a set of limits cannot be used, for the flag parser; undefined when they can. */
export function limitsProblem(limits: HttpServerLimits): string | undefined {
  if (!(limits.headersTimeoutMs > 0)) return 'the headers timeout must be above 0: a client that never finishes its headers would hold a socket for ever';
  if (limits.requestTimeoutMs > 0 && limits.headersTimeoutMs > limits.requestTimeoutMs) {
    return 'the headers timeout cannot exceed the request timeout (headers are part of the request)';
  }
  if (limits.requestTimeoutMs < 0 || limits.idleTimeoutMs < 0) return 'timeouts cannot be negative';
  return undefined;
}

/**
 * Every server made here, so that a stopping agent can drain them all (a process runs one agent, as
 * relay-idle.ts assumes too).
 */
const draining = { servers: new Set<() => void>(), started: false };

/**
 * Stops keep-alive on every HTTP connection: a busy HTTP/1.1 connection answers its request with
 * `connection: close`, HTTP/2 sessions get GOAWAY and finish their streams, and an idle HTTP/1.1
 * connection of a tunnel from another agent is closed at once (Envoy's drain), as the kept connections
 * nobody uses would otherwise hold this agent until its deadline (IdleOnDrain). A client then opens
 * its next connection, which reaches whatever agent accepts by then.
 */
export function drainHttpServers(): void {
  draining.started = true;
  for (const drain of draining.servers) drain();
}

/**
 * What a drain does to an idle HTTP/1.1 connection. `close`: closed at once, for tunnels from another
 * node's agent, which got GOAWAY too and sends a request that races the close again when that is safe
 * (upstream-connections.ts). `keep`: left for its next request to be answered `connection: close`, for
 * clients that retry nothing (pods' own connections, plaintext tunnels) and for this agent's own
 * same-node upstream connections: closing those made a kept-alive request fail in
 * agent-upgrade.test.ts (same-node stream: ECONNRESET at the pod, and a 503); the drain deadline ends
 * those that stay idle.
 */
export type IdleOnDrain = 'close' | 'keep';

/**
 * An HTTP/1.1 server for connections fed with emit('connection'). A timed-out or unparsable request is
 * answered as Node answers it (408, 431, 400) unless a response has started, then the connection is
 * closed; a CONNECT gets Envoy's 404 (no CONNECT route) and the connection is closed.
 */
export function http1Server(limits: HttpServerLimits, idleOnDrain: (socket: Duplex) => IdleOnDrain, onRequest: (req: IncomingMessage, res: ServerResponse) => void): http.Server {
  const responding = new WeakMap<Duplex, ServerResponse>();
  const inFlight = new Set<ServerResponse>();
  /** Connections between two requests whose drain closes them ('close'). */
  const idle = new Set<Duplex>();
  const closeIdle = (socket: Duplex): void => {
    if (idle.delete(socket)) socket.destroy();
  };
  const server = http.createServer(
    {
      // Explicit, so that the lenient-parser switch in NODE_OPTIONS cannot turn that parser on
      // (obs-fold, bare LF, Content-Length with Transfer-Encoding: request smuggling).
      insecureHTTPParser: false,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.idleTimeoutMs,
      // Node checks header and request deadlines on this period (30 s by default): a quarter of the
      // shortest deadline, so that one is enforced within 25% of its value.
      connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs || Infinity) / 4))),
    },
    (req, res) => {
      responding.set(req.socket, res);
      inFlight.add(res);
      if (draining.started) res.shouldKeepAlive = false;
      const socket = req.socket;
      idle.delete(socket);
      res.once('finish', () => {
        if (responding.get(socket) === res) responding.delete(socket);
        if (socket.destroyed || idleOnDrain(socket) !== 'close') return;
        idle.add(socket);
        // Under a drain its response went out with its headers already sent: idle now, so closed (a
        // tick later, unless a pipelined request took it meanwhile).
        if (draining.started) setImmediate(() => closeIdle(socket));
      });
      res.once('close', () => inFlight.delete(res));
      onRequest(req, res);
    },
  );
  // Once per connection, not per request: a listener added at each request's end stayed on the socket,
  // and its closure with the request, for as long as the connection was kept alive (11 KB a request).
  server.on('connection', (socket: Duplex) => socket.once('close', () => idle.delete(socket)));
  draining.servers.add(() => {
    for (const res of inFlight) if (!res.headersSent) res.shouldKeepAlive = false;
    for (const socket of [...idle]) closeIdle(socket);
  });
  // Node starts checking those deadlines when a server starts listening; these servers are only fed
  // connections, so start the check as listen() would (Node's own tests do the same).
  server.emit('listening');
  server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
    if (socket.destroyed) return;
    if (!socket.writable || responding.get(socket)?.headersSent) return void socket.destroy();
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    // Ended rather than destroyed, so that the answer travels ahead of the close (through a tunnel's
    // relay too); a client that does not read it is cut a second later.
    socket.end(closingResponse(status));
    setTimeout(() => socket.destroy(), 1000).unref();
  });
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    socket.on('error', () => undefined);
    socket.end(closingResponse(404));
  });
  return server;
}

/**
 * An HTTP/2 (h2c prior knowledge) server for connections fed with emit('connection'). A session must
 * open its first stream within the headers timeout; one with no open stream is closed (GOAWAY) once
 * idle. CONNECT streams reach `onRequest` like any other (the proxy answers them 404); the extended
 * CONNECT (`:protocol`) stays off, so nghttp2 resets such streams.
 */
export function h2cServer(limits: HttpServerLimits, onRequest: (req: Http2ServerRequest, res: Http2ServerResponse) => void): http2.Http2Server {
  const openStreams = new WeakMap<ServerHttp2Session, number>();
  const server = http2.createServer({ settings: { maxConcurrentStreams: 1000, enableConnectProtocol: false }, maxSessionMemory: 64 }, onRequest);
  // Without a listener Node answers CONNECT 405 itself, past the proxy's telemetry.
  server.on('connect', onRequest);
  const sessions = new Set<ServerHttp2Session>();
  draining.servers.add(() => {
    for (const session of sessions) session.close();
  });
  server.on('session', (session: ServerHttp2Session) => {
    if (draining.started) setImmediate(() => session.close());
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    openStreams.set(session, 0);
    const firstStream = setTimeout(() => session.destroy(), limits.headersTimeoutMs);
    session.once('close', () => clearTimeout(firstStream));
    session.on('stream', (stream) => {
      clearTimeout(firstStream);
      openStreams.set(session, (openStreams.get(session) ?? 0) + 1);
      stream.once('close', () => openStreams.set(session, (openStreams.get(session) ?? 1) - 1));
    });
  });
  if (limits.idleTimeoutMs > 0) server.setTimeout(limits.idleTimeoutMs);
  // Node's session timeout counts any silence, also that of a quiet long-lived stream: close only idle sessions.
  server.on('timeout', (session: ServerHttp2Session) => {
    if ((openStreams.get(session) ?? 0) === 0) session.close();
  });
  return server;
}

/**
 * Closes `stream` unless `cancel` is called within `ms`: the proxies sniff a connection's first bytes
 * before any server sees it, and a client that sends nothing must not hold it for ever.
 */
export function firstBytesDeadline(stream: Duplex, ms: number): () => void {
  const timer = setTimeout(() => stream.destroy(), ms);
  return () => clearTimeout(timer);
}

function closingResponse(status: number): string {
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`;
}

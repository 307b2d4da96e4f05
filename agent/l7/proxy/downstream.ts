// The client side of one request, whichever protocol the client spoke: Node's HTTP/1.1 server objects
// or its HTTP/2 compatibility objects, seen through one shape whose path and authority are already the
// normalized target (l7/request-target.ts), and the answers the proxy gives itself (local replies) in
// Envoy's wording, as gRPC trailers-only responses when the client speaks gRPC.

import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Readable, Writable } from 'node:stream';
import { type HeaderMutation, mutateHeaders } from '../header-mutation.js';
import { type RequestHeaders, requestHeaders } from '../request.js';
import { type PathNormalization, type RequestTarget, type TargetRefusal, requestTarget } from '../request-target.js';
import { grpcCode, outgoingHeaders } from './headers.js';

export interface DownstreamRequest {
  readonly version: 'HTTP/1.1' | 'HTTP/2';
  readonly method: string;
  /**
   * The normalized origin-form path (query kept, fragment gone): what every decision reads and the
   * upstream receives. When the target was refused, the target as received, for the log only.
   */
  readonly path: string;
  /** The normalized target's authority (an absolute-form target's own); as received when refused. */
  readonly authority: string;
  /** Set when the target cannot be proxied: answer it with this and stop. */
  readonly refused: TargetRefusal | undefined;
  readonly headers: RequestHeaders;
  readonly body: Readable;
  /** The request declared no body (HTTP/2 END_STREAM with its headers; HTTP/1 without length or chunks). */
  readonly bodyEmpty: boolean;
  /** Where the response body is written, after writeHead. */
  readonly response: Writable;
  writeHead(status: number, headers: OutgoingHttpHeaders): void;
  /** HTTP/2 only (gRPC's status travels in trailers); ignored over HTTP/1.1. */
  addTrailers(trailers: OutgoingHttpHeaders): void;
  /** Whether the response's headers went out (a method, not a getter: see Http1Downstream). */
  headersSent(): boolean;
  /** Aborted when the client goes away before the response is complete. */
  readonly gone: AbortSignal;
}

/** What both protocols' constructors read from the request before the common fields are set. */
interface Received {
  readonly method: string;
  /** The target and authority as received: what the log shows when the target is refused. */
  readonly target: string | undefined;
  readonly authority: string;
  readonly headers: RequestHeaders;
  readonly bodyEmpty: boolean;
}

/**
 * One request, over either protocol's Node objects. Classes, so that every request has the same shape
 * (its fields all set in one constructor, in one order) and its methods are shared rather than
 * closures made per request. No accessor (`get x()`): V8 keeps an object literal's getter in a hidden
 * class of its own, which young-generation GC treats as alive, so a getter closing over `res` kept the
 * whole request past the scavenges that should take it, until a full collection: 80 MB promoted to the
 * old generation over the l7-proxy bench's 8000 requests, 6 MB without (bench/README.md).
 */
abstract class Downstream<Res extends ServerResponse | Http2ServerResponse> implements DownstreamRequest {
  abstract readonly version: 'HTTP/1.1' | 'HTTP/2';
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  readonly refused: TargetRefusal | undefined;
  readonly headers: RequestHeaders;
  readonly body: Readable;
  readonly bodyEmpty: boolean;
  readonly response: Res;
  readonly gone: AbortSignal;

  constructor(version: 'HTTP/1.1' | 'HTTP/2', r: Received, body: Readable, res: Res, normalization: PathNormalization) {
    const t = requestTarget({ version, method: r.method, target: r.target, authority: r.authority, hostHeaders: r.headers.get('host') ?? [] }, normalization);
    this.method = r.method;
    this.path = t.ok ? t.path : (r.target ?? '');
    this.authority = t.ok ? t.authority : r.authority;
    this.refused = refusalOf(t);
    this.headers = r.headers;
    this.body = body;
    this.bodyEmpty = r.bodyEmpty;
    this.response = res;
    this.gone = goneSignal(res);
  }

  /** Each protocol's own: Node's two writeHead signatures cannot be called through their union. */
  abstract writeHead(status: number, headers: OutgoingHttpHeaders): void;

  abstract addTrailers(trailers: OutgoingHttpHeaders): void;

  headersSent(): boolean {
    return this.response.headersSent;
  }
}

class Http1Downstream extends Downstream<ServerResponse> {
  readonly version = 'HTTP/1.1';

  constructor(req: IncomingMessage, res: ServerResponse, normalization: PathNormalization) {
    const h = req.headers;
    const bodyEmpty = (h['content-length'] === undefined || h['content-length'] === '0') && h['transfer-encoding'] === undefined;
    super('HTTP/1.1', { method: req.method ?? 'GET', target: req.url, authority: h.host ?? '', headers: requestHeaders(req.rawHeaders), bodyEmpty }, req, res, normalization);
  }

  writeHead(status: number, headers: OutgoingHttpHeaders): void {
    this.response.writeHead(status, headers);
  }

  /** HTTP/1.1 carries no trailers here (gRPC's status travels in HTTP/2 trailers). */
  addTrailers(): void {}
}

class Http2Downstream extends Downstream<Http2ServerResponse> {
  readonly version = 'HTTP/2';

  constructor(req: Http2ServerRequest, res: Http2ServerResponse, normalization: PathNormalization) {
    // A CONNECT stream has no :path; Node's compatibility layer then leaves url undefined whatever its type says.
    const target = req.url as string | undefined;
    const received = { method: req.method, target, authority: req.authority ?? req.headers.host ?? '', headers: requestHeaders(req.rawHeaders), bodyEmpty: req.stream.endAfterHeaders };
    super('HTTP/2', received, req, res, normalization);
  }

  writeHead(status: number, headers: OutgoingHttpHeaders): void {
    this.response.writeHead(status, headers);
  }

  addTrailers(trailers: OutgoingHttpHeaders): void {
    this.response.addTrailers(trailers);
  }
}

export function http1Downstream(req: IncomingMessage, res: ServerResponse, normalization: PathNormalization): DownstreamRequest {
  return new Http1Downstream(req, res, normalization);
}

export function http2Downstream(req: Http2ServerRequest, res: Http2ServerResponse, normalization: PathNormalization): DownstreamRequest {
  return new Http2Downstream(req, res, normalization);
}

/** Aborted when the response closes before it finished: the client went away. */
function goneSignal(res: ServerResponse | Http2ServerResponse): AbortSignal {
  const gone = new AbortController();
  res.once('close', () => res.writableFinished || gone.abort());
  return gone.signal;
}

function refusalOf(t: RequestTarget): TargetRefusal | undefined {
  return t.ok ? undefined : { status: t.status, reason: t.reason, details: t.details };
}

/** Envoy's mapping of an HTTP status to a gRPC status for local replies to gRPC clients. */
export function grpcStatusForHttp(status: number): number {
  if (status === 400) return 13;
  if (status === 401) return 16;
  if (status === 403) return 7;
  if (status === 404) return 12;
  if (status === 429 || status === 502 || status === 503 || status === 504) return 14;
  return 2;
}

export interface LocalReply {
  readonly status: number;
  readonly body?: string;
  readonly headers?: ReadonlyMap<string, readonly string[]>;
  readonly responseHeaders?: readonly HeaderMutation[];
  /** A fault abort's grpcStatus: answered to any client as a gRPC trailers-only response. */
  readonly grpcStatus?: string;
}

/** The answer to a refused target: Envoy's status, with the reason for whoever reads the body. */
export function refusalReply(refused: TargetRefusal): LocalReply {
  return { status: refused.status, body: `${refused.status === 400 ? 'Bad Request' : 'Not Found'}: ${refused.reason}` };
}

/** Answers the request from the proxy itself; returns the bytes of body sent. */
export function sendLocalReply(d: DownstreamRequest, reply: LocalReply, grpcClient: boolean): number {
  if (d.headersSent() || d.response.destroyed) {
    d.response.destroy();
    return 0;
  }
  // The request body is not wanted; drain it so that a keep-alive client connection stays usable.
  d.body.resume();
  const base = new Map<string, string[]>([...(reply.headers ?? [])].map(([k, v]) => [k, [...v]]));
  if (reply.grpcStatus !== undefined || grpcClient) {
    const code = reply.grpcStatus !== undefined ? grpcCode(reply.grpcStatus) : grpcStatusForHttp(reply.status);
    base.set('content-type', ['application/grpc']);
    base.set('grpc-status', [String(code)]);
    if (reply.body) base.set('grpc-message', [encodeURIComponent(reply.body)]);
    d.writeHead(200, outgoingHeaders(mutateHeaders(base, reply.responseHeaders ?? [])));
    d.response.end();
    return 0;
  }
  const body = reply.body ?? '';
  if (body.length > 0 && !base.has('content-type')) base.set('content-type', ['text/plain']);
  base.set('content-length', [String(Buffer.byteLength(body))]);
  d.writeHead(reply.status, outgoingHeaders(mutateHeaders(base, reply.responseHeaders ?? [])));
  d.response.end(body);
  return Buffer.byteLength(body);
}

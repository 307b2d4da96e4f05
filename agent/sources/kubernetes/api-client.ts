// The few calls the Kubernetes source makes to the API server: list a collection (page by page) and
// watch it from a resourceVersion, over the connection and credentials connection.ts works out
// (in-cluster service-account token, or a kubeconfig file). Objects stay plain JSON: agent/config
// validates them the same way it validates local YAML.

import { type ClientRequest, type IncomingMessage, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { ApiConnection, RequestCredentials } from './connection.js';

/** A Kubernetes object as the API server sends it: only metadata is read here. */
export interface RawObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; [key: string]: unknown };
  [key: string]: unknown;
}

export interface ListPage {
  readonly items: readonly RawObject[];
  readonly resourceVersion: string;
  readonly continueToken?: string;
}

/** Why a call failed. `status` is the HTTP status (or the Status code of a watch ERROR event). */
export interface ApiError {
  readonly status?: number;
  readonly message: string;
}

export type ApiResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: ApiError };

export type WatchEvent =
  | { readonly type: 'ADDED' | 'MODIFIED' | 'DELETED'; readonly object: RawObject }
  | { readonly type: 'BOOKMARK'; readonly resourceVersion: string }
  | { readonly type: 'ERROR'; readonly error: ApiError };

/** How a watch stream ended: the server closed it (normal), or it failed. */
export type WatchEnd = { readonly ok: true } | { readonly ok: false; readonly error: ApiError };

export interface WatchHandle {
  readonly ended: Promise<WatchEnd>;
  close(): void;
}

const LIST_TIMEOUT_MS = 60_000;
/** One watch event larger than this is not an object we want: the stream is dropped and retried. */
const MAX_EVENT_BYTES = 16 * 1024 * 1024;
/**
 * A whole answer larger than this is refused unread. Far above a real page (500 objects of the 1.5 MiB
 * etcd allows would not fit, but real ones are KiBs), and far below the longest string V8 can make
 * (about 512 MiB), past which decoding the body would throw where nothing catches it.
 */
const MAX_BODY_BYTES = 128 * 1024 * 1024;

export class KubeApiClient {
  readonly #connection: ApiConnection;
  readonly server: string;

  constructor(connection: ApiConnection) {
    this.#connection = connection;
    this.server = connection.server;
  }

  /**
   * One page of a collection; `limit` bounds its size, `continueToken` asks for the next page,
   * `labelSelector` keeps only the objects it matches (the server filters: nothing else is sent).
   */
  async list(path: string, options: { limit: number; continueToken?: string; labelSelector?: string }): Promise<ApiResult<ListPage>> {
    const query: Record<string, string> = { limit: String(options.limit) };
    if (options.continueToken) query['continue'] = options.continueToken;
    if (options.labelSelector) query['labelSelector'] = options.labelSelector;
    const opened = await this.#open(path, query, LIST_TIMEOUT_MS);
    if (!opened.ok) return opened;
    const { res, req } = opened.value;
    const body = await readBody(res, req).catch((err: Error) => err);
    if (body instanceof Error) return { ok: false, error: { message: `reading the list of ${path}: ${body.message}` } };
    if (res.statusCode !== 200) return { ok: false, error: statusError(res.statusCode ?? 0, body, `list ${path}`) };
    let parsed: { metadata?: { resourceVersion?: string; continue?: string }; items?: RawObject[] };
    try {
      parsed = JSON.parse(body) as typeof parsed;
    } catch {
      return { ok: false, error: { message: `list ${path}: the API server answered with something that is not JSON` } };
    }
    if (!Array.isArray(parsed.items) || typeof parsed.metadata?.resourceVersion !== 'string') {
      return { ok: false, error: { message: `list ${path}: the answer has no items or no metadata.resourceVersion` } };
    }
    return {
      ok: true,
      value: { items: parsed.items, resourceVersion: parsed.metadata.resourceVersion, ...(parsed.metadata.continue ? { continueToken: parsed.metadata.continue } : {}) },
    };
  }

  /**
   * POSTs `body` to `path` and returns the answer's JSON: how the CA creates TokenReviews. Any status
   * but 200 and 201 is an error carrying the API server's Status message.
   */
  async create(path: string, body: unknown): Promise<ApiResult<unknown>> {
    const opened = await this.#open(path, {}, LIST_TIMEOUT_MS, JSON.stringify(body));
    if (!opened.ok) return opened;
    const { res, req } = opened.value;
    const text = await readBody(res, req).catch((err: Error) => err);
    if (text instanceof Error) return { ok: false, error: { message: `reading the answer to create ${path}: ${text.message}` } };
    if (res.statusCode !== 200 && res.statusCode !== 201) return { ok: false, error: statusError(res.statusCode ?? 0, text, `create ${path}`) };
    try {
      return { ok: true, value: JSON.parse(text) as unknown };
    } catch {
      return { ok: false, error: { message: `create ${path}: the API server answered with something that is not JSON` } };
    }
  }

  /**
   * Sends a JSON merge patch (RFC 7386) to `path`, e.g. an object's `/status` subresource: how the
   * agent writes Gateway API route status. 409 (the object changed since it was read) is an error like
   * any other; the caller writes again from the newer object.
   */
  async mergePatch(path: string, body: unknown): Promise<ApiResult<unknown>> {
    const opened = await this.#open(path, {}, LIST_TIMEOUT_MS, JSON.stringify(body), 'PATCH');
    if (!opened.ok) return opened;
    const { res, req } = opened.value;
    const text = await readBody(res, req).catch((err: Error) => err);
    if (text instanceof Error) return { ok: false, error: { message: `reading the answer to patch ${path}: ${text.message}` } };
    if (res.statusCode !== 200) return { ok: false, error: statusError(res.statusCode ?? 0, text, `patch ${path}`) };
    try {
      return { ok: true, value: JSON.parse(text) as unknown };
    } catch {
      return { ok: false, error: { message: `patch ${path}: the API server answered with something that is not JSON` } };
    }
  }

  /**
   * Watches a collection from `resourceVersion`. Events arrive in order through `onEvent`; `ended`
   * settles once the stream is over. `timeoutSeconds` makes the server end the stream (client-go picks
   * a random 5-10 minutes so that watches of many agents do not reconnect at the same moment).
   */
  watch(path: string, options: { resourceVersion: string; timeoutSeconds: number; labelSelector?: string; onOpen?: () => void }, onEvent: (event: WatchEvent) => void): WatchHandle {
    let closed = false;
    let current: ClientRequest | undefined;
    const ended = (async (): Promise<WatchEnd> => {
      const query: Record<string, string> = { watch: '1', resourceVersion: options.resourceVersion, allowWatchBookmarks: 'true', timeoutSeconds: String(options.timeoutSeconds) };
      if (options.labelSelector) query['labelSelector'] = options.labelSelector;
      // Past the server's own timeout, silence means a dead connection that TCP has not noticed yet.
      const opened = await this.#open(path, query, (options.timeoutSeconds + 30) * 1000);
      if (!opened.ok) return opened;
      const { res, req } = opened.value;
      current = req;
      if (closed) req.destroy();
      if (res.statusCode !== 200) {
        const body = await readBody(res, req).catch(() => '');
        return { ok: false, error: statusError(res.statusCode ?? 0, body, `watch ${path}`) };
      }
      options.onOpen?.();
      return readEvents(res, req, onEvent);
    })().catch((err: Error): WatchEnd => ({ ok: false, error: { message: err.message } }));
    return {
      ended,
      close: () => {
        closed = true;
        current?.destroy();
      },
    };
  }

  async #open(path: string, query: Record<string, string>, timeoutMs: number, body?: string, method?: 'PATCH'): Promise<ApiResult<{ res: IncomingMessage; req: ClientRequest }>> {
    const url = new URL(this.server.replace(/\/$/, '') + path);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    // Asked per request: a projected service-account token is re-read as it rotates.
    let options: RequestCredentials;
    try {
      options = await this.#connection.credentials();
    } catch (err) {
      return { ok: false, error: { message: `cannot prepare credentials for ${this.server}: ${(err as Error).message}` } };
    }
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve) => {
      const req = request(url, {
        method: method ?? (body === undefined ? 'GET' : 'POST'),
        ...(options.agent ? { agent: options.agent } : {}),
        ...(options.auth ? { auth: options.auth } : {}),
        headers: { ...options.headers, accept: 'application/json', ...(body === undefined ? {} : { 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' }) },
        timeout: timeoutMs,
      });
      req.once('response', (res) => resolve({ ok: true, value: { res, req } }));
      req.once('timeout', () => req.destroy(new Error(`no answer from ${url.host} in ${Math.round(timeoutMs / 1000)} s`)));
      req.once('error', (err) => resolve({ ok: false, error: { message: `${url.host}: ${describeNetError(err)}` } }));
      req.end(body);
    });
  }
}

/** A whole answer (a list page, a Status), bounded: a page of 500 objects is a few MiB at most. */
function readBody(res: IncomingMessage, req: ClientRequest): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (chunk: Buffer) => {
      size += chunk.length;
      chunks.push(chunk);
      if (size > MAX_BODY_BYTES) {
        chunks.length = 0;
        reject(new Error(`the answer is larger than ${MAX_BODY_BYTES / 1024 / 1024} MiB; refused before decoding it`));
        req.destroy();
      }
    });
    res.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.once('error', reject);
    req.once('error', reject);
  });
}

/** Splits the chunked stream into lines, each one `{"type": ..., "object": ...}`. */
function readEvents(res: IncomingMessage, req: ClientRequest, onEvent: (event: WatchEvent) => void): Promise<WatchEnd> {
  return new Promise((resolve) => {
    let pending = '';
    let done = false;
    const finish = (end: WatchEnd): void => {
      if (done) return;
      done = true;
      req.destroy();
      resolve(end);
    };
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      pending += chunk;
      let newline: number;
      while (!done && (newline = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, newline).trim();
        pending = pending.slice(newline + 1);
        if (line === '') continue;
        const event = parseEvent(line);
        if (!event) return finish({ ok: false, error: { message: `the watch stream sent a line that is not a watch event: ${line.slice(0, 120)}` } });
        onEvent(event);
      }
      if (pending.length > MAX_EVENT_BYTES) finish({ ok: false, error: { message: `a watch event is larger than ${MAX_EVENT_BYTES} bytes` } });
    });
    res.once('end', () => finish({ ok: true }));
    res.once('error', (err) => finish({ ok: false, error: { message: describeNetError(err) } }));
    res.once('close', () => finish(res.complete ? { ok: true } : { ok: false, error: { message: 'the watch connection was cut' } }));
    req.once('error', (err) => finish({ ok: false, error: { message: describeNetError(err) } }));
  });
}

function parseEvent(line: string): WatchEvent | undefined {
  let parsed: { type?: unknown; object?: unknown };
  try {
    parsed = JSON.parse(line) as typeof parsed;
  } catch {
    return undefined;
  }
  const object = parsed.object;
  if (typeof object !== 'object' || object === null) return undefined;
  switch (parsed.type) {
    case 'ADDED':
    case 'MODIFIED':
    case 'DELETED':
      return { type: parsed.type, object: object as RawObject };
    case 'BOOKMARK': {
      const rv = (object as RawObject).metadata?.resourceVersion;
      return typeof rv === 'string' ? { type: 'BOOKMARK', resourceVersion: rv } : undefined;
    }
    case 'ERROR': {
      const status = object as { code?: unknown; message?: unknown };
      return {
        type: 'ERROR',
        error: { ...(typeof status.code === 'number' ? { status: status.code } : {}), message: typeof status.message === 'string' ? status.message : 'watch error' },
      };
    }
    default:
      return undefined;
  }
}

/** The API server's Status message when it sent one, with a hint for the statuses an operator can fix. */
function statusError(status: number, body: string, what: string): ApiError {
  let message = `HTTP ${status}`;
  try {
    const parsed = JSON.parse(body) as { message?: unknown };
    if (typeof parsed.message === 'string' && parsed.message !== '') message = parsed.message;
  } catch {
    // Not a Status: the HTTP status says enough.
  }
  const hint =
    status === 401 ? ' (the token or client certificate was not accepted)' :
    status === 403 ? ' (the agent\'s ServiceAccount needs list and watch on it: see deploy/daemonset/rbac.yaml)' :
    '';
  return { status, message: `${what}: ${message}${hint}` };
}

function describeNetError(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ECONNREFUSED') return 'connection refused (is the API server up?)';
  if (code === 'ECONNRESET') return 'connection reset';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `cannot resolve the API server's name (${code})`;
  return err.message;
}

// An upstream response streamed to the client, as both proxies (source and destination side) send it:
// the head, the body with backpressure both ways, the trailers (gRPC's status rides in them), and one
// report of how it ended.

import type { DownstreamRequest } from './downstream.js';
import { type HeaderMap, grpcStatusOf, headerMapOf, outgoingHeaders } from './headers.js';
import type { ExchangeResult } from './upstream-connections.js';

export interface RelayedResponse {
  readonly status: number;
  /** Body bytes written to the client. */
  readonly bytes: number;
  readonly grpcStatus?: number;
  /** UC: the upstream (or its headers) failed mid-response; DC: the client went away. */
  readonly error?: { readonly flag: 'UC' | 'DC'; readonly message: string };
}

/** Sends `result` with `headers` (already filtered and mutated by the caller); `done` is called once. */
export function relayResponse(d: DownstreamRequest, result: Extract<ExchangeResult, { kind: 'response' }>, headers: HeaderMap, done: (relayed: RelayedResponse) => void): void {
  let bytes = 0;
  let ended = false;
  const end = (error?: RelayedResponse['error']): void => {
    if (ended) return;
    ended = true;
    const grpcStatus = grpcStatusOf(result.trailers()) ?? grpcStatusOf(result.headers);
    done({ status: result.status, bytes, ...(grpcStatus !== undefined ? { grpcStatus } : {}), ...(error ? { error } : {}) });
  };
  try {
    d.writeHead(result.status, outgoingHeaders(headers));
  } catch (err) {
    result.body.destroy();
    d.response.destroy();
    return end({ flag: 'UC', message: `invalid response headers: ${(err as Error).message}` });
  }
  const { body } = result;
  body.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    if (!d.response.write(chunk)) {
      body.pause();
      d.response.once('drain', () => body.resume());
    }
  });
  body.once('end', () => {
    const trailers = result.trailers();
    if (trailers && Object.keys(trailers).length > 0) d.addTrailers(outgoingHeaders(headerMapOf(trailers)));
    d.response.end();
    end();
  });
  body.once('error', (err: Error) => {
    d.response.destroy();
    end({ flag: 'UC', message: `upstream reset while streaming the response: ${err.message}` });
  });
  body.once('close', () => {
    if (!body.readableEnded) {
      d.response.destroy();
      end({ flag: 'UC', message: 'upstream closed before the response ended' });
    }
  });
  d.gone.addEventListener(
    'abort',
    () => {
      body.destroy();
      end({ flag: 'DC', message: 'the client went away during the response' });
    },
    { once: true },
  );
}

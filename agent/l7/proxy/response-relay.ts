// An upstream response streamed to the client, as both proxies (source and destination side) send it:
// the head, the body with backpressure both ways, the trailers (gRPC's status rides in them), and one
// report of how it ended. A route timeout (Envoy's route `timeout` lasts until the response is complete)
// can still expire mid-body: the client then cannot be given a complete answer, so its stream is reset.

import { constants as h2 } from 'node:http2';
import type { Http2ServerResponse } from 'node:http2';
import type { DownstreamRequest } from './downstream.js';
import { type HeaderMap, grpcStatusOf, headerMapOf, outgoingHeaders } from './headers.js';
import type { ExchangeResult } from './upstream-connections.js';

/** How a relayed response ended; every field is always there (undefined when it does not apply). */
export interface RelayedResponse {
  readonly status: number;
  /** Body bytes written to the client. */
  readonly bytes: number;
  readonly grpcStatus: number | undefined;
  /** UC: the upstream (or its headers) failed mid-response; DC: the client went away. */
  readonly error: { readonly flag: 'UC' | 'DC'; readonly message: string } | undefined;
  /** UT: the route timeout expired before the body ended; the client's stream was reset. */
  readonly timedOut: { readonly message: string } | undefined;
}

/**
 * Sends `result` with `headers` (already filtered and mutated by the caller); `done` is called once.
 * `deadline`, when given, resolves (with a message for the log) when the route timeout expires; if the
 * body has not ended by then, the upstream is abandoned and the client's stream reset.
 */
export function relayResponse(
  d: DownstreamRequest,
  result: Extract<ExchangeResult, { kind: 'response' }>,
  headers: HeaderMap,
  done: (relayed: RelayedResponse) => void,
  deadline?: Promise<string>,
): void {
  let bytes = 0;
  let ended = false;
  const end = (error?: RelayedResponse['error'], timedOut?: RelayedResponse['timedOut']): void => {
    if (ended) return;
    ended = true;
    done({ status: result.status, bytes, grpcStatus: grpcStatusOf(result.trailers()) ?? grpcStatusOf(result.headers), error, timedOut });
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
    if (ended) return;
    resetDownstream(d);
    end({ flag: 'UC', message: `upstream reset while streaming the response: ${err.message}` });
  });
  body.once('close', () => {
    if (!ended && !body.readableEnded) {
      resetDownstream(d);
      end({ flag: 'UC', message: 'upstream closed before the response ended' });
    }
  });
  void deadline?.then((message) => {
    if (ended) return;
    // Marked ended first: destroying the body emits 'close', which must not report UC instead.
    end(undefined, { message });
    body.destroy();
    resetDownstream(d);
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

/**
 * Tells the client its response is incomplete. HTTP/2: RST_STREAM INTERNAL_ERROR on this stream only
 * (a plain destroy would send NO_ERROR, which reads as a clean end). HTTP/1.1: the connection is closed,
 * the only signal a response with its headers already sent can still give.
 */
function resetDownstream(d: DownstreamRequest): void {
  if (d.version === 'HTTP/2') {
    const { stream } = d.response as Http2ServerResponse;
    if (!stream.destroyed) stream.close(h2.NGHTTP2_INTERNAL_ERROR);
    return;
  }
  d.response.destroy();
}

// What the HBONE server and pool report as they work, for metrics and access logs to count: plain
// callbacks, so the transport stays free of any particular metrics library.

import type { SpiffeId } from '../../state/model.js';
import type { HboneError } from './errors.js';
import type { HboneInboundRequest } from './server.js';

export type HboneServerEvent =
  /** TLS failed or the client was refused before HTTP/2 (no certificate, another trust domain, no workload at the address). */
  | { readonly type: 'connection-refused'; readonly peer: string; readonly local: string; readonly reason: string }
  | { readonly type: 'session-opened'; readonly peerIdentity: SpiffeId; readonly peer: string; readonly local: string }
  | { readonly type: 'session-closed'; readonly peerIdentity: SpiffeId; readonly peer: string; readonly reason: string }
  /** A CONNECT answered with an error status (400, 401, 503). */
  | { readonly type: 'stream-refused'; readonly peerIdentity: SpiffeId; readonly status: number; readonly reason: string }
  | { readonly type: 'tunnel-opened'; readonly request: HboneInboundRequest }
  | {
      readonly type: 'tunnel-closed';
      readonly request: HboneInboundRequest;
      /** Bytes from the client to the workload, and back. */
      readonly bytesIn: number;
      readonly bytesOut: number;
      readonly durationMs: number;
      readonly error?: string;
    };

export type HbonePoolEvent =
  | { readonly type: 'connection-opened'; readonly key: string; readonly target: string; readonly setupMs: number }
  | { readonly type: 'connection-failed'; readonly key: string; readonly target: string; readonly error: HboneError }
  | { readonly type: 'connection-closed'; readonly key: string; readonly target: string; readonly reason: string }
  /** `reused`: the stream went on a session that was already up. `setupMs`: from open() to the 200. */
  | { readonly type: 'stream-opened'; readonly key: string; readonly reused: boolean; readonly setupMs: number }
  | { readonly type: 'stream-failed'; readonly key: string; readonly error: HboneError };

/**
 * Emitted on every socket the pool handed out (HbonePool.open) whose HBONE connection received GOAWAY:
 * its server is draining, so a user that keeps such a socket for later requests (the L7 proxy's
 * kept-alive upstream connections) closes it once idle, and its next request opens a stream elsewhere.
 */
export const PEER_GOAWAY = 'hbone-peer-goaway';

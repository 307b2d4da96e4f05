// Decodes one delta ADS response from istiod within a size bound. A response that is too large or does
// not decode is refused before any of it is applied, and still yields its type URL and nonce when its
// top-level fields can be read, so that the client can NACK it and keep the stream (and its state).

import { fromBinary } from '@bufbuild/protobuf';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { type DeltaDiscoveryResponse, DeltaDiscoveryResponseSchema } from '../../proto/envoy/service/discovery/v3/discovery_pb.js';

/**
 * The largest response decoded, in bytes. Decoded and translated, istiod's workload state takes about
 * five times its wire size in heap and decodes at about 6 MiB a second here (100,000 workloads: 19 MiB,
 * 3.4 s, 97 MiB of heap), on the event loop. ztunnel allows 200 MiB; 64 MiB (over 300,000 workloads)
 * keeps the worst push to seconds of stall and a few hundred MiB, inside a DaemonSet's memory limit.
 */
export const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

export type DecodedResponse =
  | { readonly ok: true; readonly response: DeltaDiscoveryResponse }
  | { readonly ok: false; readonly reason: string; readonly typeUrl?: string; readonly nonce?: string };

const TYPE_URL_FIELD = 4;
const NONCE_FIELD = 5;

export function decodeResponse(bytes: Uint8Array, maxBytes = MAX_RESPONSE_BYTES): DecodedResponse {
  if (bytes.length > maxBytes) {
    return { ok: false, reason: `the response is ${bytes.length} bytes, over the agent's limit of ${maxBytes}; nothing in it was applied`, ...envelope(bytes) };
  }
  try {
    return { ok: true, response: fromBinary(DeltaDiscoveryResponseSchema, bytes) };
  } catch (err) {
    return { ok: false, reason: `the response does not decode (${(err as Error).message}); nothing in it was applied`, ...envelope(bytes) };
  }
}

/** type_url and nonce from the top-level fields alone, skipping the resources unread. */
function envelope(bytes: Uint8Array): { typeUrl?: string; nonce?: string } {
  const found: { typeUrl?: string; nonce?: string } = {};
  const reader = new BinaryReader(bytes);
  try {
    while (reader.pos < reader.len) {
      const [field, wireType] = reader.tag();
      if (field === TYPE_URL_FIELD && wireType === WireType.LengthDelimited) found.typeUrl = reader.string();
      else if (field === NONCE_FIELD && wireType === WireType.LengthDelimited) found.nonce = reader.string();
      else reader.skip(wireType, field);
    }
  } catch {
    // What was read before the damage is all there is.
  }
  return found;
}

// The DNS wire format (RFC 1035) as far as the DNS proxy needs it: the header and the one question of a
// pod's query, read with every length checked against the message (it comes from any process in a pod),
// and the answer built for it. Anything this reader does not understand is forwarded, never guessed at.

/** RFC 1035: a name is at most 255 octets on the wire (a label's 63 follows from its two tag bits). */
const MAX_NAME = 255;
/** A DNS message over TCP carries a 16-bit length; over UDP we never read more than this either. */
export const MAX_MESSAGE = 65535;
const HEADER = 12;

export const TYPE_A = 1;
export const TYPE_AAAA = 28;
export const CLASS_IN = 1;
export const RCODE_NOERROR = 0;
export const RCODE_FORMERR = 1;
export const RCODE_NXDOMAIN = 3;

export interface DnsQuestion {
  /** Lowercased, dot-separated, no trailing dot; "" for the root. */
  readonly name: string;
  readonly type: number;
  readonly class: number;
}

/** What the proxy may answer: a standard query with exactly one question. */
export interface DnsQuery {
  readonly id: number;
  readonly flags: number;
  readonly question: DnsQuestion;
  /** The question's bytes as sent (with the client's letter case, which 0x20-randomizing resolvers check). */
  readonly questionBytes: Uint8Array;
}

export type QueryParse =
  | { readonly ok: true; readonly query: DnsQuery }
  /** Not ours to answer (a response, another opcode, several questions): forward it unchanged. */
  | { readonly ok: false; readonly reason: 'not-a-query' | 'opcode' | 'question-count'; readonly id: number }
  /** Malformed: shorter than its header says, a label past the end, a compression loop. */
  | { readonly ok: false; readonly reason: 'malformed'; readonly detail: string; readonly id?: number };

/** Reads a query's header and its question; never reads past `message`. */
export function parseQuery(message: Uint8Array): QueryParse {
  if (message.length < HEADER) return { ok: false, reason: 'malformed', detail: `${message.length} bytes is shorter than a DNS header (12)` };
  if (message.length > MAX_MESSAGE) return { ok: false, reason: 'malformed', detail: `${message.length} bytes is longer than a DNS message can be` };
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  const id = view.getUint16(0);
  const flags = view.getUint16(2);
  if (flags & 0x8000) return { ok: false, reason: 'not-a-query', id };
  if (((flags >> 11) & 0xf) !== 0) return { ok: false, reason: 'opcode', id };
  if (view.getUint16(4) !== 1) return { ok: false, reason: 'question-count', id };
  const name = readName(message, HEADER);
  if (!name.ok) return { ok: false, reason: 'malformed', detail: name.detail, id };
  if (name.end + 4 > message.length) return { ok: false, reason: 'malformed', detail: 'the question ends before its type and class', id };
  const question: DnsQuestion = { name: name.name, type: view.getUint16(name.end), class: view.getUint16(name.end + 2) };
  return { ok: true, query: { id, flags, question, questionBytes: message.subarray(HEADER, name.end + 4) } };
}

type NameRead = { readonly ok: true; readonly name: string; readonly end: number } | { readonly ok: false; readonly detail: string };

/**
 * A domain name at `offset`, following compression pointers (RFC 1035 4.1.4) only backwards, so that a
 * loop cannot be built; `end` is where the name ends at its first position.
 */
export function readName(message: Uint8Array, offset: number): NameRead {
  const labels: string[] = [];
  let at = offset;
  let end = -1;
  let wireLength = 1;
  // Each pointer must point before the previous position, so there are fewer jumps than bytes.
  for (let steps = 0; steps <= message.length; steps++) {
    if (at >= message.length) return { ok: false, detail: `a name runs past the end of the message at byte ${at}` };
    const length = message[at]!;
    if (length === 0) {
      if (end < 0) end = at + 1;
      return { ok: true, name: labels.join('.'), end };
    }
    const tag = length & 0xc0;
    if (tag === 0xc0) {
      if (at + 1 >= message.length) return { ok: false, detail: `a compression pointer is cut at byte ${at}` };
      const target = ((length & 0x3f) << 8) | message[at + 1]!;
      if (target >= at) return { ok: false, detail: `a compression pointer at byte ${at} points forward (to ${target})` };
      if (end < 0) end = at + 2;
      at = target;
      continue;
    }
    // 0x40 and 0x80 (extended and reserved label types) also keep every plain label at 63 octets or fewer.
    if (tag !== 0) return { ok: false, detail: `label type 0x${tag.toString(16)} at byte ${at} is not defined` };
    if (at + 1 + length > message.length) return { ok: false, detail: `a label at byte ${at} runs past the end of the message` };
    wireLength += length + 1;
    if (wireLength > MAX_NAME) return { ok: false, detail: 'a name is longer than 255 octets' };
    let label = '';
    for (let i = at + 1; i <= at + length; i++) {
      const c = message[i]!;
      // Letters are compared without case (RFC 4343); other octets are kept, escaped so a "." inside a label stays one label.
      label += c >= 0x41 && c <= 0x5a ? String.fromCharCode(c + 0x20) : c > 0x20 && c < 0x7f && c !== 0x2e && c !== 0x5c ? String.fromCharCode(c) : `\\${c.toString().padStart(3, '0')}`;
    }
    labels.push(label);
    at += 1 + length;
  }
  return { ok: false, detail: 'a name has more compression pointers than the message has bytes' };
}

/** One address record of an answer. */
export interface AddressRecord {
  readonly type: typeof TYPE_A | typeof TYPE_AAAA;
  /** Four or sixteen octets. */
  readonly address: Uint8Array;
}

/**
 * The response to `query`: the client's id, opcode and RD, the question echoed byte for byte, and the
 * records, each named by a pointer to the question's name. `authoritative` for names the mesh owns.
 */
export function encodeResponse(query: DnsQuery, rcode: number, records: readonly AddressRecord[], ttl: number, authoritative: boolean): Uint8Array {
  const size = HEADER + query.questionBytes.length + records.reduce((n, r) => n + 12 + r.address.length, 0);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint16(0, query.id);
  // QR, the query's opcode and RD kept, AA when ours, RA: this server recurses (it forwards).
  const flags = 0x8000 | (query.flags & 0x7900) | (authoritative ? 0x0400 : 0) | 0x0080 | (rcode & 0xf);
  view.setUint16(2, flags);
  view.setUint16(4, 1);
  view.setUint16(6, records.length);
  out.set(query.questionBytes, HEADER);
  let at = HEADER + query.questionBytes.length;
  for (const record of records) {
    view.setUint16(at, 0xc000 | HEADER);
    view.setUint16(at + 2, record.type);
    view.setUint16(at + 4, CLASS_IN);
    view.setUint32(at + 6, ttl);
    view.setUint16(at + 10, record.address.length);
    out.set(record.address, at + 12);
    at += 12 + record.address.length;
  }
  return out;
}

/** A FORMERR for a message whose header could be read: the client learns its query was bad instead of waiting. */
export function encodeFormatError(id: number): Uint8Array {
  const out = new Uint8Array(HEADER);
  const view = new DataView(out.buffer);
  view.setUint16(0, id);
  view.setUint16(2, 0x8000 | 0x0080 | RCODE_FORMERR);
  return out;
}

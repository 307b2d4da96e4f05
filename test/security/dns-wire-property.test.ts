// The DNS proxy's wire reader faces every process of every enrolled pod. Properties: any bytes give an
// outcome (no throw, no read past the message, no name longer than DNS allows); a well-formed query
// round-trips through parse and encodeResponse; compression pointers cannot loop.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { TYPE_A, encodeResponse, parseQuery, readName } from '../../agent/dns/wire.js';

const label = fc.stringMatching(/^[a-zA-Z0-9-]{1,63}$/);
/** Names of at most 255 octets on the wire (each label plus its length byte, plus the root). */
const name = fc.array(label, { minLength: 1, maxLength: 8 }).filter((labels) => labels.reduce((n, l) => n + l.length + 1, 1) <= 255);

function query(id: number, labels: readonly string[], type: number): Uint8Array {
  const parts = labels.flatMap((l) => [l.length, ...Buffer.from(l, 'latin1')]);
  return Uint8Array.from([id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, ...parts, 0, type >> 8, type & 0xff, 0, 1]);
}

/** What a correct reader may return for a name: labels of at most 63 octets, at most 255 on the wire, every octet read. */
function plausible(text: string): boolean {
  const labels = text === '' ? [] : text.split('.');
  const octets = labels.map((l) => l.replace(/\\\d{3}/g, '_').length);
  return !/undefined|NaN/.test(text) && octets.every((n) => n >= 1 && n <= 63) && octets.reduce((n, l) => n + l + 1, 1) <= 255;
}

describe('DNS wire reader', () => {
  it('any bytes: an outcome, never a throw, and a parsed question lies inside the message', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 600 }), (bytes) => {
        const parsed = parseQuery(bytes);
        if (!parsed.ok) return;
        const q = parsed.query;
        assert.ok(12 + q.questionBytes.length <= bytes.length);
        assert.ok(plausible(q.question.name), JSON.stringify(q.question.name));
      }),
      { numRuns: 20000 },
    );
  });

  it('a query header followed by random name bytes: a plausible name or malformed, never more', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 300 }), (tail) => {
        const bytes = Uint8Array.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...tail]);
        const parsed = parseQuery(bytes);
        if (parsed.ok) assert.ok(plausible(parsed.query.question.name), JSON.stringify(parsed.query.question.name));
        else assert.equal(parsed.reason, 'malformed');
      }),
      { numRuns: 20000 },
    );
  });

  it('a well-formed query round-trips: the name lowercased, the answer carries the id and the question as sent', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), name, (id, labels) => {
        const bytes = query(id, labels, TYPE_A);
        const parsed = parseQuery(bytes);
        assert.ok(parsed.ok);
        assert.equal(parsed.query.question.name, labels.join('.').toLowerCase());
        const reply = encodeResponse(parsed.query, 0, [{ type: TYPE_A, address: Uint8Array.from([240, 240, 0, 1]) }], 30, true);
        assert.equal((reply[0]! << 8) | reply[1]!, id);
        assert.ok(reply[2]! & 0x80, 'QR set');
        assert.deepEqual([...reply.subarray(12, 12 + parsed.query.questionBytes.length)], [...bytes.subarray(12)]);
        // The answer's name is a pointer back to the question's, which reads as the same name.
        const answerName = readName(reply, 12 + parsed.query.questionBytes.length);
        assert.ok(answerName.ok);
        assert.equal(answerName.name, parsed.query.question.name);
      }),
      { numRuns: 2000 },
    );
  });

  it('a name longer than 255 octets is refused, even when each label is within 63', () => {
    const long = query(7, Array.from({ length: 5 }, () => 'x'.repeat(63)), TYPE_A);
    const parsed = parseQuery(long);
    assert.ok(!parsed.ok && parsed.reason === 'malformed' && /longer than 255/.test(parsed.detail));
  });

  it('compression pointers: one to itself or forward is refused, one backward is followed', () => {
    const self = Uint8Array.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]);
    const selfParsed = parseQuery(self);
    assert.ok(!selfParsed.ok && selfParsed.reason === 'malformed' && /points forward/.test(selfParsed.detail));
    // Two pointers that point at each other: the second points forward of nothing before it, so refused too.
    const pair = Uint8Array.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 14, 0xc0, 12, 0, 1, 0, 1]);
    assert.ok(!parseQuery(pair).ok);
    // "a" at 12, then a name at 15 that is "b" and a pointer back to 12: "b.a".
    const back = Uint8Array.from([0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x61, 0, 1, 0x62, 0xc0, 12]);
    const read = readName(back, 15);
    assert.ok(read.ok);
    assert.equal(read.name, 'b.a');
    assert.equal(read.end, 19);
  });
});

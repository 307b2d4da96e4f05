// Property tests (fast-check) of the SOCKS5 handshake a pod's 15080 listener parses from untrusted
// bytes (agent/tunnel/socks5/handshake.ts): on arbitrary bytes the parsers never throw and never read
// past the lengths the message declares; a message split at arbitrary points parses as it does whole;
// refusals carry RFC 1928's reply codes. Over real loopback sockets, readSocks5Request answers
// arbitrary bytes, sent in arbitrary pieces, exactly as a reference reading of RFC 1928 written here
// does, and leaves the bytes after a request, in order, for the application.

import assert from 'node:assert/strict';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { SOCKS5_REPLY, type Socks5Handshake, parseGreeting, parseRequest, readSocks5Request } from '../../agent/tunnel/socks5/handshake.js';
import { fuzzTarget } from '../fuzz/property.js';

const fuzz = fuzzTarget('socks5-handshake');

const RUNS = { numRuns: 4000 };
const RFC_REPLIES = new Set<number>(Object.values(SOCKS5_REPLY));

/** Bytes shaped like SOCKS5 often enough to get past the first checks, and anything else. */
const byte = fc.oneof(fc.constantFrom(0, 1, 2, 3, 4, 5, 0xff), fc.integer({ min: 0, max: 255 }));
const bytes = (maxLength: number) => fc.array(byte, { maxLength }).map((b) => Buffer.from(b));

/** A well-formed CONNECT request, with what it asks for as the reference reads it. */
type Target = { readonly atyp: 1 | 3 | 4; readonly addr: Buffer; readonly port: number };
const target: fc.Arbitrary<Target> = fc.oneof(
  fc.record({ atyp: fc.constant(1 as const), addr: fc.uint8Array({ minLength: 4, maxLength: 4 }).map(Buffer.from), port: fc.integer({ min: 0, max: 65535 }) }),
  fc.record({ atyp: fc.constant(4 as const), addr: fc.uint8Array({ minLength: 16, maxLength: 16 }).map(Buffer.from), port: fc.integer({ min: 0, max: 65535 }) }),
  fc.record({
    atyp: fc.constant(3 as const),
    addr: fc.oneof(fc.stringMatching(/^[A-Za-z0-9.-]{0,255}$/), fc.string({ maxLength: 40 })).map((s) => Buffer.from(s, 'latin1').subarray(0, 255)),
    port: fc.integer({ min: 0, max: 65535 }),
  }),
);
const encodeRequest = (t: Target, cmd = 1): Buffer =>
  Buffer.concat([Buffer.from([5, cmd, 0, t.atyp]), t.atyp === 3 ? Buffer.from([t.addr.length]) : Buffer.alloc(0), t.addr, Buffer.from([t.port >> 8, t.port & 0xff])]);

// ---- The reference: RFC 1928 read over the whole input at once, with Ambit's choices spelled out. ----

/** What the server must do with everything the client sent before its FIN. */
type Expected =
  | { readonly kind: 'closed'; readonly wrote: Buffer } // no reply owed (not SOCKS5, or the client stopped short)
  | { readonly kind: 'refused'; readonly wrote: Buffer } // a reply, then close
  | { readonly kind: 'request'; readonly wrote: Buffer; readonly host: string; readonly port: number; readonly rest: Buffer };

const SELECTED = Buffer.from([5, 0]);
const reply = (code: number): Buffer => Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0]);

function reference(input: Buffer): Expected {
  // §3: VER, NMETHODS, METHODS. Not version 5 or no method offered: not a SOCKS5 client, just closed.
  if (input.length < 2 || input[0] !== 5 || input[1] === 0 || input.length < 2 + input[1]!) return { kind: 'closed', wrote: Buffer.alloc(0) };
  const methods = input.subarray(2, 2 + input[1]!);
  // Only "no authentication required" (0x00) is served; otherwise X'FF', "no acceptable methods".
  if (!methods.includes(0)) return { kind: 'refused', wrote: Buffer.from([5, 0xff]) };
  const req = input.subarray(2 + input[1]!);
  // §4: VER CMD RSV ATYP DST.ADDR DST.PORT.
  if (req.length < 5) return { kind: 'closed', wrote: SELECTED };
  const refused = (code: number): Expected => ({ kind: 'refused', wrote: Buffer.concat([SELECTED, reply(code)]) });
  if (req[0] !== 5) return refused(0x01);
  if (req[1] !== 1) return refused(0x07); // only CONNECT
  const addressLength = { 1: 4, 4: 16, 3: 1 + req[4]! }[req[3]!];
  if (addressLength === undefined) return refused(0x08);
  if (req.length < 4 + addressLength + 2) return { kind: 'closed', wrote: SELECTED };
  const addr = req.subarray(4, 4 + addressLength);
  const port = req.readUInt16BE(4 + addressLength);
  if (req[3] === 3 && addr.length === 1) return refused(0x04); // an empty name reaches no host
  if (port === 0) return refused(0x04);
  const host =
    req[3] === 1
      ? [...addr].join('.')
      : req[3] === 4
        ? new URL(`http://[${[...Array(8).keys()].map((i) => addr.readUInt16BE(i * 2).toString(16)).join(':')}]`).hostname.slice(1, -1)
        : addr.subarray(1).toString('latin1').toLowerCase().replace(/\.$/, '');
  return { kind: 'request', wrote: Buffer.concat([SELECTED, reply(0)]), host, port, rest: req.subarray(4 + addressLength + 2) };
}

/** An IPv6 address as WHATWG writes it (zeros compressed), so that equal addresses compare equal; names as they are. */
const canonicalHost = (r: { readonly host: string; readonly kind: 'ip' | 'name' }): string =>
  r.kind === 'ip' && r.host.includes(':') ? new URL(`http://[${r.host}]`).hostname.slice(1, -1) : r.host;

// ---- Parser properties: pure, many runs. ----

test('the parsers never throw on arbitrary bytes, and refuse only with RFC 1928 reply codes (or "no acceptable methods")', async () => {
  await fuzz.assert('never-throws',
    fc.property(bytes(40), (input) => {
      for (const step of [parseGreeting(input), parseRequest(input)]) {
        if ('error' in step && step.reply !== undefined) assert.ok(step.reply === 'no-method' || RFC_REPLIES.has(step.reply), `reply ${step.reply}`);
        if ('value' in step) assert.ok(step.length <= input.length, 'a parsed length within the bytes given');
      }
    }),
    RUNS,
  );
});

test('a parse depends only on the bytes the message declares: what follows never changes it, and a prefix needs more or decides the same', async () => {
  await fuzz.assert('declared-bytes-only',
    fc.property(bytes(40), bytes(20), (input, extra) => {
      for (const parse of [parseGreeting, parseRequest]) {
        const whole = parse(input);
        const extended = parse(Buffer.concat([input, extra]));
        if ('need' in whole) continue; // more bytes may decide either way
        // Decided on `input`: the same decision with more bytes after it, and the value's own bytes suffice.
        assert.deepEqual(extended, whole);
        if ('value' in whole) assert.deepEqual(parse(input.subarray(0, whole.length)), whole);
      }
    }),
    RUNS,
  );
});

test('a well-formed CONNECT split at any point needs more bytes until it is whole, then asks for what was encoded', async () => {
  await fuzz.assert('split-connect',
    fc.property(target, bytes(16), (t, trailing) => {
      const message = encodeRequest(t);
      for (let cut = 0; cut < message.length; cut++) assert.ok('need' in parseRequest(message.subarray(0, cut)), `a request cut at ${cut} of ${message.length}`);
      const parsed = parseRequest(Buffer.concat([message, trailing]));
      const expected = reference(Buffer.concat([Buffer.from([5, 1, 0]), message, trailing]));
      if (expected.kind === 'request') {
        assert.ok('value' in parsed, JSON.stringify(parsed));
        assert.equal(parsed.length, message.length);
        assert.deepEqual({ host: canonicalHost(parsed.value), port: parsed.value.port }, { host: expected.host, port: expected.port });
      } else {
        assert.ok('error' in parsed && parsed.reply === SOCKS5_REPLY.hostUnreachable, `port 0 or an empty name: ${JSON.stringify(parsed)}`);
      }
    }),
    RUNS,
  );
});

test('commands other than CONNECT get 0x07 and unknown address types 0x08, however long the rest', async () => {
  await fuzz.assert('command-atyp-codes',
    fc.property(fc.integer({ min: 0, max: 255 }).filter((c) => c !== 1), fc.integer({ min: 0, max: 255 }).filter((a) => ![1, 3, 4].includes(a)), bytes(30), (cmd, atyp, rest) => {
      const notConnect = parseRequest(Buffer.concat([Buffer.from([5, cmd, 0, 1]), rest, Buffer.alloc(6)]));
      assert.ok('error' in notConnect && notConnect.reply === SOCKS5_REPLY.commandNotSupported);
      const unknownType = parseRequest(Buffer.concat([Buffer.from([5, 1, 0, atyp]), rest, Buffer.alloc(1)]));
      assert.ok('error' in unknownType && unknownType.reply === SOCKS5_REPLY.addressTypeNotSupported);
    }),
    RUNS,
  );
});

// ---- readSocks5Request over real sockets: arbitrary bytes in arbitrary pieces against the reference. ----

interface Served {
  readonly result: Socks5Handshake;
  /** What the application can still read after the handshake (its own bytes), until the client's FIN. */
  readonly rest: Buffer;
}

let server: Server;
const served: ((s: Served) => void)[] = [];

before(async () => {
  server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket: Socket) => {
    socket.on('error', () => undefined);
    void readSocks5Request(socket, 5_000).then((result) => {
      const deliver = served.shift()!;
      if (!result.ok) return deliver({ result, rest: Buffer.alloc(0) });
      // As the outbound path would: answer success, then read the application's bytes.
      socket.write(reply(0));
      const rest: Buffer[] = [];
      socket.on('data', (d: Buffer) => rest.push(d));
      socket.once('end', () => {
        socket.end();
        deliver({ result, rest: Buffer.concat(rest) });
      });
      socket.resume();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
});
after(() => server.close());

/** Sends `input` in the given pieces (a pause between, so that they arrive apart), then FIN; returns what came back. */
async function converse(input: Buffer, cuts: readonly number[]): Promise<{ wrote: Buffer; served: Served }> {
  const outcome = new Promise<Served>((r) => served.push(r));
  const client = connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true, noDelay: true });
  const got: Buffer[] = [];
  client.on('data', (d: Buffer) => got.push(d));
  const closed = new Promise<void>((r) => client.once('close', () => r()));
  client.on('error', () => undefined);
  await new Promise((r) => client.once('connect', r));
  let at = 0;
  for (const cut of [...cuts, input.length]) {
    if (cut > at) client.write(input.subarray(at, cut));
    at = Math.max(at, cut);
    await new Promise((r) => setTimeout(r, 2));
  }
  client.end();
  const result = await outcome;
  // The server ends its side once it is done; without that the client would wait for ever.
  await Promise.race([closed, new Promise((r) => setTimeout(r, 5_000))]);
  client.destroy();
  return { wrote: Buffer.concat(got), served: result };
}

/** Inputs that get as far as each check: a greeting (good or not), then a request or anything. */
const conversation = fc
  .tuple(
    fc.oneof(fc.constant(Buffer.from([5, 1, 0])), fc.constant(Buffer.from([5, 2, 2, 0])), fc.constant(Buffer.from([5, 1, 2])), bytes(6)),
    fc.oneof(target.map((t) => encodeRequest(t)), fc.tuple(target, fc.integer({ min: 0, max: 255 })).map(([t, cmd]) => encodeRequest(t, cmd)), bytes(24)),
    bytes(12),
  )
  .map(([greeting, request, payload]) => Buffer.concat([greeting, request, payload]));
const cutsOf = (input: Buffer) => fc.uniqueArray(fc.integer({ min: 1, max: Math.max(1, input.length - 1) }), { maxLength: 4 }).map((c) => c.sort((a, b) => a - b));

test('over a socket, arbitrary bytes in arbitrary pieces get what RFC 1928 says, and the bytes after a request stay for the application', async () => {
  await fuzz.assert('socket-reference',
    fc.asyncProperty(conversation.chain((input) => fc.tuple(fc.constant(input), cutsOf(input))), async ([input, cuts]) => {
      const expected = reference(input);
      const { wrote, served: outcome } = await converse(input, cuts);
      assert.deepEqual([...wrote], [...expected.wrote], `the server's answer to ${input.toString('hex')} cut at ${cuts}`);
      if (expected.kind !== 'request') return assert.equal(outcome.result.ok, false);
      assert.ok(outcome.result.ok, JSON.stringify(outcome.result));
      assert.deepEqual({ host: canonicalHost(outcome.result.request), port: outcome.result.request.port }, { host: expected.host, port: expected.port });
      assert.deepEqual([...outcome.rest], [...expected.rest], 'the bytes after the request, whole and in order');
    }),
    { numRuns: 300 },
  );
});

// Property tests (fast-check, fuzz target connect-headers) of what any HBONE peer controls in a CONNECT
// request (agent/tunnel/hbone/connect-headers.ts): parseAuthority accepts exactly `a.b.c.d:port` and
// `[ipv6]:port` and never an address WHATWG URL would read as another one (octal, hex, short IPv4);
// readConnectRequest never throws on any header set, refuses with 400 and a reason, and accepts only
// classic CONNECT whose authority names, as an address, the IP the tunnel was opened to; and, where a
// Service may be named (the inner tunnel of double HBONE, the east-west gateway), parseServiceAuthority
// accepts exactly an RFC 1123 host name (not an IP in any spelling) and a port 1-65535.

import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import type { IncomingHttpHeaders } from 'node:http2';
import { test } from 'node:test';
import fc from 'fast-check';
import { formatAuthority, parseAuthority, parseServiceAuthority, readConnectRequest } from '../../agent/tunnel/hbone/connect-headers.js';
import { fuzzTarget } from '../fuzz/property.js';

const fuzz = fuzzTarget('connect-headers');

/** An address as bytes, spelled one way: WHATWG URL's serialization, IPv4 as IPv4-mapped IPv6. */
function addressKey(ip: string): string {
  return new URL(`http://[${isIP(ip) === 4 ? `::ffff:${ip}` : ip}]`).hostname;
}

/** The reference, from the rule ztunnel applies (a SocketAddr): canonical dotted decimal or a bracketed IPv6, then a port 1-65535. */
function referenceAuthority(text: string): { key: string; port: number } | undefined {
  const v4 = /^((?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}):(\d+)$/.exec(text);
  const v6 = /^\[([0-9A-Fa-f:.]+)\]:(\d+)$/.exec(text);
  const host = v4?.[1] ?? v6?.[1];
  const digits = v4?.[2] ?? v6?.[2];
  if (host === undefined || digits === undefined || digits.length > 5) return undefined;
  if (v6 && isIP(host) !== 6) return undefined;
  const port = Number(digits);
  if (port < 1 || port > 65535) return undefined;
  return { key: addressKey(host), port };
}

const port = fc.oneof(fc.integer({ min: 0, max: 70000 }).map(String), fc.stringMatching(/^0{0,3}\d{1,5}$/), fc.constantFrom('', '-1', '+80', '80 ', '8O', '１'));
const host = fc.oneof(
  fc.ipV4(),
  fc.ipV4Extended(), // 0x7f.1, 017.0.0.1, 127.1: what a URL parser reads as another address
  fc.ipV6().map((ip) => `[${ip}]`),
  fc.ipV6(),
  fc.ipV4().map((ip) => `[${ip}]`),
  fc.ipV4().map((ip) => `[::ffff:${ip}]`),
  fc.constantFrom('[fe80::1%25eth0]', '[::1]%00', 'localhost', 'reviews.default.svc', '[]', '[::1', '::1]', ''),
  fc.domain(),
);
const casing = (text: string, upper: boolean[]): string => [...text].map((c, i) => (upper[i % upper.length] ? c.toUpperCase() : c)).join('');
const authorityText = fc.oneof(
  fc.tuple(host, port, fc.array(fc.boolean(), { minLength: 1, maxLength: 8 })).map(([h, p, u]) => casing(`${h}:${p}`, u)),
  fc.tuple(fc.constantFrom('', ' ', '\t', 'x', '\0', '@'), host, port, fc.constantFrom('', ' ', '/', '\r\n', '#', '\0')).map(([a, h, p, b]) => `${a}${h}:${p}${b}`),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: fc.constantFrom('[', ']', ':', '.', '1', '0', 'f', 'F', ':', '%'), maxLength: 30 }),
);

test('parseAuthority accepts exactly ip:port or [ipv6]:port, never throws, and reads the address URL reads', async () => {
  await fuzz.assert(
    'parse-authority',
    fc.property(authorityText, (text) => {
      const parsed = parseAuthority(text);
      const reference = referenceAuthority(text);
      assert.equal(parsed !== undefined, reference !== undefined, `${JSON.stringify(text)}: parsed ${JSON.stringify(parsed)}, the reference ${JSON.stringify(reference)}`);
      if (!parsed || !reference) return;
      assert.equal(addressKey(parsed.ip), reference.key, JSON.stringify(text));
      assert.equal(parsed.port, reference.port, JSON.stringify(text));
      // The same text in a URL: a peer's authority must name no other host for any later reader.
      const url = new URL(`http://${text}`);
      assert.equal(addressKey(url.hostname.replace(/^\[|\]$/g, '')), reference.key, `URL reads ${JSON.stringify(text)} as ${url.hostname}`);
    }),
    { numRuns: 4000 },
  );
});

test('formatAuthority and parseAuthority round-trip every address and port', async () => {
  await fuzz.assert(
    'format-round-trip',
    fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), fc.integer({ min: 1, max: 65535 }), (ip, p) => {
      const parsed = parseAuthority(formatAuthority({ ip, port: p }));
      assert.ok(parsed, `${ip} port ${p}`);
      assert.equal(addressKey(parsed.ip), addressKey(ip));
      assert.equal(parsed.port, p);
    }),
    { numRuns: 2000 },
  );
});

/** The IP the tunnel was opened to, as the socket reports it (canonical) or as a dual-stack socket maps it. */
const LOCAL_IPS = ['10.1.0.2', '::ffff:10.1.0.2', 'fd00::2', '::1', '127.0.0.1'] as const;
const headerValue = fc.oneof(fc.constant(undefined), fc.string({ maxLength: 12 }), fc.array(fc.string({ maxLength: 6 }), { maxLength: 3 }));
const headers: fc.Arbitrary<IncomingHttpHeaders> = fc
  .record({
    method: fc.oneof(fc.constantFrom('CONNECT', 'GET', 'connect', 'CONNECT ', undefined), fc.string({ maxLength: 8 })),
    authority: fc.oneof(fc.constantFrom(...LOCAL_IPS).map((ip) => formatAuthority({ ip, port: 9080 })), fc.constantFrom('[::FFFF:10.1.0.2]:80', '[FD00::2]:80', '[fd00:0::2]:80', '10.1.0.2:0'), authorityText, fc.constant(undefined)),
    protocol: fc.oneof(fc.constant(undefined), fc.constant(undefined), fc.constantFrom('websocket', '')),
    path: fc.oneof(fc.constant(undefined), fc.constant(undefined), fc.constantFrom('/', '')),
    scheme: fc.oneof(fc.constant(undefined), fc.constant(undefined), fc.constantFrom('https', '')),
    traceparent: headerValue,
    baggage: headerValue,
    forwarded: headerValue,
    other: fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 }),
  })
  .map((h) => {
    const out: IncomingHttpHeaders = { ...h.other };
    const put = (name: string, value: string | string[] | undefined): void => {
      if (value !== undefined) Object.defineProperty(out, name, { value, enumerable: true, writable: true, configurable: true });
    };
    put(':method', h.method);
    put(':authority', h.authority);
    put(':protocol', h.protocol);
    put(':path', h.path);
    put(':scheme', h.scheme);
    put('traceparent', h.traceparent);
    put('baggage', h.baggage);
    put('forwarded', h.forwarded);
    return out;
  });

test('readConnectRequest never throws, refuses with 400 and a reason, and accepts only classic CONNECT to the local address', async () => {
  await fuzz.assert(
    'connect-request',
    fc.property(headers, fc.constantFrom(...LOCAL_IPS), (h, localIp) => {
      const check = readConnectRequest(h, localIp);
      const authorityText = typeof h[':authority'] === 'string' ? h[':authority'] : undefined;
      const reference = authorityText === undefined ? undefined : referenceAuthority(authorityText);
      const classic = h[':method'] === 'CONNECT' && h[':protocol'] === undefined && h[':path'] === undefined && h[':scheme'] === undefined;
      if (!check.ok) {
        assert.equal(check.status, 400);
        assert.ok(check.reason.length > 0);
        // Refusing the canonical spelling of the local address would break every peer: only other spellings may be refused.
        const canonical = classic && reference !== undefined && authorityText === formatAuthority({ ip: localIp.replace(/^::ffff:/, ''), port: reference.port });
        assert.ok(!canonical, `${JSON.stringify(h)} to ${localIp} refused: ${check.reason}`);
        return;
      }
      assert.ok(classic, `${JSON.stringify(h)} accepted though it is not classic CONNECT`);
      assert.ok(reference, `${JSON.stringify(h)} accepted with an authority the reference refuses`);
      assert.equal(addressKey(check.authority.ip), addressKey(localIp), `${JSON.stringify(h)} accepted for ${check.authority.ip} on ${localIp}`);
      assert.equal(addressKey(check.authority.ip), reference.key);
      assert.equal(check.authority.port, reference.port);
      const joined = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v.join(',') : v) || undefined;
      assert.deepEqual(
        { ...check.headers },
        Object.fromEntries(
          (['traceparent', 'baggage', 'forwarded'] as const).flatMap((name) => {
            const v = joined(h[name]);
            return v === undefined ? [] : [[name, v]];
          }),
        ),
      );
    }),
    { numRuns: 4000 },
  );
});

/** The reference for a Service authority: dot-separated labels of letters, digits and inner hyphens (1-63 each, 253 in all), then a port 1-65535; never text an address parser takes. */
function referenceServiceAuthority(text: string): { hostname: string; port: number } | undefined {
  const colon = text.lastIndexOf(':');
  if (colon < 0) return undefined;
  const name = text.slice(0, colon);
  const digits = text.slice(colon + 1);
  if (!/^\d{1,5}$/.test(digits) || name.length === 0 || name.length > 253) return undefined;
  const label = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
  if (!name.split('.').every((l) => label.test(l)) || isIP(name) !== 0) return undefined;
  const port = Number(digits);
  return port >= 1 && port <= 65535 ? { hostname: name.toLowerCase(), port } : undefined;
}

const serviceAuthorityText = fc.oneof(
  authorityText,
  fc.tuple(fc.domain(), port).map(([h, p]) => `${h}:${p}`),
  fc.tuple(fc.constantFrom('reviews.bookinfo.svc.cluster.local', 'a', 'x-1.y', '-a.b', 'a-.b', 'a..b', 'a.b.', '.a', 'a_b', 'a'.repeat(64), `${'a'.repeat(63)}.`.repeat(4) + 'a', 'xn--bcher-kva.example', 'ré.example'), port).map(([h, p]) => `${h}:${p}`),
);

test('parseServiceAuthority accepts exactly <host name>:<port>, never an address, and never throws', async () => {
  await fuzz.assert(
    'parse-service-authority',
    fc.property(serviceAuthorityText, (text) => {
      const parsed = parseServiceAuthority(text);
      const reference = referenceServiceAuthority(text);
      assert.deepEqual(parsed, reference, JSON.stringify(text));
      if (parsed) {
        assert.equal(parseAuthority(text), undefined, `${JSON.stringify(text)} reads as both a host name and an address`);
        assert.equal(formatAuthority(parsed), `${parsed.hostname}:${parsed.port}`);
      }
    }),
    { numRuns: 4000 },
  );
});

test('readConnectRequest with Services allowed accepts a host name authority only as parseServiceAuthority reads it, and addresses only to the local IP', async () => {
  await fuzz.assert(
    'connect-request-services',
    fc.property(headers, fc.constantFrom(...LOCAL_IPS), (h, localIp) => {
      const check = readConnectRequest(h, localIp, true);
      if (!check.ok) {
        assert.equal(check.status, 400);
        return;
      }
      const text = h[':authority'] as string;
      if ('hostname' in check.authority) assert.deepEqual(check.authority, referenceServiceAuthority(text));
      else assert.equal(addressKey(check.authority.ip), addressKey(localIp));
    }),
    { numRuns: 3000 },
  );
});

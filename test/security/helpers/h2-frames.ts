// A raw HTTP/2 (h2c prior knowledge) client for requests Node's own client refuses to send (CONNECT
// with :path or :scheme, :protocol without the server's consent, an absolute :path): the preface,
// empty SETTINGS, and one HEADERS frame whose block holds literal fields (HPACK §6.2.2, no Huffman),
// then whatever the server answers on stream 1, read frame by frame.

import { connect } from 'node:net';

export interface H2Answer {
  /** RST_STREAM's error code for stream 1 (1 = PROTOCOL_ERROR), if the server reset it. */
  readonly reset?: number;
  /** GOAWAY's error code, if the server sent one. */
  readonly goaway?: number;
  /** :status, when the server answered with one from HPACK's static table (200, 204, 206, 304, 400, 404, 500). */
  readonly status?: number;
  /** The response body (DATA frames on stream 1). */
  readonly body: string;
}

const STATIC_STATUS: Readonly<Record<number, number>> = { 8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500 };

function literal(name: string, value: string): Buffer {
  const n = Buffer.from(name, 'latin1');
  const v = Buffer.from(value, 'latin1');
  if (n.length > 126 || v.length > 126) throw new Error('keep test header fields short: one-byte HPACK lengths only');
  return Buffer.concat([Buffer.from([0x00, n.length]), n, Buffer.from([v.length]), v]);
}

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** Sends one request (END_STREAM with its headers) and reads until stream 1 ends, resets, or `waitMs` passes. */
export function h2Request(port: number, fields: readonly (readonly [string, string])[], waitMs = 3000): Promise<H2Answer> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => {
      const block = Buffer.concat(fields.map(([n, v]) => literal(n, v)));
      s.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), frame(4, 0, 0, Buffer.alloc(0)), frame(1, 0x5, 1, block)]));
    });
    let pending = Buffer.alloc(0);
    let body = '';
    let status: number | undefined;
    let reset: number | undefined;
    let goaway: number | undefined;
    const done = (): void => {
      clearTimeout(timer);
      s.destroy();
      resolve({ body, ...(status !== undefined ? { status } : {}), ...(reset !== undefined ? { reset } : {}), ...(goaway !== undefined ? { goaway } : {}) });
    };
    const timer = setTimeout(done, waitMs);
    s.on('error', () => undefined);
    s.once('close', done);
    s.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 9) {
        const length = pending.readUIntBE(0, 3);
        if (pending.length < 9 + length) break;
        const [type, flags] = [pending[3]!, pending[4]!];
        const stream = pending.readUInt32BE(5) & 0x7fffffff;
        const payload = pending.subarray(9, 9 + length);
        pending = pending.subarray(9 + length);
        if (type === 4 && (flags & 1) === 0) s.write(frame(4, 1, 0, Buffer.alloc(0)));
        if (type === 7) goaway = payload.readUInt32BE(4);
        if (stream !== 1) continue;
        if (type === 3) reset = payload.readUInt32BE(0);
        if (type === 1 && (payload[0]! & 0x80) !== 0) status = STATIC_STATUS[payload[0]! & 0x7f];
        if (type === 0) body += payload.toString('latin1');
        if (type === 3 || ((type === 0 || type === 1) && (flags & 1) === 1) || type === 7) return done();
      }
    });
  });
}

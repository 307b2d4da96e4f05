// Which HTTP version a captured client speaks, from its first bytes: the HTTP/2 connection preface
// ("PRI * HTTP/2.0", prior knowledge, as gRPC and h2c clients send it) or anything else, taken as
// HTTP/1.x. The bytes read to decide are handed back to the server that parses the connection.

import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export type Sniffed = { readonly version: 'HTTP/1.1'; readonly first: Buffer } | { readonly version: 'HTTP/2'; readonly first: Buffer };

/** Reads the first chunk of a paused socket; undefined if it closed first. */
export function sniffHttpVersion(socket: Socket): Promise<Sniffed | undefined> {
  return new Promise((resolve) => {
    const onClose = (): void => resolve(undefined);
    socket.once('close', onClose);
    socket.once('data', (first: Buffer) => {
      socket.pause();
      socket.removeListener('close', onClose);
      const n = Math.min(first.length, H2_PREFACE.length);
      const h2 = n >= 4 && first.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      resolve({ version: h2 ? 'HTTP/2' : 'HTTP/1.1', first });
    });
    socket.resume();
  });
}

/**
 * The socket with its first chunk put back in front. Node's HTTP/1 server accepts `socket.unshift`, but
 * its HTTP/2 server reads the socket's handle directly and would never see an unshifted chunk, so for
 * HTTP/2 the socket is wrapped in a stream that replays the chunk (the JS stream costs some speed).
 */
export class ReplayedSocket extends Duplex {
  constructor(
    first: Buffer,
    private readonly socket: Socket,
  ) {
    super({ allowHalfOpen: true });
    this.push(first);
    socket.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) socket.pause();
    });
    socket.once('end', () => this.push(null));
    socket.once('error', (err) => this.destroy(err));
    socket.once('close', () => this.destroy());
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.socket.write(chunk, encoding, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end(callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.socket.destroy();
    callback(error);
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }

  get remotePort(): number | undefined {
    return this.socket.remotePort;
  }
}

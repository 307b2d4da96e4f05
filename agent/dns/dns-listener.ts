// A DNS server's sockets, UDP and TCP on one port, for any answering logic (the agent's proxy, the lab's
// cluster DNS): each message is handed to one function, whose reply goes back the way the query came.
// TCP is framed as RFC 7766 says, with bounded buffering and pipelining, since any process may connect.

import { type Socket as UdpSocket, createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { type Server, type Socket, createServer } from 'node:net';
import type { Logger } from 'pino';
import { MAX_MESSAGE } from './wire.js';

/** Queries one TCP connection may have unanswered at once. */
const MAX_TCP_PIPELINE = 16;
/** An idle TCP client is closed after this (RFC 7766 asks servers to time idle connections out). */
const TCP_IDLE_MS = 10_000;

export interface DnsClient {
  readonly ip: string;
  readonly port: number;
}

/** The reply to one message from `client`, or undefined to send none (the client retries or gives up). */
export type DnsHandler = (message: Uint8Array, client: DnsClient, transport: 'udp' | 'tcp') => Promise<Uint8Array | undefined>;

export interface DnsListener {
  readonly port: number;
  close(): void;
}

/**
 * Binds UDP and TCP on `host:port` (port 0 picks one for UDP, and TCP takes the same). `reusePort`: with
 * SO_REUSEPORT, so that during an upgrade a new agent binds beside the old one.
 */
export async function listenDns(host: string, port: number, handle: DnsHandler, log: Logger, reusePort = port !== 0): Promise<DnsListener> {
  const udp = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4', reuseAddr: false, reusePort });
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind(port, host, () => {
      udp.off('error', reject);
      resolve();
    });
  });
  udp.on('error', (err) => log.warn({ err }, `DNS UDP socket on ${host}:${port} failed`));
  udp.on('message', (message, rinfo) => {
    void handle(message, { ip: rinfo.address, port: rinfo.port }, 'udp').then((reply) => reply && udp.send(reply, rinfo.port, rinfo.address));
  });
  const bound = udp.address().port;
  const tcp = createServer((socket) => serveTcp(socket, handle));
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen({ port: bound, host, reusePort }, () => {
      tcp.off('error', reject);
      resolve();
    });
  }).catch((err: unknown) => {
    udp.close();
    throw err;
  });
  return { port: bound, close: () => closeBoth(udp, tcp) };
}

function closeBoth(udp: UdpSocket, tcp: Server): void {
  udp.close();
  tcp.close();
}

/** RFC 7766 framing: each message after its 16-bit length; replies in any order, each framed alike. */
function serveTcp(socket: Socket, handle: DnsHandler): void {
  const client = { ip: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
  let buffered = Buffer.alloc(0);
  let pending = 0;
  socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    if (buffered.length > 2 + MAX_MESSAGE + MAX_TCP_PIPELINE * 2) return void socket.destroy();
    while (buffered.length >= 2) {
      const length = buffered.readUInt16BE(0);
      if (buffered.length < 2 + length) break;
      const message = buffered.subarray(2, 2 + length);
      buffered = buffered.subarray(2 + length);
      if (++pending > MAX_TCP_PIPELINE) return void socket.destroy();
      void handle(message, client, 'tcp').then((reply) => {
        pending--;
        if (reply && !socket.destroyed) socket.write(frameTcp(reply));
      });
    }
  });
}

/** A message with its RFC 7766 length prefix. */
export function frameTcp(message: Uint8Array): Buffer {
  const out = Buffer.alloc(2 + message.length);
  out.writeUInt16BE(message.length, 0);
  out.set(message, 2);
  return out;
}

// The SOCKS5 handshake (RFC 1928) as ztunnel serves it on a pod's 127.0.0.1:15080: no authentication,
// CONNECT only, to an IPv4 or IPv6 address or a host name. What follows the request on the socket is
// the application's bytes; they are left unread for the outbound path.

import type { Socket } from 'node:net';

const VERSION = 0x05;
const NO_AUTHENTICATION = 0x00;
const NO_ACCEPTABLE_METHOD = 0xff;
const CONNECT = 0x01;
const ADDRESS = { ipv4: 0x01, name: 0x03, ipv6: 0x04 } as const;

/** RFC 1928 §6 reply codes. */
export const SOCKS5_REPLY = {
  succeeded: 0x00,
  generalFailure: 0x01,
  notAllowed: 0x02,
  hostUnreachable: 0x04,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
} as const;
export type Socks5Reply = (typeof SOCKS5_REPLY)[keyof typeof SOCKS5_REPLY];

/** Where the client asked to go: an address, or a name for the agent to resolve. */
export interface Socks5Request {
  readonly host: string;
  readonly kind: 'ip' | 'name';
  readonly port: number;
}

export type Socks5Handshake = { readonly ok: true; readonly request: Socks5Request } | { readonly ok: false; readonly reason: string };

/** A parse step: more bytes needed, a malformed message (with the reply to send, if any), or a value and its length. */
type Step<T> = { readonly need: true } | { readonly error: string; readonly reply?: Socks5Reply | 'no-method' } | { readonly value: T; readonly length: number };

/** VER NMETHODS METHODS…: whether the client offers "no authentication". */
export function parseGreeting(buf: Buffer): Step<boolean> {
  if (buf.length < 2) return { need: true };
  if (buf[0] !== VERSION) return { error: `not SOCKS5 (version byte ${buf[0]})` };
  const count = buf[1]!;
  if (count === 0) return { error: 'the greeting offers no authentication method' };
  if (buf.length < 2 + count) return { need: true };
  const offered = buf.subarray(2, 2 + count).includes(NO_AUTHENTICATION);
  return offered ? { value: true, length: 2 + count } : { error: 'the client requires authentication; only "no authentication" is served', reply: 'no-method' };
}

/** VER CMD RSV ATYP DST.ADDR DST.PORT. */
export function parseRequest(buf: Buffer): Step<Socks5Request> {
  if (buf.length < 5) return { need: true };
  if (buf[0] !== VERSION) return { error: `not SOCKS5 (version byte ${buf[0]})`, reply: SOCKS5_REPLY.generalFailure };
  if (buf[1] !== CONNECT) return { error: `command ${buf[1]} is not supported (only CONNECT)`, reply: SOCKS5_REPLY.commandNotSupported };
  const type = buf[3];
  let host: string;
  let kind: Socks5Request['kind'] = 'ip';
  let at: number;
  if (type === ADDRESS.ipv4) {
    if (buf.length < 10) return { need: true };
    host = [...buf.subarray(4, 8)].join('.');
    at = 8;
  } else if (type === ADDRESS.ipv6) {
    if (buf.length < 22) return { need: true };
    const groups: string[] = [];
    for (let i = 4; i < 20; i += 2) groups.push(buf.readUInt16BE(i).toString(16));
    host = groups.join(':');
    at = 20;
  } else if (type === ADDRESS.name) {
    const length = buf[4]!;
    if (buf.length < 5 + length + 2) return { need: true };
    if (length === 0) return { error: 'the request names an empty host', reply: SOCKS5_REPLY.hostUnreachable };
    host = buf.subarray(5, 5 + length).toString('latin1').toLowerCase().replace(/\.$/, '');
    kind = 'name';
    at = 5 + length;
  } else {
    return { error: `address type ${type} is not supported`, reply: SOCKS5_REPLY.addressTypeNotSupported };
  }
  const port = buf.readUInt16BE(at);
  if (port === 0) return { error: 'the request asks for port 0', reply: SOCKS5_REPLY.hostUnreachable };
  return { value: { host, kind, port }, length: at + 2 };
}

/**
 * Answers the reply. The bound address is left zero, as ztunnel does: clients of CONNECT ignore it, and
 * the real one would be the agent's, which means nothing to a process inside the pod.
 */
export function sendSocks5Reply(socket: Socket, code: Socks5Reply): void {
  socket.write(Buffer.from([VERSION, code, 0x00, ADDRESS.ipv4, 0, 0, 0, 0, 0, 0]));
}

/**
 * Reads the greeting and the request from a paused socket, answering the method choice (and refusing
 * what is not served, with the code RFC 1928 gives, then closing). On success the socket is paused
 * again, with any bytes the client sent after its request put back; the caller sends the reply.
 */
export function readSocks5Request(socket: Socket, timeoutMs = 10_000): Promise<Socks5Handshake> {
  return new Promise((resolve) => {
    let buf: Buffer = Buffer.alloc(0);
    let greeted = false;
    const timer = setTimeout(() => fail(`no complete SOCKS5 request within ${timeoutMs} ms`), timeoutMs);
    const finish = (result: Socks5Handshake, rest?: Buffer): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
      socket.pause();
      if (rest && rest.length > 0) socket.unshift(rest);
      resolve(result);
    };
    const fail = (reason: string, reply?: Socks5Reply | 'no-method'): void => {
      if (reply === 'no-method') socket.end(Buffer.from([VERSION, NO_ACCEPTABLE_METHOD]));
      else if (reply !== undefined) {
        sendSocks5Reply(socket, reply);
        socket.end();
      } else socket.destroy();
      finish({ ok: false, reason });
    };
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (!greeted) {
        const greeting = parseGreeting(buf);
        if ('need' in greeting) return;
        if ('error' in greeting) return fail(greeting.error, greeting.reply);
        greeted = true;
        socket.write(Buffer.from([VERSION, NO_AUTHENTICATION]));
        buf = buf.subarray(greeting.length);
      }
      const request = parseRequest(buf);
      if ('need' in request) return;
      if ('error' in request) return fail(request.error, request.reply);
      finish({ ok: true, request: request.value }, buf.subarray(request.length));
    };
    const onEnd = (): void => fail('the client closed before its request was complete');
    const onError = (err: Error): void => fail(err.message);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onError);
    socket.resume();
  });
}

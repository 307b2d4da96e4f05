// One side of the bench's Node floor: a bare HBONE-shaped tunnel, HTTP/2 CONNECT over mutual TLS 1.3
// with node:http2 and node:tls, the agents' HTTP/2 and TLS settings (agent/tunnel/h2/settings.ts)
// and nothing else: no identities, policy, telemetry, pooling rules or eBPF. What any Node relay of
// this protocol pays, so the bench can tell Node's cost from Ambit's own.
//
//   tunnel-process.ts server <listen ip> <tls port> <cert dir>
//       accepts mTLS (client certificate from the dir's CA required); CONNECT <host:port> is dialled
//   tunnel-process.ts client <listen ip> <server ip> <tls port> <cert dir> <plain port>=<host:port>...
//       each plain port's connections become CONNECT streams to <host:port> on one shared session
//
// Prints `ready` on stderr once listening. Certificates: ../tunnel-certificates.ts.

import { type ClientHttp2Session, connect, constants, createSecureServer, type ServerHttp2Stream } from 'node:http2';
import { createServer, connect as dial, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Settings } from 'node:http2';
import { DEFAULT_TUNING, HBONE_TLS, type HboneTuning } from '../../../agent/tunnel/hbone/settings.js';
import { readTunnelCertificate, TUNNEL_SERVER_NAME } from '../tunnel-certificates.js';

/** The agents' HBONE tuning as node:http2 takes it (the floor speaks node:http2, the agents the engine). */
function serverSettings(tuning: HboneTuning): Settings {
  return { initialWindowSize: tuning.streamWindowBytes, maxFrameSize: tuning.maxFrameSize, maxConcurrentStreams: tuning.serverMaxConcurrentStreams, maxHeaderListSize: tuning.serverMaxHeaderListSize };
}

function clientSettings(tuning: HboneTuning): Settings {
  return { enablePush: false, initialWindowSize: tuning.streamWindowBytes, maxFrameSize: tuning.maxFrameSize, maxHeaderListSize: tuning.clientMaxHeaderListSize };
}

const [mode, ...args] = process.argv.slice(2);
const tls = { minVersion: HBONE_TLS.minVersion, maxVersion: HBONE_TLS.maxVersion, ciphers: HBONE_TLS.ciphers, ALPNProtocols: [...HBONE_TLS.alpn] };

/** Node's own pipe both ways; either side's end or error ends both. */
function pipeBoth(a: Duplex, b: Duplex): void {
  a.pipe(b);
  b.pipe(a);
  const close = (): void => {
    a.destroy();
    b.destroy();
  };
  for (const s of [a, b]) s.once('error', close).once('close', close);
}

function server(ip: string, port: number, dir: string): void {
  const s = createSecureServer({ ...readTunnelCertificate(dir, 'server'), ...tls, requestCert: true, rejectUnauthorized: true, settings: serverSettings(DEFAULT_TUNING) });
  s.on('secureConnection', (socket: Socket) => socket.setNoDelay(true));
  s.on('session', (session) => session.setLocalWindowSize(DEFAULT_TUNING.connectionWindowBytes));
  s.on('stream', (stream: ServerHttp2Stream, headers) => {
    const [host, p] = String(headers[':authority'] ?? '').split(':');
    if (headers[':method'] !== 'CONNECT' || !host || !p) {
      stream.respond({ ':status': 400 }, { endStream: true });
      return;
    }
    const upstream = dial({ host, port: Number(p), noDelay: true }, () => {
      // The client may have reset the stream while we dialled (a new connection per request ends fast).
      if (stream.destroyed || stream.closed) return void upstream.destroy();
      stream.respond({ ':status': 200 });
      pipeBoth(stream, upstream);
    });
    // A reset before the answer is an 'error' on the stream: unhandled, it would end the process.
    stream.once('error', () => upstream.destroy());
    upstream.once('error', () => stream.close(constants.NGHTTP2_CONNECT_ERROR));
  });
  s.listen(port, ip, () => process.stderr.write('ready\n'));
}

function client(ip: string, serverIp: string, tlsPort: number, dir: string, routes: readonly string[]): void {
  let session: ClientHttp2Session | undefined;
  const current = (): ClientHttp2Session => {
    if (session && !session.closed && !session.destroyed) return session;
    const s = connect(`https://${serverIp}:${tlsPort}`, { ...readTunnelCertificate(dir, 'client'), ...tls, servername: TUNNEL_SERVER_NAME, settings: clientSettings(DEFAULT_TUNING) });
    s.once('connect', (_, socket: Socket) => {
      s.setLocalWindowSize(DEFAULT_TUNING.connectionWindowBytes);
      socket.setNoDelay(true);
    });
    s.on('error', (err) => process.stderr.write(`session: ${err.message}\n`));
    session = s;
    return s;
  };
  let listening = 0;
  for (const route of routes) {
    const [plain, authority] = route.split('=');
    const server = createServer({ noDelay: true }, (socket) => {
      const stream = current().request({ ':method': 'CONNECT', ':authority': authority! });
      stream.once('response', (headers) => (headers[':status'] === 200 ? pipeBoth(socket, stream) : socket.destroy()));
      stream.once('error', () => socket.destroy());
      socket.once('error', () => stream.destroy());
    });
    server.listen(Number(plain), ip, () => ++listening === routes.length && process.stderr.write('ready\n'));
  }
}

if (mode === 'server' && args.length === 3) server(args[0]!, Number(args[1]), args[2]!);
else if (mode === 'client' && args.length >= 5) client(args[0]!, args[1]!, Number(args[2]), args[3]!, args.slice(4));
else {
  process.stderr.write('usage: tunnel-process.ts server <ip> <tls port> <cert dir> | client <ip> <server ip> <tls port> <cert dir> <plain port>=<host:port>...\n');
  process.exit(2);
}

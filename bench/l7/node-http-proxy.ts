// One side of the L7 bench's Node floor: a bare HTTP proxy with node:http and node:https, mutual TLS
// 1.3 between the nodes, keep-alive on both sides, bodies piped, and nothing else: no routing,
// policy, telemetry or HBONE. What any Node HTTP proxy pair pays, so the bench can tell Node's cost
// from Ambit's own (Ambit's L7 path does more: its hop between the nodes is HTTP/1.1 inside HBONE).
//
//   node-http-proxy.ts server <listen ip> <tls port> <upstream host:port> <cert dir>
//       HTTPS in (client certificate from the dir's CA required), plain HTTP to the upstream
//   node-http-proxy.ts client <listen ip> <plain port> <server ip:tls port> <cert dir>
//       plain HTTP in, HTTPS with the client certificate to node-b's side
//
// Prints `ready` on stderr once listening. Certificates: ../capture/tunnel-certificates.ts.

import { Agent as HttpAgent, createServer, type IncomingMessage, request as httpRequest, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent, createServer as createTlsServer, request as httpsRequest } from 'node:https';
import { readTunnelCertificate, TUNNEL_SERVER_NAME } from '../capture/tunnel-certificates.js';

const [mode, ...args] = process.argv.slice(2);
const MAX_SOCKETS = 64;
const TLS_1_3 = { minVersion: 'TLSv1.3' } as const;
const hostPort = (s: string): { host: string; port: number } => {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
};

/** Forwards one request with `send`, streams the answer back; 502 if the upstream fails. */
function forward(req: IncomingMessage, res: ServerResponse, send: typeof httpRequest, options: object): void {
  const upstream = send({ ...options, method: req.method, path: req.url, headers: req.headers }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    answer.pipe(res);
  });
  upstream.once('error', () => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
  req.pipe(upstream);
}

const ready = (): boolean => process.stderr.write('ready\n');

if (mode === 'server' && args.length === 4) {
  const [ip, port, upstream, dir] = args as [string, string, string, string];
  const agent = new HttpAgent({ keepAlive: true, maxSockets: MAX_SOCKETS });
  const options = { ...hostPort(upstream), agent };
  createTlsServer({ ...readTunnelCertificate(dir, 'server'), ...TLS_1_3, requestCert: true, rejectUnauthorized: true, noDelay: true }, (req, res) => forward(req, res, httpRequest, options)).listen(Number(port), ip, ready);
} else if (mode === 'client' && args.length === 4) {
  const [ip, port, server, dir] = args as [string, string, string, string];
  const agent = new HttpsAgent({ keepAlive: true, maxSockets: MAX_SOCKETS, ...readTunnelCertificate(dir, 'client'), ...TLS_1_3, servername: TUNNEL_SERVER_NAME });
  const options = { ...hostPort(server), agent };
  createServer({ noDelay: true }, (req, res) => forward(req, res, httpsRequest, options)).listen(Number(port), ip, ready);
} else {
  process.stderr.write('usage: node-http-proxy.ts server <ip> <tls port> <upstream host:port> <cert dir> | client <ip> <plain port> <server ip:tls port> <cert dir>\n');
  process.exit(2);
}

// The agent's side of the eBPF tests, run by netns-fixture.ts inside the node netns and the agent's
// cgroup: outbound (15001), inbound (15006) and HBONE (15008) listeners that report what the kernel
// told them, and tc/tcx attachment, which acts on the devices of the caller's netns. JSON lines:
// requests on stdin, replies and events on stdout.

import { createServer, type Server, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import {
  BpfObject,
  bpfObjectPath,
  connectTransparent,
  detachTcIngress,
  openAmbitMaps,
  originalDst,
  transparentListen,
  type InboundProgram,
  type Result,
} from '../../../agent/redirect/bpf-binding.js';
import { relay } from '../../../agent/tunnel/relay.js';

const NODE_IP = '10.250.0.1';
const pinDir = process.argv[2];
if (!pinDir) throw new Error('usage: bpf-agent.ts <pin dir>');

const emit = (msg: object): void => void process.stdout.write(`${JSON.stringify(msg)}\n`);
const unwrap = <T>(r: Result<T>): T => {
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
};

const objectPath = unwrap(bpfObjectPath('inbound_tc'));
const inbound = unwrap(BpfObject.load<InboundProgram>(objectPath, pinDir));
const maps = unwrap(openAmbitMaps(pinDir));
const servers: Server[] = [];

const addr = (ip: string | undefined, port: number | undefined): string => `${ip}:${port}`;

/** 15001: a redirected pod connection; answer with what SO_ORIGINAL_DST and the map say. */
function outbound(socket: Socket): void {
  const peer = { ip: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
  const viaSockopt = originalDst(socket);
  const viaMap = maps.origDst.lookup(peer);
  const report = {
    event: 'outbound',
    peer: addr(peer.ip, peer.port),
    sockopt: viaSockopt.ok ? (viaSockopt.value ? addr(viaSockopt.value.ip, viaSockopt.value.port) : null) : viaSockopt.error.message,
    map: viaMap.ok ? (viaMap.value ? addr(viaMap.value.ip, viaMap.value.port) : null) : viaMap.error.message,
  };
  emit(report);
  socket.end(`${JSON.stringify(report)}\n`);
}

/** 15006: tc-steered; the local address is the original destination. Connect on as the client. */
async function inboundPlain(socket: Socket): Promise<void> {
  socket.pause();
  const dst = { ip: socket.localAddress ?? '', port: socket.localPort ?? 0 };
  const client = socket.remoteAddress ?? '';
  const upstream = await connectTransparent(client, dst);
  emit({ event: 'inbound', local: addr(dst.ip, dst.port), peer: addr(client, socket.remotePort), upstream: upstream.ok ? 'connected' : upstream.error.message });
  if (!upstream.ok) return void socket.destroy();
  await relay(socket, upstream.value);
}

/** 15008: stands in for the HBONE server; only proves the steering. */
function hbone(socket: Socket): void {
  const report = { event: 'hbone', local: addr(socket.localAddress, socket.localPort), peer: addr(socket.remoteAddress, socket.remotePort) };
  emit(report);
  socket.end(`${JSON.stringify(report)}\n`);
}

function listen(server: Server, options: { fd: number } | { host: string; port: number }): Promise<void> {
  servers.push(server);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options, () => resolve());
  });
}

async function handle(req: { op: string; [k: string]: unknown }): Promise<unknown> {
  const s = (k: string): string => String(req[k]);
  switch (req.op) {
    case 'hello':
      return { pid: process.pid };
    case 'listen':
      await listen(createServer(outbound), { host: NODE_IP, port: 15001 });
      await listen(createServer((c) => void inboundPlain(c)), { fd: unwrap(transparentListen('0.0.0.0', 15006)) });
      await listen(createServer(hbone), { fd: unwrap(transparentListen('0.0.0.0', 15008)) });
      return true;
    case 'attachTcx':
      return unwrap(inbound.attachTcxIngress(s('program') as InboundProgram, s('ifname'), s('pin')));
    case 'attachTc':
      return unwrap(inbound.attachTcIngress(s('program') as InboundProgram, s('ifname')));
    case 'detachTc':
      return unwrap(detachTcIngress(s('ifname'), req['removeQdisc'] === true));
    default:
      throw new Error(`unknown op ${req.op}`);
  }
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const req = JSON.parse(line) as { id: number; op: string };
  handle(req).then(
    (value) => emit({ id: req.id, ok: true, value }),
    (err: Error) => emit({ id: req.id, ok: false, error: err.message }),
  );
});
process.stdin.on('end', () => {
  for (const server of servers) server.close();
  inbound.close();
  process.exit(0);
});

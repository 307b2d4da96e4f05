// What the splice thread's probes share: the relay's four sockets as the agent holds them, and for the
// netns ones a fresh network namespace per run (its TCP buffers are its own to raise, and no other
// test's traffic crosses it; root), the bytes waiting in a socket, and the probe's last line as JSON.

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';

/** Runs `probe` (a TypeScript file) with `args` in a fresh network namespace under node with `nodeOptions`, and returns its last line parsed. */
export function runProbeInFreshNetns(probe: string, args: readonly string[], nodeOptions: readonly string[] = []): unknown {
  const netns = `ambit-splice-${process.pid}`;
  execFileSync('ip', ['netns', 'add', netns]);
  try {
    execFileSync('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    const out = execFileSync('ip', ['netns', 'exec', netns, process.execPath, ...nodeOptions, '--import', 'tsx', probe, ...args], { encoding: 'utf8', timeout: 60_000 });
    return JSON.parse(out.trim().split('\n').at(-1)!);
  } finally {
    execFileSync('ip', ['netns', 'del', netns]);
  }
}

/**
 * Starts this namespace's TCP buffers at `bytes` so that nothing on the way blocks: a client's send
 * buffer takes a payload of a quarter of that in one write, the relay's downstream socket holds it all
 * unread (the advertised window is a fraction of the buffer), and neither the relay's upstream send
 * buffer nor the server's receive buffer ever makes a splice wait.
 */
export function raiseTcpBuffers(bytes: number): void {
  writeFileSync('/proc/sys/net/ipv4/tcp_rmem', `4096 ${bytes} ${bytes}`);
  writeFileSync('/proc/sys/net/ipv4/tcp_wmem', `4096 ${bytes} ${bytes}`);
}

export interface RelayedPair {
  readonly client: Socket;
  /** The relay's socket towards the client, accepted and never read. */
  readonly downstream: Socket;
  /** The relay's socket towards the server, reading once connected as the agent dials it. */
  readonly upstream: Socket;
  /** Accepted paused: it reads only once resumed. */
  readonly server: Socket;
  /** The downstream socket's local port, to find it with ss. */
  readonly frontPort: number;
}

async function listener(): Promise<Server> {
  const server = createServer({ pauseOnConnect: true, allowHalfOpen: true });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}
const port = (server: Server): number => (server.address() as AddressInfo).port;
const accepted = (server: Server): Promise<Socket> => new Promise((resolve) => server.once('connection', resolve));

/** client → [downstream | relay | upstream] → server on loopback; the listeners stay open until the process ends. */
export async function relayedPair(): Promise<RelayedPair> {
  const front = await listener();
  const back = await listener();
  const client = connect({ port: port(front), host: '127.0.0.1', allowHalfOpen: true });
  const downstream = await accepted(front);
  const serverSide = accepted(back);
  const upstream = connect({ port: port(back), host: '127.0.0.1', allowHalfOpen: true });
  await new Promise((resolve) => upstream.once('connect', resolve));
  return { client, downstream, upstream, server: await serverSide, frontPort: port(front) };
}

/**
 * Bytes waiting unread in the established socket whose local port is `localPort` (ss's Recv-Q), read
 * from this namespace's /proc/net/tcp: cheap enough to poll while the splice thread moves bytes.
 */
export function receiveQueue(localPort: number): number {
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    // sl local_address rem_address st tx_queue:rx_queue ..., in hex; state 01 is ESTABLISHED.
    const [, local, , state, queues] = line.trim().split(/\s+/);
    if (state === '01' && local && queues && parseInt(local.split(':')[1]!, 16) === localPort) return parseInt(queues.split(':')[1]!, 16);
  }
  return 0;
}

/** Writes `payload` from the client and waits (10 s at most) until all of it waits in the relay's downstream socket; returns how much does. */
export async function queueUnread(pair: RelayedPair, payload: Buffer): Promise<number> {
  await new Promise<void>((resolve, reject) => pair.client.write(payload, (err) => (err ? reject(err) : resolve())));
  // Written is not yet delivered: the last segments cross loopback as the downstream socket's window opens.
  let queued = receiveQueue(pair.frontPort);
  for (const deadline = Date.now() + 10_000; queued < payload.length && Date.now() < deadline; queued = receiveQueue(pair.frontPort)) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return queued;
}

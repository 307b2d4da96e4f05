// `ambit console`: opens a node's console (the admin server's /console). A lab node's admin port is on
// loopback inside the node's network namespace, so a port on this host's loopback is forwarded into it;
// for a cluster agent it prints the kubectl port-forward to run.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { type Socket, connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { enterNodeNetns } from '../lab/kubelet.js';
import { LabError, labLayout, readLabState } from '../lab/lab-state.js';
import { DEFAULT_LAB, checkLabName } from '../lab/layout.js';
import { UsageError } from './usage.js';

export const CONSOLE_USAGE = `ambit console --node <name> [--lab <name>] [--port <port>]
       ambit console --kubernetes [--node <name>]
  Opens a node's console (its admin server's /console, loopback only). For a lab node, forwards
  127.0.0.1:<port> on this host (default: a free one) into the node's network namespace and prints
  the URL to open; it runs until interrupted. With --kubernetes, prints the kubectl port-forward
  command for the agent of that node (or any node) and the URL.
`;

const ADMIN_PORT = 15000;

/**
 * Run in the node's network namespace: listens on a Unix socket (a path, so the host side reaches it
 * across namespaces) and relays each connection to the admin port on that namespace's loopback.
 */
const IN_NAMESPACE_RELAY = `const net = require('net');
const [path, port] = process.argv.slice(1);
net.createServer((c) => { const a = net.connect(+port, '127.0.0.1'); c.pipe(a).pipe(c); const end = () => { c.destroy(); a.destroy(); }; a.on('error', end); c.on('error', end); })
  .listen(path, () => console.log('ready'));
process.stdin.on('end', () => process.exit(0)).resume();`;

export async function consoleCommand(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      node: { type: 'string' },
      lab: { type: 'string', default: process.env['AMBIT_LAB'] ?? DEFAULT_LAB },
      port: { type: 'string', default: '0' },
      kubernetes: { type: 'boolean', default: false },
    },
  });
  if (values.kubernetes) {
    const selector = values.node !== undefined ? ` --field-selector spec.nodeName=${values.node}` : '';
    process.stdout.write(
      `Run, then open http://127.0.0.1:${ADMIN_PORT}/console :\n` +
        `  kubectl -n ambit-system port-forward $(kubectl -n ambit-system get pod -l app.kubernetes.io/name=ambit${selector} -o name | head -1) ${ADMIN_PORT}:${ADMIN_PORT}\n`,
    );
    return 0;
  }
  if (values.node === undefined) throw new UsageError('ambit console needs --node <name> (a lab node) or --kubernetes');
  const problem = checkLabName(values.lab);
  if (problem) throw new UsageError(problem);
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port ${values.port}: expected a port number (0 picks a free one)`);

  const state = readLabState(labLayout(values.lab));
  if (!state) throw new LabError(`lab "${values.lab}" is not up; start it with \`ambit lab up <yaml…>\` (or name it with --lab)`);
  const node = state.plan.nodes.find((n) => n.name === values.node);
  if (!node) throw new LabError(`--node ${values.node}: no such node in lab "${values.lab}"; nodes: ${state.plan.nodes.map((n) => n.name).join(', ')}`);

  const dir = mkdtempSync(join(tmpdir(), 'ambit-console-'));
  const socketPath = join(dir, 'admin.sock');
  const enter = enterNodeNetns(node.netns);
  const relay = spawn(enter[0]!, [...enter.slice(1), process.execPath, '-e', IN_NAMESPACE_RELAY, socketPath, String(ADMIN_PORT)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const cleanUp = (): void => {
    relay.stdin?.end();
    relay.kill();
    rmSync(dir, { recursive: true, force: true });
  };
  const ready = await new Promise<boolean>((resolve) => {
    relay.stdout?.once('data', () => resolve(true));
    relay.once('exit', () => resolve(false));
  });
  if (!ready) {
    cleanUp();
    throw new LabError(`could not enter node ${node.name}'s network namespace (${node.netns}) to reach its admin port; is the lab up (ambit lab status) and are you root?`);
  }

  const server = createServer((client: Socket) => {
    const upstream = connect(socketPath);
    client.pipe(upstream).pipe(client);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new UsageError(`cannot listen on 127.0.0.1:${port}: ${err.code ?? err.message}; pick another with --port`)));
    server.listen(port, '127.0.0.1', resolve);
  }).catch((err: unknown) => {
    cleanUp();
    throw err;
  });
  const address = server.address();
  const bound = typeof address === 'object' && address ? address.port : port;
  process.stdout.write(`node ${node.name}'s console (lab ${values.lab}): http://127.0.0.1:${bound}/console\n(forwarding 127.0.0.1:${bound} to its admin port ${ADMIN_PORT}; Ctrl-C stops)\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    relay.once('exit', stop);
  });
  server.close();
  cleanUp();
  return 0;
}

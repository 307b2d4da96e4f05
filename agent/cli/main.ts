#!/usr/bin/env node
// The `ambit` command: dispatches to the node agent (`run`), the local lab (`lab`) and friends.

import { enableCompileCache } from 'node:module';
import { fileURLToPath } from 'node:url';
import { UsageError } from './usage.js';

// V8's compiled code of every module, kept beside the build (dist/.compile-cache) for the next start:
// a restarted agent loads its modules without compiling them again (docs/reliability.md, "Crashes").
// Where the build is read-only (the image, unless its build filled the cache), Node goes without.
if (import.meta.url.endsWith('.js')) enableCompileCache(fileURLToPath(new URL('../../.compile-cache', import.meta.url)));

/** A command's module, loaded only when it runs: `ambit lab exec` need not load the agent. */
interface Command {
  readonly usage: string;
  readonly run: (argv: readonly string[]) => Promise<number>;
}

const COMMANDS: Readonly<Record<string, () => Promise<Command>>> = {
  run: async () => import('./run.js').then((m) => ({ usage: m.RUN_USAGE, run: m.runCommand })),
  gateway: async () => import('./gateway.js').then((m) => ({ usage: m.GATEWAY_USAGE, run: m.gatewayCommand })),
  lab: async () => import('./lab.js').then((m) => ({ usage: m.LAB_USAGE, run: m.labCommand })),
  ca: async () => import('./ca.js').then((m) => ({ usage: m.CA_USAGE, run: m.caCommand })),
  zc: async () => import('./zc.js').then((m) => ({ usage: m.ZC_USAGE, run: m.zcCommand })),
  explain: async () => import('./explain.js').then((m) => ({ usage: m.EXPLAIN_USAGE, run: m.explainCommand })),
  console: async () => import('./console.js').then((m) => ({ usage: m.CONSOLE_USAGE, run: m.consoleCommand })),
  uninstall: async () => import('./uninstall.js').then((m) => ({ usage: m.UNINSTALL_USAGE, run: m.uninstallCommand })),
};
/** istioctl's name for zc. */
const ALIASES: Readonly<Record<string, string>> = { 'ztunnel-config': 'zc' };

const SUMMARY = `Usage: ambit <command> [options]

Commands:
  run     run the node agent (from Kubernetes/Istio YAML files, the Kubernetes API, or istiod's xDS)
  gateway run an east-west gateway: other networks reach this one's Services through it (double HBONE)
  lab     a local mesh on network namespaces: up, down, status, exec, logs
  ca      the mesh's certificate authority (Istio's CA API, node-authorized), run centrally
  zc      what a running agent knows (as istioctl ztunnel-config): workloads, services, policies,
          certificates, connections
  explain why a pod can or cannot reach a destination, step by step, from the agents' own decisions
  console open a node's console in the browser (live traffic graph, flows, denials, explain)
  uninstall  remove every eBPF program, pin and rule Ambit left on this node
  help    show this help, or a command's: ambit help <command>
`;

async function fullUsage(): Promise<string> {
  const commands = await Promise.all(Object.values(COMMANDS).map((load) => load()));
  return [SUMMARY, ...commands.map((c) => c.usage)].join('\n');
}

async function main(argv: readonly string[]): Promise<number> {
  const [given, ...rest] = argv;
  const name = given === undefined ? undefined : (ALIASES[given] ?? given);
  const load = name === undefined ? undefined : COMMANDS[name];
  if (load) {
    const command = await load();
    // `ambit <command> --help`, as users try first; arguments after `--` belong to someone else.
    const own = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
    if (own.includes('--help') || own.includes('-h')) {
      process.stdout.write(command.usage);
      return 0;
    }
    return command.run(rest);
  }
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    const topic = rest[0] === undefined ? undefined : COMMANDS[ALIASES[rest[0]] ?? rest[0]];
    process.stdout.write(topic ? (await topic()).usage : await fullUsage());
    return name === undefined ? 2 : 0;
  }
  throw new UsageError(`unknown command ${JSON.stringify(given)}`);
}

/**
 * A reader that goes away (`ambit lab status | head -3`, a pager quit early) is not an error: the rest
 * of the output is dropped and the command finishes its work (a `lab down` must not stop halfway),
 * with its own exit status. Without a listener, Node throws the EPIPE as an unhandled 'error' event.
 */
function dropOutputOnClosedPipe(stream: NodeJS.WriteStream): void {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') return;
    throw err;
  });
}

dropOutputOnClosedPipe(process.stdout);
dropOutputOnClosedPipe(process.stderr);

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`ambit: ${(err as Error).message}\nRun 'ambit help' for usage.\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`ambit: ${(err as Error).message}\n`);
      process.exitCode = 1;
    }
  },
);

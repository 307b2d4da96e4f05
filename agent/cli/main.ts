#!/usr/bin/env node
// The `ambit` command: dispatches to the node agent (`run`), the local lab (`lab`) and friends.

import { CA_USAGE, caCommand } from './ca.js';
import { CONSOLE_USAGE, consoleCommand } from './console.js';
import { EXPLAIN_USAGE, explainCommand } from './explain.js';
import { labCommand, LAB_USAGE } from './lab.js';
import { runCommand, RUN_USAGE } from './run.js';
import { UsageError } from './usage.js';
import { UNINSTALL_USAGE, uninstallCommand } from './uninstall.js';
import { ZC_USAGE, zcCommand } from './zc.js';

const USAGE = `Usage: ambit <command> [options]

Commands:
  run     run the node agent (from Kubernetes/Istio YAML files, the Kubernetes API, or istiod's xDS)
  lab     a local mesh on network namespaces: up, down, status, exec, logs
  ca      the mesh's certificate authority (Istio's CA API, node-authorized), run centrally
  zc      what a running agent knows (as istioctl ztunnel-config): workloads, services, policies,
          certificates, connections
  explain why a pod can or cannot reach a destination, step by step, from the agents' own decisions
  console open a node's console in the browser (live traffic graph, flows, denials, explain)
  uninstall  remove every eBPF program, pin and rule Ambit left on this node
  help    show this help, or a command's: ambit help <command>

${RUN_USAGE}
${LAB_USAGE}
${CA_USAGE}
${ZC_USAGE}
${EXPLAIN_USAGE}
${CONSOLE_USAGE}
${UNINSTALL_USAGE}`;

const COMMAND_USAGE: Readonly<Record<string, string>> = { run: RUN_USAGE, lab: LAB_USAGE, ca: CA_USAGE, zc: ZC_USAGE, explain: EXPLAIN_USAGE, console: CONSOLE_USAGE, uninstall: UNINSTALL_USAGE };

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  // `ambit <command> --help`, as users try first; arguments after `--` belong to someone else.
  const own = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  if (command && COMMAND_USAGE[command] && (own.includes('--help') || own.includes('-h'))) {
    process.stdout.write(COMMAND_USAGE[command]);
    return 0;
  }
  switch (command) {
    case 'run':
      return runCommand(rest);
    case 'lab':
      return labCommand(rest);
    case 'ca':
      return caCommand(rest);
    case 'uninstall':
      return uninstallCommand(rest);
    case 'zc':
    case 'ztunnel-config':
      return zcCommand(rest);
    case 'explain':
      return explainCommand(rest);
    case 'console':
      return consoleCommand(rest);
    case 'help':
    case '--help':
    case '-h':
    case undefined:
      process.stdout.write(COMMAND_USAGE[rest[0] ?? ''] ?? USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
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

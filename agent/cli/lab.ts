// `ambit lab …`: the command-line face of agent/lab. Building a lab loads much of the agent; `exec`,
// `logs` and the agents' own look-ups load only lab-state.ts, so each command imports what it needs.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { LabClusterInput } from '../lab/clusters.js';
import { DEFAULT_LAB, checkClusterId, checkLabName } from '../lab/layout.js';
import { LabError, type LabSettings, flagFor, labExec, labLayout, labLogFiles, readLabState } from '../lab/lab-state.js';
import { createLogger, isLogLevel } from '../telemetry/log.js';
import { resolve } from 'node:path';
import { UsageError, parseDuration } from './usage.js';

export const LAB_USAGE = `Usage: ambit lab <command> [--lab <name>] ...

A local mesh on network namespaces, from the same YAML a user would kubectl apply: each Node becomes a
network namespace, each Pod a namespace wired to its node, each container's command runs in its pod,
and one \`ambit run\` runs per node. Needs root.

Commands:
  up <yaml file|dir>...          build the lab and wait until every container and agent is ready
  up --cluster <id>=<yaml file|dir>[,…] --cluster …
                                 a lab of several clusters, each on a network of its own (its
                                 istio-system Namespace's topology.istio.io/network label),
                                 joined only through their east-west gateways (a Gateway of
                                 class istio-east-west at its spec.addresses); repeat an ID to
                                 give its cluster more files. Every agent reads its own
                                 cluster's YAML and the others' (--remote-config)
        [--timeout <seconds>]    (default 120) [--trust-domain <d>] [--log-level <level>]
        [--ca-dir <dir>]         a plugged-in CA (Istio's cacerts files) for every agent; by
                                 default the lab makes its own root, removed by \`down\`
        [--cert-ttl <duration>]  workload certificate lifetime (default 24h)
        [--socks5]               SOCKS5 on 127.0.0.1:15080 in every enrolled pod (ambit run --socks5)
        [--data-threads <n>]     the agents' HBONE engine threads (ambit run --data-threads)
        [--source local|kubernetes]  what the agents read: the YAML files (default), or a
                                 kube-apiserver the lab runs, serving the YAML over the real
                                 list/watch API and following its edits (agents run with
                                 --source kubernetes --kubeconfig) and \`ambit ca\` beside it,
                                 from which the agents get their certificates (as in a cluster)
  upgrade node/<name> [--timeout <seconds>]
                                 start a new agent for the node (from the current build) beside
                                 the running one, which it retires once ready; waits until the
                                 old one has drained and exited (default 120 s)
  down [--all]                   remove everything the lab made (idempotent; --all: every lab)
  status                         nodes, pods, containers, readiness and restarts
  exec <namespace>/<pod> -- <command…>   run a command in a pod (as kubectl exec)
  exec node/<name> -- <command…>         run a command in a node's network namespace
  exec gateway/<cluster> -- <command…>   run a command in a cluster's east-west gateway's edge namespace
  logs [<namespace>/<pod> [-c <container>] | node/<name> | gateway/<cluster> | cluster-dns | kube-apiserver | ambit-ca] [-f]
                                 container or agent logs (no target: the supervisor and agents)

--lab <name> (or $AMBIT_LAB) picks one of several labs; the default is "${DEFAULT_LAB}".
`;

/** `up`'s YAML: positional files for a lab of one cluster, or `--cluster <id>=<path>[,<path>]`, repeatable. */
function labClusterInputs(positionals: readonly string[], clusterFlags: readonly string[]): LabClusterInput[] {
  if (clusterFlags.length === 0) {
    if (positionals.length === 0) throw new UsageError('ambit lab up: which YAML? ambit lab up <file|dir>... (or --cluster <id>=<file|dir> for each cluster)');
    return [{ paths: positionals }];
  }
  if (positionals.length > 0) throw new UsageError(`ambit lab up: with --cluster every file belongs to a cluster; give ${positionals.join(' ')} as --cluster <id>=<file|dir>`);
  const byCluster = new Map<string, string[]>();
  for (const flag of clusterFlags) {
    const [id = '', paths = ''] = flag.split(/=(.*)/s);
    const problem = checkClusterId(id);
    if (problem || paths === '') throw new UsageError(`--cluster ${flag}: expected <cluster ID>=<file|dir>[,<file|dir>…]${problem ? ` (${problem})` : ''}`);
    byCluster.set(id, [...(byCluster.get(id) ?? []), ...paths.split(',').filter((p) => p !== '')]);
  }
  return [...byCluster].map(([cluster, paths]) => ({ cluster, paths }));
}

export async function labCommand(argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv;
  // exec passes everything after `--` to the pod untouched.
  const dashdash = rest.indexOf('--');
  const own = dashdash >= 0 ? rest.slice(0, dashdash) : rest;
  const passthrough = dashdash >= 0 ? rest.slice(dashdash + 1) : [];
  const { values, positionals } = parseArgs({
    args: own,
    allowPositionals: true,
    options: {
      lab: { type: 'string', default: process.env['AMBIT_LAB'] ?? DEFAULT_LAB },
      timeout: { type: 'string', default: '120' },
      'trust-domain': { type: 'string', default: 'cluster.local' },
      'cluster-domain': { type: 'string', default: 'cluster.local' },
      'log-level': { type: 'string', default: 'info' },
      'ca-dir': { type: 'string' },
      'cert-ttl': { type: 'string' },
      socks5: { type: 'boolean', default: false },
      'data-threads': { type: 'string' },
      source: { type: 'string', default: 'local' },
      cluster: { type: 'string', multiple: true, default: [] },
      all: { type: 'boolean', default: false },
      container: { type: 'string', short: 'c' },
      follow: { type: 'boolean', short: 'f', default: false },
    },
  });
  const nameProblem = checkLabName(values.lab);
  if (nameProblem) throw new UsageError(nameProblem);
  const out = (line: string): void => void process.stdout.write(`${line}\n`);
  try {
    const layout = labLayout(values.lab);
    switch (sub) {
      case 'up': {
        const inputs = labClusterInputs(positionals, values.cluster);
        const timeout = Number(values.timeout);
        if (!Number.isFinite(timeout) || timeout <= 0) throw new UsageError(`--timeout ${values.timeout}: expected a number of seconds`);
        if (!isLogLevel(values['log-level'])) throw new UsageError(`--log-level ${values['log-level']}: expected trace, debug, info, warn or error`);
        if (values['cert-ttl'] !== undefined) parseDuration('--cert-ttl', values['cert-ttl']);
        const threads = values['data-threads'];
        const dataThreads = threads === undefined ? undefined : Number(threads);
        // Checked here, as `ambit run` checks it: else every agent would fail and up would wait out its timeout.
        if (dataThreads !== undefined && !(Number.isInteger(dataThreads) && dataThreads >= 1 && dataThreads <= 64)) {
          throw new UsageError(`ambit lab up: --data-threads ${threads}: expected a whole number from 1 to 64`);
        }
        const source = values.source;
        if (source !== 'local' && source !== 'kubernetes') throw new UsageError(`--source ${source}: expected local or kubernetes`);
        const settings: LabSettings = {
          trustDomain: values['trust-domain'],
          clusterDomain: values['cluster-domain'],
          logLevel: values['log-level'],
          ...(values['ca-dir'] !== undefined ? { caDir: resolve(values['ca-dir']) } : {}),
          ...(values['cert-ttl'] !== undefined ? { certTtl: values['cert-ttl'] } : {}),
          ...(values.socks5 ? { socks5: true } : {}),
          ...(dataThreads !== undefined ? { dataThreads } : {}),
          source,
        };
        const { labUp } = await import('../lab/lab.js');
        const state = await labUp(layout, inputs, settings, timeout * 1000, out);
        const clusters = state.plan.clusters.length > 1 ? `${state.plan.clusters.length} clusters on their own networks, ` : '';
        out(`lab "${layout.name}" is up: ${clusters}${state.plan.nodes.length} nodes, ${state.plan.pods.length} pods, every container and agent ready`);
        out(`  ambit lab status${flagFor(layout)}    ambit lab exec${flagFor(layout)} <namespace>/<pod> -- <cmd>    ambit lab down${flagFor(layout)}`);
        return 0;
      }
      case 'down': {
        const { labDown, listLabs } = await import('../lab/lab.js');
        if (values.all) {
          for (const name of await listLabs()) await labDown(labLayout(name), out);
        } else {
          await labDown(layout, out);
        }
        return 0;
      }
      case 'status': {
        const { labStatus } = await import('../lab/lab.js');
        labStatus(layout, out);
        return 0;
      }
      case 'upgrade': {
        const node = /^node\/(.+)$/.exec(positionals[0] ?? '')?.[1];
        if (!node) throw new UsageError('usage: ambit lab upgrade node/<name>');
        const timeout = Number(values.timeout);
        if (!Number.isFinite(timeout) || timeout <= 0) throw new UsageError(`--timeout ${values.timeout}: expected a number of seconds`);
        const supervisor = readLabState(layout)?.supervisorPid;
        if (supervisor === undefined) throw new LabError(`lab "${layout.name}" is not up; start it with \`ambit lab up\``);
        const { upgradeLabAgent } = await import('../lab/upgrade.js');
        const upgraded = await upgradeLabAgent(layout, supervisor, node, timeout * 1000);
        if (!upgraded.ok) throw new LabError(upgraded.message);
        out(`node/${node}: agent pid ${upgraded.newPid} took over from pid ${upgraded.oldPid} in ${upgraded.ms} ms`);
        return 0;
      }
      case 'exec': {
        const target = positionals[0];
        if (!target || dashdash < 0) throw new UsageError('usage: ambit lab exec <namespace>/<pod> -- <command…>');
        return await labExec(layout, target, passthrough);
      }
      case 'logs': {
        const files = labLogFiles(layout, positionals[0], values.container);
        if (values.follow) {
          return await new Promise((resolve) => {
            spawn('tail', ['-n', '+1', '-F', ...files], { stdio: 'inherit' }).once('exit', (code) => resolve(code ?? 0));
          });
        }
        for (const file of files) {
          if (files.length > 1) out(`==> ${file} <==`);
          try {
            process.stdout.write(readFileSync(file, 'utf8'));
          } catch {
            out('(no output yet)');
          }
        }
        return 0;
      }
      case 'supervise': {
        // Internal: started by `lab up`, not by users.
        const state = readLabState(layout);
        if (!state) throw new LabError(`lab "${layout.name}" has no state file; start labs with \`ambit lab up\``);
        const { superviseLab } = await import('../lab/supervisor.js');
        await superviseLab(layout, state.plan, state.settings);
        return 0;
      }
      case 'kube-apiserver': {
        // Internal: run by the supervisor in the fabric namespace of a `lab up --source kubernetes`.
        const state = readLabState(layout);
        if (!state) throw new LabError(`lab "${layout.name}" has no state file; start labs with \`ambit lab up\``);
        const { serveLabApiServer } = await import('../lab/control-plane.js');
        await serveLabApiServer(layout, state.plan.configPaths, state.plan.nodes, createLogger('info', { lab: layout.name, component: 'kube-apiserver' }));
        return 0;
      }
      case 'cluster-dns': {
        // Internal: run by the supervisor in a cluster's fabric namespace (--cluster <id> in a lab of several), as its kube-dns.
        const state = readLabState(layout);
        if (!state) throw new LabError(`lab "${layout.name}" has no state file; start labs with \`ambit lab up\``);
        const id = values.cluster[0];
        const cluster = state.plan.clusters.find((c) => c.id === id);
        if (!cluster) throw new LabError(`lab "${layout.name}" has no cluster ${id ?? '(unnamed)'}`);
        const { serveClusterDns } = await import('../lab/cluster-dns.js');
        await serveClusterDns(cluster.configPaths, state.settings, createLogger('info', { lab: layout.name, component: 'cluster-dns', ...(id === undefined ? {} : { cluster: id }) }));
        return 0;
      }
      default:
        throw new UsageError(`unknown lab command ${JSON.stringify(sub ?? '')}\n${LAB_USAGE}`);
    }
  } catch (err) {
    if (err instanceof LabError) {
      process.stderr.write(`ambit lab: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

// What every `ambit lab` command but up and down needs: the lab's state on disk, its errors, and exec and
// logs into its pods and nodes. Kept apart from lab.ts (building and removing a lab, which loads the config
// parser, the CA and the network code) so that `lab exec`, which tests and users run by the hundred, and
// the commands that reach lab agents through it (zc, explain, console) start in a fraction of the time.

import { existsSync, readFileSync } from 'node:fs';
import { runAttached } from '../system/commands.js';
import { cgroup2Root } from '../system/cgroups.js';
import { enterNodeNetns, enterPodNetns, inCgroupAndNetns } from './kubelet.js';
import { clusterDnsId, clusterDnsLog } from './cluster-dns.js';
import { API_SERVER_ID, CA_ID, DEFAULT_LAB, LabLayout } from './layout.js';
import type { LabEastWestPlan } from './clusters.js';
import type { LabPlan } from './plan.js';
import type { LabSource } from './supervisor.js';

export interface LabSettings {
  readonly trustDomain: string;
  readonly clusterDomain: string;
  readonly logLevel: string;
  /** The CA every agent of the lab signs with (Istio's cacerts layout); `up` makes one when not given. */
  readonly caDir?: string;
  /** Workload certificate lifetime passed to the agents (`--cert-ttl`), e.g. "30s" to watch rotation. */
  readonly certTtl?: string;
  /** The agents read the YAML (`local`, the default) or the lab's API server serving it (`kubernetes`). */
  readonly source?: LabSource;
  /** The agents open SOCKS5 on 127.0.0.1:15080 in every enrolled pod (`ambit run --socks5`). */
  readonly socks5?: boolean;
  /** The agents' HBONE engine threads (`ambit run --data-threads`), for benches comparing thread counts. */
  readonly dataThreads?: number;
}

/** What `lab up` leaves on disk for every later command. */
export interface LabState {
  readonly name: string;
  readonly createdAt: string;
  readonly settings: LabSettings;
  readonly plan: LabPlan;
  readonly supervisorPid?: number;
  /** The lab mounted bpffs for its agents (it was not mounted), so `down` unmounts it again. */
  readonly mountedBpffs?: boolean;
}

/** An error the user can act on; the CLI prints its message alone and exits 1. */
export class LabError extends Error {}

export function labLayout(name: string): LabLayout {
  return new LabLayout(name, cgroup2Root());
}

export function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new LabError('ambit lab needs root (it creates network namespaces and cgroups): run it with sudo');
}

export function readLabState(layout: LabLayout): LabState | undefined {
  if (!existsSync(layout.stateFile)) return undefined;
  return JSON.parse(readFileSync(layout.stateFile, 'utf8')) as LabState;
}


export function requireState(layout: LabLayout): LabState {
  const state = readLabState(layout);
  if (!state) throw new LabError(`lab "${layout.name}" is not up; start it with \`ambit lab up${flagFor(layout)} <yaml…>\``);
  return state;
}

export function flagFor(layout: LabLayout): string {
  return layout.name === DEFAULT_LAB ? '' : ` --lab ${layout.name}`;
}

export async function labExec(layout: LabLayout, target: string, argv: readonly string[]): Promise<number> {
  requireRoot();
  const state = requireState(layout);
  if (argv.length === 0) throw new LabError('nothing to run: ambit lab exec <namespace>/<pod> -- <command…>');
  if (target.startsWith('node/')) {
    const node = state.plan.nodes.find((n) => `node/${n.name}` === target);
    if (!node) throw new LabError(`no node ${target.slice(5)} in lab "${layout.name}"; nodes: ${state.plan.nodes.map((n) => n.name).join(', ')}`);
    const enter = enterNodeNetns(node.netns);
    return runAttached(enter[0]!, [...enter.slice(1), ...argv]);
  }
  if (target.startsWith(GATEWAY_TARGET)) {
    const enter = enterNodeNetns(eastWestGatewayOf(layout, state, target).netns);
    return runAttached(enter[0]!, [...enter.slice(1), ...argv]);
  }
  const pod = state.plan.pods.find((p) => p.key === target);
  if (!pod) throw new LabError(`no pod ${target} in lab "${layout.name}"; pods: ${state.plan.pods.map((p) => p.key).join(', ')} (or node/<name>, gateway/<cluster>)`);
  const command = inCgroupAndNetns(pod.cgroup, enterPodNetns(pod.netns), argv);
  return runAttached(command[0]!, command.slice(1), { ...process.env, ...pod.containers[0]?.env, TERM: process.env['TERM'] ?? 'dumb' });
}

/** `gateway/<cluster>`: a cluster's east-west gateway, in its edge namespace (agent/lab/clusters.ts). */
const GATEWAY_TARGET = 'gateway/';

function eastWestGatewayOf(layout: LabLayout, state: LabState, target: string): LabEastWestPlan {
  const cluster = target.slice(GATEWAY_TARGET.length);
  const gateway = state.plan.clusters.find((c) => c.id === cluster)?.eastWest;
  if (gateway) return gateway;
  const withOne = state.plan.clusters.filter((c) => c.eastWest).map((c) => c.id);
  throw new LabError(`no east-west gateway of cluster ${cluster} in lab "${layout.name}"; ${withOne.length > 0 ? `clusters with one: ${withOne.join(', ')}` : 'it has none (a lab of several clusters gives each Gateway of class istio-east-west one)'}`);
}

/** The log files for a target: a pod's containers, a node's agent, or (no target) the supervisor's. */
export function labLogFiles(layout: LabLayout, target: string | undefined, container: string | undefined): string[] {
  const state = requireState(layout);
  const apiServer = state.settings.source === 'kubernetes' ? [layout.apiServerLog] : [];
  const ca = state.settings.source === 'kubernetes' ? [layout.caLog] : [];
  if (target === undefined) return [layout.supervisorLog, ...apiServer, ...ca, ...state.plan.clusters.flatMap((c) => (c.eastWest ? [c.eastWest.log] : [])), ...state.plan.nodes.map((n) => n.log)];
  if (target === 'cluster-dns') return state.plan.clusters.map((c) => clusterDnsLog(layout, c.id));
  const dnsOf = state.plan.clusters.find((c) => target === clusterDnsId(c.id));
  if (dnsOf) return [clusterDnsLog(layout, dnsOf.id)];
  if (target === CA_ID || target === 'ambit-ca') {
    if (ca.length === 0) throw new LabError(`lab "${layout.name}" runs no ambit ca (its agents sign with the lab's CA themselves): start it with \`ambit lab up --source kubernetes\``);
    return ca;
  }
  if (target === API_SERVER_ID || target === 'kube-apiserver') {
    if (apiServer.length === 0) throw new LabError(`lab "${layout.name}" has no kube-apiserver: start it with \`ambit lab up --source kubernetes\``);
    return apiServer;
  }
  if (target.startsWith('node/')) {
    const node = state.plan.nodes.find((n) => `node/${n.name}` === target);
    if (!node) throw new LabError(`no node ${target.slice(5)} in lab "${layout.name}"`);
    return [node.log];
  }
  if (target.startsWith(GATEWAY_TARGET)) return [eastWestGatewayOf(layout, state, target).log];
  const pod = state.plan.pods.find((p) => p.key === target);
  if (!pod) throw new LabError(`no pod ${target} in lab "${layout.name}"; pods: ${state.plan.pods.map((p) => p.key).join(', ')}`);
  const containers = container ? pod.containers.filter((c) => c.name === container) : pod.containers;
  if (containers.length === 0) throw new LabError(`pod ${target} has no container ${container}; it has ${pod.containers.map((c) => c.name).join(', ')}`);
  return containers.map((c) => c.log);
}

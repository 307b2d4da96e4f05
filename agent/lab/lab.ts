// `ambit lab`: up, down, status, exec and logs for a local mesh on network namespaces. The state of a
// running lab lives on disk under /run/ambit/lab/<name>, so every command works from any shell and
// `down` works after a crash or a kill -9 of everything the lab started.

import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { mkdir, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { formatDiagnostic } from '../config/diagnostics.js';
import { loadConfig } from '../config/load.js';
import { openCaMaterial } from '../identity/ca-material.js';
import { BPFFS, PIN_PARENT, ensureBpffs } from '../redirect/bpf-binding.js';
import { buildSnapshot } from '../state/build.js';
import { cgroup2Root, createCgroup, removeCgroupTree } from '../system/cgroups.js';
import { requireTool, runAttached, runCommand } from '../system/commands.js';
import { type ProcessStatus, enterNodeNetns, enterPodNetns, inCgroupAndNetns } from './kubelet.js';
import { API_SERVER_ID, CA_ID, DEFAULT_LAB, LAB_API_SERVER, LAB_RUN_DIR, LabLayout, labCgroupParent } from './layout.js';
import { LabNetwork, readHostAddresses } from './network.js';
import { EAST_WEST_HBONE_PORT } from '../state/clusters.js';
import { type LabClusterInput, type LabClusterSource, clusterView, eastWestGatewayId, eastWestGatewayPodYaml } from './clusters.js';
import { type LabPlan, planLab } from './plan.js';
import { LabError, type LabSettings, type LabState, flagFor, labLayout, readLabState, requireRoot, requireState } from './lab-state.js';
import { prepareApiServer } from './control-plane.js';
import { LAB_CLUSTER_DNS, clusterDnsCgroup, clusterDnsId } from './cluster-dns.js';
import { LAB_CA, writeAgentTokens } from './lab-ca.js';
import { type LabSource, ambitCommand } from './supervisor.js';

interface LabStatusFile {
  readonly supervisorPid: number;
  readonly updatedAt: string;
  readonly processes: readonly ProcessStatus[];
}

function readStatus(layout: LabLayout): LabStatusFile | undefined {
  try {
    return JSON.parse(readFileSync(layout.statusFile, 'utf8')) as LabStatusFile;
  } catch {
    return undefined;
  }
}

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function writeState(layout: LabLayout, state: LabState): Promise<void> {
  return writeFile(layout.stateFile, JSON.stringify(state, null, 2));
}

export async function labUp(layout: LabLayout, inputs: readonly LabClusterInput[], settings: LabSettings, timeoutMs: number, out: (line: string) => void): Promise<LabState> {
  requireRoot();
  const existing = readLabState(layout);
  const network = new LabNetwork(layout);
  if (existing) {
    throw new LabError(`lab "${layout.name}" is already up (since ${existing.createdAt}, from ${existing.plan.configPaths.join(', ')}); run \`ambit lab down${flagFor(layout)}\` first`);
  }
  const leftovers = await network.listNetns(await listLabs());
  if (leftovers.length > 0) {
    throw new LabError(`lab "${layout.name}" left namespaces behind (${leftovers.join(', ')}); run \`ambit lab down${flagFor(layout)}\` to remove them first`);
  }

  const sources: LabClusterSource[] = [];
  for (const input of inputs) {
    const configPaths = input.paths.map((p) => resolve(p));
    const config = await loadConfig(configPaths);
    const snapshot = buildSnapshot(config.objects, { version: 1, trustDomain: settings.trustDomain, clusterDomain: settings.clusterDomain });
    const diagnostics = [...config.diagnostics, ...snapshot.diagnostics];
    for (const d of diagnostics) out(formatDiagnostic(d));
    const errors = diagnostics.filter((d) => d.severity === 'error').length;
    const of = input.cluster !== undefined ? ` of cluster ${input.cluster}` : '';
    if (errors > 0) throw new LabError(`the configuration${of} has ${errors} error(s), listed above; fix them and run \`ambit lab up\` again`);
    sources.push({ ...(input.cluster !== undefined ? { cluster: input.cluster } : {}), configPaths, objects: config.objects, snapshot });
  }
  if (sources.length > 1 && settings.source === 'kubernetes') {
    throw new LabError('--source kubernetes runs one API server for one cluster; a lab of several clusters has its agents read each cluster\'s YAML (--source local)');
  }

  const planned = planLab(layout, sources, await readHostAddresses());
  if (!planned.ok) throw new LabError(`cannot build the lab:\n  ${planned.problems.join('\n  ')}`);
  const plan = planned.plan;

  // The state file goes down first, so that `down` knows this lab even if building it fails halfway.
  await mkdir(layout.logDir, { recursive: true });
  const bpffs = ensureBpffs();
  if (!bpffs.ok) throw new LabError(`the lab's agents need bpffs: ${bpffs.error.message}`);
  // One CA for the whole lab, as a cluster has one: agents on different nodes must trust each other.
  const caDir = settings.caDir ?? join(layout.stateDir, 'ca');
  const ca = await openCaMaterial({ stateDir: layout.stateDir, trustDomain: settings.trustDomain, ...(settings.caDir ? { pluggedInDir: settings.caDir } : {}) });
  if (!ca.ok) throw new LabError(`the lab's certificate authority: ${ca.error.message}`);
  const state: LabState = { name: layout.name, createdAt: new Date().toISOString(), settings: { ...settings, caDir }, plan, mountedBpffs: bpffs.value };
  await writeState(layout, state);
  try {
    await network.build(plan);
    // Names and VIPs must work before the first container starts: `ip netns exec` binds the pod's
    // hosts file only if it exists when the container is launched.
    for (const cluster of plan.clusters) await network.applyServices(clusterView(plan, cluster), sources.find((s) => s.cluster === cluster.id)!.snapshot);
    if (settings.source === 'kubernetes') {
      await network.wireApiServer(plan);
      await prepareApiServer(layout);
      await writeAgentTokens(layout, plan.nodes);
      await createCgroup(layout.apiServerCgroup);
      await createCgroup(layout.caCgroup);
    }
    await network.wireClusterDns(plan);
    for (const cluster of plan.clusters) await createCgroup(clusterDnsCgroup(layout, cluster.id));
    for (const { id, eastWest } of plan.clusters) {
      if (id === undefined || eastWest === undefined) continue;
      await mkdir(eastWest.stateDir, { recursive: true });
      await writeFile(eastWest.podFile, eastWestGatewayPodYaml(id, eastWest));
      await createCgroup(eastWest.cgroup);
    }
    await createCgroup(layout.supervisorCgroup);
    for (const node of plan.nodes) await createCgroup(node.cgroup);
    for (const pod of plan.pods) await createCgroup(pod.cgroup);
  } catch (err) {
    await labDown(layout, () => undefined);
    throw new LabError(`building the lab failed and was undone: ${(err as Error).message}`);
  }
  out(`lab "${layout.name}": ${plan.nodes.length} nodes and ${plan.pods.length} pods wired; starting containers and agents`);

  const supervisorPid = startSupervisor(layout);
  await writeState(layout, { ...state, supervisorPid });
  await waitUntilReady(layout, plan, settings, supervisorPid, timeoutMs, out);
  return { ...state, supervisorPid };
}

function startSupervisor(layout: LabLayout): number {
  mkdirSync(dirname(layout.supervisorLog), { recursive: true });
  const log = openSync(layout.supervisorLog, 'a');
  const argv = inCgroupAndNetns(layout.supervisorCgroup, [], [...ambitCommand(), 'lab', 'supervise', '--lab', layout.name]);
  const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', log, log], cwd: '/' });
  closeSync(log);
  child.unref();
  return child.pid!;
}

/**
 * Waits until every agent is ready and every container has started and, where it has a readiness
 * probe, passes it. A container without a probe that keeps exiting has started all the same: `up`
 * returns and names it, as `kubectl get pods` would show CrashLoopBackOff.
 */
async function waitUntilReady(layout: LabLayout, plan: LabPlan, settings: LabSettings, supervisorPid: number, timeoutMs: number, out: (line: string) => void): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  // Each cluster's DNS; with --source kubernetes also the kube-apiserver and `ambit ca`.
  const apiServers = plan.clusters.length + (settings.source === 'kubernetes' ? 2 : 0);
  // With SOCKS5 each pod also has its sandbox process (supervisor.ts), which its containers wait behind.
  const sandboxes = settings.socks5 ? plan.pods.length : 0;
  const gateways = plan.clusters.filter((c) => c.eastWest).length;
  const total = apiServers + gateways + plan.nodes.length + sandboxes + plan.pods.reduce((n, p) => n + p.containers.length, 0);
  for (;;) {
    const status = readStatus(layout);
    const processes = status?.processes ?? [];
    const waiting = processes.filter((p) => !p.started || (p.probed && !p.ready));
    if (processes.length === total && waiting.length === 0) {
      for (const p of processes.filter((p) => p.restarts > 0)) {
        out(`warning: ${p.id} has exited ${p.restarts} time(s) and is being restarted; see \`ambit lab logs${flagFor(layout)} ${p.id.split('/').slice(0, 2).join('/')}\``);
      }
      return;
    }
    if (!alive(supervisorPid)) {
      throw new LabError(`the lab supervisor exited; see ${layout.supervisorLog}. Remove what is left with \`ambit lab down${flagFor(layout)}\``);
    }
    if (Date.now() > deadline) {
      const lines = waiting.map((p) => `  ${p.id}: ${p.started ? 'started' : 'not started'}, ${p.state}, ${p.ready ? 'ready' : 'not ready'}, ${p.restarts} restarts`);
      throw new LabError(
        `not everything became ready within ${timeoutMs / 1000}s:\n${lines.join('\n') || '  (no status yet)'}\n` +
          `Logs: \`ambit lab logs${flagFor(layout)} <namespace>/<pod>\` or under ${layout.logDir}. The lab stays up for inspection; \`ambit lab down${flagFor(layout)}\` removes it.`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Removes everything the lab made. Idempotent, and works from names alone when the state file is gone. */
export async function labDown(layout: LabLayout, out: (line: string) => void): Promise<void> {
  requireRoot();
  const state = readLabState(layout);
  const supervisor = state?.supervisorPid ?? readStatus(layout)?.supervisorPid;
  if (alive(supervisor)) {
    process.kill(supervisor!, 'SIGTERM');
    const deadline = Date.now() + 8_000;
    while (alive(supervisor) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  }
  // Whatever is still running (after a kill -9 of the supervisor, say) dies with its cgroup.
  await removeCgroupTree(layout.cgroupDir);
  // The agents' eBPF pins: removing a link's pin detaches it; the maps go with their last pin.
  const pins = await readdir(PIN_PARENT).catch(() => [] as string[]);
  const labs = await listLabs();
  for (const scope of pins.filter((p) => layout.ownsBpfScope(p, labs))) await rm(join(PIN_PARENT, scope), { recursive: true, force: true });
  await rmdir(PIN_PARENT).catch(() => undefined);
  // A fresh bpffs holds only the kernel's own maps.debug and progs.debug; anything else is someone's.
  const bpffsInUse = (await readdir(BPFFS).catch(() => ['?'])).some((name) => !name.endsWith('.debug'));
  if (state?.mountedBpffs && !bpffsInUse) await runCommand(requireTool('umount', 'mount'), [BPFFS]).catch(() => undefined);
  const network = new LabNetwork(layout);
  const netns = await network.listNetns(labs);
  await network.teardown(labs);
  await rm(layout.stateDir, { recursive: true, force: true });
  // The shared parents are ours too; remove them once no lab uses them.
  await rmdir(dirname(layout.cgroupDir)).catch(() => undefined);
  await rmdir(LAB_RUN_DIR).catch(() => undefined);
  await rmdir(dirname(LAB_RUN_DIR)).catch(() => undefined);
  out(state || netns.length > 0 ? `lab "${layout.name}" is down: removed ${netns.length} network namespaces, its cgroups, processes and state` : `lab "${layout.name}" was not up; nothing to remove`);
}

/** Every lab that has left anything on this machine: state directories and cgroups. */
export async function listLabs(): Promise<string[]> {
  const fromState = await readdir(LAB_RUN_DIR).catch(() => [] as string[]);
  const fromCgroups = await readdir(labCgroupParent(cgroup2Root())).catch(() => [] as string[]);
  return [...new Set([...fromState, ...fromCgroups])].sort();
}


export function labStatus(layout: LabLayout, out: (line: string) => void): void {
  const state = requireState(layout);
  const status = readStatus(layout);
  const byId = new Map(status?.processes.map((p) => [p.id, p]) ?? []);
  const supervisorUp = alive(state.supervisorPid);
  out(`lab "${layout.name}" up since ${state.createdAt}; supervisor ${supervisorUp ? `running (pid ${state.supervisorPid})` : 'NOT running: run `ambit lab down` and up again'}`);
  const kubernetes = state.settings.source === 'kubernetes';
  out(`config: ${state.plan.configPaths.join(' ')}${kubernetes ? `, served to the agents by the lab's kube-apiserver (kubeconfig ${layout.kubeconfig})` : ''}`);
  const rows: string[][] = [['WHAT', 'NODE', 'IP', 'STATE', 'READY', 'RESTARTS']];
  if (kubernetes) {
    const p = byId.get(API_SERVER_ID);
    rows.push([API_SERVER_ID, '-', LAB_API_SERVER.ip, p?.state ?? 'unknown', p?.ready ? 'yes' : 'no', String(p?.restarts ?? 0)]);
    const ca = byId.get(CA_ID);
    rows.push([CA_ID, '-', `${LAB_CA.ip}:${LAB_CA.port}`, ca?.state ?? 'unknown', ca?.ready ? 'yes' : 'no', String(ca?.restarts ?? 0)]);
  }
  for (const cluster of state.plan.clusters) {
    const dns = byId.get(clusterDnsId(cluster.id));
    rows.push([clusterDnsId(cluster.id), '-', LAB_CLUSTER_DNS.ip, dns?.state ?? 'unknown', dns?.ready ? 'yes' : 'no', String(dns?.restarts ?? 0)]);
  }
  for (const { id, eastWest } of state.plan.clusters) {
    if (id === undefined || eastWest === undefined) continue;
    const p = byId.get(eastWestGatewayId(id));
    rows.push([`${eastWestGatewayId(id)} (${eastWest.gateway})`, '-', `${eastWest.address}:${EAST_WEST_HBONE_PORT}`, p?.state ?? 'unknown', p?.ready ? 'yes' : 'no', String(p?.restarts ?? 0)]);
  }
  for (const node of state.plan.nodes) {
    const p = byId.get(`node/${node.name}`);
    rows.push([`node/${node.name} (agent)`, node.name, node.ip, p?.state ?? 'unknown', p?.ready ? 'yes' : 'no', String(p?.restarts ?? 0)]);
  }
  for (const pod of state.plan.pods) {
    for (const c of pod.containers) {
      const p = byId.get(`${pod.key}/${c.name}`);
      rows.push([`${pod.key} [${c.name}]`, pod.node, pod.ip, p?.state ?? 'unknown', p?.ready ? 'yes' : 'no', String(p?.restarts ?? 0)]);
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const row of rows) out(row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd());
  out(`logs: ${layout.logDir}`);
}

/** `exec <namespace>/<pod>` runs in the pod's namespaces and cgroup (as kubectl exec); `node/<name>` in the node's. */



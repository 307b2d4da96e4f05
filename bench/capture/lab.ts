// The bench's own lab, `tbench`: preflight, bring-up with one retry, the always-run teardown, `lab
// exec` into its pods, the agents' pids, and the check that only the mesh pods were captured.

import { type SpawnOptions, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LAB, NODES, type NodeName, PATHS } from './plan.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const AMBIT = join(ROOT, 'dist/agent/cli/main.js');
let meshYaml = join(ROOT, 'bench/capture-mesh.yaml');
/** The lab this process works on: the capture bench's `tbench` unless a bench picks its own first. */
export let lab: string = LAB;

/** Makes every function here work on another lab, brought up from another YAML (before bringUpLab). */
export function useLab(name: string, yaml: string): void {
  lab = name;
  meshYaml = yaml;
}

export interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function run(command: string, args: readonly string[], timeoutMs: number, options: SpawnOptions = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export const ambit = (args: readonly string[], timeoutMs: number): Promise<Run> => run(process.execPath, [AMBIT, ...args], timeoutMs);

/** Runs argv in a lab pod (`<namespace>/<pod>`) or node (`node/<name>`) and returns its stdout, or throws. */
export async function execIn(target: string, argv: readonly string[], timeoutMs: number): Promise<string> {
  const r = await ambit(['lab', 'exec', '--lab', lab, target, '--', ...argv], timeoutMs);
  if (r.code !== 0) throw new Error(`\`${argv.join(' ')}\` in ${target} exited ${r.code ?? 'on timeout'}:\n${r.stderr}${r.stdout.slice(0, 2000)}`);
  return r.stdout;
}

/** The network namespace `ambit lab` made for a node (agent/lab/layout.ts). */
export const nodeNetns = (node: NodeName): string => `ambit-${lab}-n-${node}`;

let labUp = false;

/** Synchronous, so it also runs from a signal handler just before exit. */
export function labDown(): void {
  if (!labUp) return;
  labUp = false;
  process.stderr.write(`removing lab ${lab}\n`);
  spawnSync(process.execPath, [AMBIT, 'lab', 'down', '--lab', lab], { stdio: 'inherit', timeout: 60_000 });
}

export function preflight(): void {
  if (process.getuid?.() !== 0) throw new Error('the capture bench needs root (network namespaces, cgroups, eBPF): run `make bench` as root');
  for (const [tool, pkg] of [['iperf3', 'iperf3'], ['haproxy', 'haproxy'], ['openssl', 'openssl']] as const) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) {
      throw new Error(`${tool} is missing: install it with \`apt-get install -y ${pkg}\` (or run \`make setup\`)`);
    }
  }
  if (!existsSync(AMBIT)) {
    process.stderr.write('dist/ is missing: running `make build`\n');
    if (spawnSync('make', ['build'], { cwd: ROOT, stdio: 'inherit' }).status !== 0) throw new Error('`make build` failed');
  }
}

/** What a failed `lab up` left to look at, before `down` removes it. */
async function labDiagnostics(): Promise<string> {
  const parts = [await ambit(['lab', 'status', '--lab', lab], 15_000)];
  for (const target of ['mesh/server', 'direct/server', 'node/node-b']) parts.push(await ambit(['lab', 'logs', '--lab', lab, target], 15_000));
  return parts.map((r) => (r.stdout + r.stderr).split('\n').slice(-25).join('\n')).join('\n');
}

/** `flags`: more of `ambit lab up`'s, e.g. the agents' `--data-threads`. */
export async function bringUpLab(flags: readonly string[] = []): Promise<void> {
  // One retry keeps a transient lab failure from costing the whole run; the diagnostics of the
  // failed attempt are printed so the cause is not lost.
  for (let attempt = 1; ; attempt++) {
    // A run killed with SIGKILL leaves its lab behind; `down` is idempotent, so clear it first.
    labUp = true;
    labDown();
    labUp = true;
    const up = await ambit(['lab', 'up', '--lab', lab, '--timeout', '60', ...flags, meshYaml], 90_000);
    if (up.code === 0) {
      process.stderr.write(up.stdout);
      return;
    }
    const failure = `lab up failed (attempt ${attempt}):\n${up.stdout}${up.stderr}\n${await labDiagnostics()}`;
    if (attempt === 2) throw new Error(failure);
    process.stderr.write(`${failure}\nretrying once\n`);
  }
}

/**
 * The program a pid runs (its executable's name), or '' once it is gone. Not /proc's comm: Node 24
 * names its main thread, and so the process, "MainThread".
 */
export function programOf(pid: number | undefined): string {
  try {
    return pid ? basename(readlinkSync(`/proc/${pid}/exe`)) : '';
  } catch {
    return '';
  }
}

export function agentPids(): Record<NodeName, number> {
  const status = JSON.parse(readFileSync(`/run/ambit/lab/${lab}/status.json`, 'utf8')) as { processes: { id: string; pid?: number }[] };
  const pids = {} as Record<NodeName, number>;
  for (const node of NODES) {
    const pid = status.processes.find((p) => p.id === `node/${node}`)?.pid;
    // The lab starts agents through sh and nsenter, which exec; anything but node here would make the
    // CPU numbers someone else's.
    const program = programOf(pid);
    if (!pid || program !== 'node') throw new Error(`agent of ${node}: pid ${pid ?? 'missing'} runs "${program}", not the node agent`);
    pids[node] = pid;
  }
  return pids;
}

export interface CaptureCheck {
  /** node-a's outbound records of the mesh client to the mesh server: each must name a dst.hbone_addr. */
  readonly meshRecords: number;
  readonly hboneRecords: number;
  /** node-a's outbound records of the mesh client to the pod outside the mesh: plain relays, no HBONE. */
  readonly plainRecords: number;
  readonly directRecords: number;
}

/**
 * Whether node-a's agent carried the mesh pods' connections over HBONE and saw none of the direct
 * ones (the HAProxy path starts from the direct client too): else the numbers compare nothing.
 */
export async function verifyCapture(): Promise<CaptureCheck> {
  const log = (await ambit(['lab', 'logs', '--lab', lab, 'node/node-a'], 30_000)).stdout;
  const outbound = (host: string): string[] => log.split('\n').filter((l) => l.includes('"src.namespace":"mesh"') && l.includes(`"dst.addr":"${host}:`) && l.includes('"direction":"outbound"'));
  const mesh = outbound(PATHS.ambit.host);
  const plain = outbound(PATHS['ambit-plain'].host);
  const meshRecords = mesh.length;
  const hboneRecords = mesh.filter((l) => /"dst\.hbone_addr":"[^"]+"/.test(l)).length;
  const plainRecords = plain.filter((l) => !l.includes('"dst.hbone_addr"')).length;
  const directRecords = log.match(/"src\.namespace":"direct"/g)?.length ?? 0;
  if (meshRecords === 0 || hboneRecords !== meshRecords || plainRecords === 0 || plainRecords !== plain.length || directRecords > 0) {
    throw new Error(
      `capture is not what the bench assumes: node-a's agent logged ${meshRecords} outbound mesh-to-mesh connections (${hboneRecords} over HBONE), ${plain.length} to the pod outside the mesh (${plainRecords} plain) and ${directRecords} of the direct client`,
    );
  }
  return { meshRecords, hboneRecords, plainRecords, directRecords };
}

// A one-node mesh in network namespaces for the eBPF tests, shaped like the lab: a node netns whose
// InternalIP sits on fab0, pods wired to it by veth pairs (169.254.1.1 gateway), another node as an
// outside client, cgroups for pods and the agent, and processes run as the node's agent (in its cgroup
// and the node netns): `ambit run`, or a fixture driven over stdio. Everything is named ambit-tbpf-<id>-* and removed by teardown(), even half-built.

import { execFile, spawn, type ChildProcessWithoutNullStreams, type SpawnOptionsWithoutStdio } from 'node:child_process';
import { mkdirSync, rmSync, rmdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';
import { cgroup2Root, removeCgroupTree } from '../../../agent/system/cgroups.js';
import { BPFFS, ensureBpffs, pinRoot } from '../../../agent/redirect/bpf-binding.js';

export const NODE_IP = '10.250.0.1';
export const EXT_IP = '10.250.9.2';
export const POD1_IP = '10.250.1.10';
export const POD2_IP = '10.250.1.20';
const POD_GATEWAY = '169.254.1.1';

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command with a hard deadline; never rejects. */
export function run(file: string, args: readonly string[], timeoutMs = 15_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function must(file: string, ...args: string[]): Promise<string> {
  const r = await run(file, args);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** A TCP client in Python (a real, independent client) that prints what it saw as JSON. */
const CLIENT = `
import json, socket, sys
family, ip, port, mark = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET6 if family == '6' else socket.AF_INET)
if mark: s.setsockopt(socket.SOL_SOCKET, 36, mark)  # SO_MARK
s.settimeout(4)
try:
    s.connect((('::ffff:' + ip) if family == '6' else ip, port))
except OSError as e:
    print(json.dumps({'error': type(e).__name__})); sys.exit(0)
peer, local = s.getpeername(), s.getsockname()
data = b''
while True:
    chunk = s.recv(4096)
    if not chunk: break
    data += chunk
s.close()
print(json.dumps({'peer': [peer[0], peer[1]], 'local': [local[0], local[1]], 'data': data.decode()}))
`;

/** Answers every connection with "<name> peer=<ip>:<port>", so tests see whose address arrived. */
// Each connection gets its line, then a graceful close: the write side first, then whatever the client
// sent is read to its end (bounded) before the socket closes. Closing with the client's request unread
// sends a reset, and a reset can overtake the line at a proxy in between (CI failed a curl through the
// agent with 'Empty reply from server' that way).
const SERVER = `
import socket, sys, threading
name, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((ip, port)); s.listen(64)
def serve(c, a):
    try:
        c.sendall(('%s peer=%s:%d\\n' % (name, a[0], a[1])).encode()); c.shutdown(socket.SHUT_WR)
        c.settimeout(2)
        while c.recv(4096): pass
    except OSError:
        pass
    finally:
        c.close()
print('ready', flush=True)
while True:
    c, a = s.accept()
    threading.Thread(target=serve, args=(c, a), daemon=True).start()
`;

export interface ClientResult {
  readonly error?: string;
  readonly peer?: [string, number];
  readonly local?: [string, number];
  readonly data?: string;
}

export class Topology {
  readonly prefix: string;
  readonly node: string;
  readonly ext: string;
  readonly pod1: string;
  readonly pod2: string;
  readonly cgroupDir: string;
  readonly pinDir: string;
  readonly #children: ChildProcessWithoutNullStreams[] = [];
  #mountedBpffs = false;

  constructor(readonly tag: string) {
    const id = `${tag}-${process.pid % 100000}`;
    this.prefix = `ambit-tbpf-${id}`;
    this.node = `${this.prefix}-node`;
    this.ext = `${this.prefix}-ext`;
    this.pod1 = `${this.prefix}-pod1`;
    this.pod2 = `${this.prefix}-pod2`;
    this.cgroupDir = join(cgroup2Root(), this.prefix);
    this.pinDir = pinRoot(`tbpf-${id}`);
  }

  cgroup(name: 'agent' | 'pod1' | 'pod1/ctr' | 'pod2' | 'misc'): string {
    return join(this.cgroupDir, name);
  }

  async build(): Promise<void> {
    if (process.getuid?.() !== 0) throw new Error('the eBPF tests need root (netns, cgroups, bpf)');
    const mounted = ensureBpffs();
    if (!mounted.ok) throw new Error(mounted.error.message);
    this.#mountedBpffs = mounted.value;
    for (const dir of ['agent', 'pod1/ctr', 'pod2', 'misc']) mkdirSync(join(this.cgroupDir, dir), { recursive: true });

    for (const ns of [this.node, this.ext, this.pod1, this.pod2]) {
      await must('ip', 'netns', 'add', ns);
      await must('ip', '-n', ns, 'link', 'set', 'lo', 'up');
    }
    // The other node: a veth straight into this node's fab0; it reaches the pods through the node.
    await must('ip', '-n', this.node, 'link', 'add', 'fab0', 'type', 'veth', 'peer', 'name', 'fab0', 'netns', this.ext);
    await must('ip', '-n', this.node, 'addr', 'add', `${NODE_IP}/32`, 'dev', 'fab0');
    await must('ip', '-n', this.ext, 'addr', 'add', `${EXT_IP}/32`, 'dev', 'fab0');
    await must('ip', '-n', this.node, 'link', 'set', 'fab0', 'up');
    await must('ip', '-n', this.ext, 'link', 'set', 'fab0', 'up');
    await must('ip', '-n', this.node, 'route', 'add', `${EXT_IP}/32`, 'dev', 'fab0');
    await must('ip', '-n', this.ext, 'route', 'add', `${NODE_IP}/32`, 'dev', 'fab0');
    await must('ip', '-n', this.ext, 'route', 'add', '10.250.1.0/24', 'via', NODE_IP, 'dev', 'fab0', 'onlink');

    for (const [ns, hostLink, ip] of [[this.pod1, 'vp1', POD1_IP], [this.pod2, 'vp2', POD2_IP]] as const) {
      await must('ip', '-n', this.node, 'link', 'add', hostLink, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
      await must('ip', '-n', this.node, 'addr', 'add', `${POD_GATEWAY}/32`, 'dev', hostLink);
      await must('ip', '-n', this.node, 'link', 'set', hostLink, 'up');
      await must('ip', '-n', this.node, 'route', 'add', `${ip}/32`, 'dev', hostLink);
      await must('ip', '-n', ns, 'addr', 'add', `${ip}/32`, 'dev', 'eth0');
      await must('ip', '-n', ns, 'link', 'set', 'eth0', 'up');
      await must('ip', '-n', ns, 'route', 'add', POD_GATEWAY, 'dev', 'eth0', 'scope', 'link');
      await must('ip', '-n', ns, 'route', 'add', 'default', 'via', POD_GATEWAY, 'dev', 'eth0');
    }
    await must('ip', 'netns', 'exec', this.node, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
    // tc steering: marked packets are delivered locally even though their destination is a pod IP.
    await must('ip', '-n', this.node, 'rule', 'add', 'fwmark', '0x200/0xf00', 'lookup', '100');
    await must('ip', '-n', this.node, 'route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '100');
  }

  /** Starts a Python server in a namespace and waits until it listens. */
  async startServer(ns: string, name: string, ip: string, port: number): Promise<void> {
    const child = spawn('ip', ['netns', 'exec', ns, '/usr/bin/python3', '-c', SERVER, name, ip, String(port)]);
    this.#children.push(child);
    await firstLine(child, 5_000, `server ${name}`);
  }

  /**
   * Runs the Python client as a process of `cgroup` inside `ns`. It joins the cgroup before
   * `ip netns exec`, which remounts /sys and would hide the cgroup tree.
   */
  async client(ns: string, cgroup: string | undefined, target: { ip: string; port: number; family?: 4 | 6; mark?: number }): Promise<ClientResult> {
    const args = [target.family === 6 ? '6' : '4', target.ip, String(target.port), String(target.mark ?? 0)];
    const exec = ['ip', 'netns', 'exec', ns, '/usr/bin/python3', '-c', CLIENT, ...args];
    const r = cgroup
      ? await run('sh', ['-c', `echo $$ > ${join(cgroup, 'cgroup.procs')} && exec "$@"`, 'sh', ...exec], 10_000)
      : await run(exec[0]!, exec.slice(1), 10_000);
    if (r.code !== 0) throw new Error(`client in ${ns} failed (${r.code}): ${r.stderr.trim()}`);
    return JSON.parse(r.stdout) as ClientResult;
  }

  /**
   * Runs `node --import tsx <script> <args>` where the node's agent runs: in the agent cgroup and the
   * node netns (nsenter keeps /sys, where the cgroups are, visible). teardown() kills it.
   */
  spawnAsAgent(script: string, args: readonly string[], options: SpawnOptionsWithoutStdio = {}): ChildProcessWithoutNullStreams {
    const enter = `echo $$ > '${join(this.cgroup('agent'), 'cgroup.procs')}' && exec nsenter --net=/run/netns/${this.node} "$@"`;
    const child = spawn('sh', ['-c', enter, 'sh', process.execPath, '--import', 'tsx', script, ...args], options);
    this.#children.push(child);
    return child;
  }

  /** `ambit run` as node n1's agent, capturing with eBPF (the topology's cgroups, pins and uplink fab0). */
  runAgent(configDir: string, stateDir: string, flags: readonly string[] = [], options: SpawnOptionsWithoutStdio = {}): ChildProcessWithoutNullStreams {
    const main = new URL('../../../agent/cli/main.ts', import.meta.url).pathname;
    const capture = ['--pod-cgroup', join(this.cgroupDir, '{name}'), '--bpf-scope', basename(this.pinDir), '--uplink', 'fab0'];
    return this.spawnAsAgent(main, ['run', '--node', 'n1', '--config', configDir, ...capture, '--state-dir', stateDir, ...flags], options);
  }

  /** Starts the agent fixture (bpf-agent.ts) as the node's agent. */
  async startAgent(): Promise<AgentDriver> {
    const driver = new AgentDriver(this.spawnAsAgent(new URL('./bpf-agent.ts', import.meta.url).pathname, [this.pinDir]));
    await driver.request({ op: 'hello' }, 20_000);
    return driver;
  }

  /** Removes everything the topology made; safe to call on a partial build and more than once. */
  async teardown(): Promise<void> {
    for (const child of this.#children) child.kill('SIGKILL');
    for (const ns of [this.pod1, this.pod2, this.ext, this.node]) {
      const pids = await run('ip', ['netns', 'pids', ns]);
      for (const pid of pids.stdout.split('\n').filter(Boolean)) await run('kill', ['-9', pid]);
      await run('ip', ['netns', 'delete', ns]);
    }
    await removeCgroupTree(this.cgroupDir);
    rmSync(this.pinDir, { recursive: true, force: true });
    // Remove /sys/fs/bpf/ambit too if this run created it and left it empty.
    await run('rmdir', [join(BPFFS, 'ambit')]);
    if (this.#mountedBpffs) await run('umount', [BPFFS]);
  }

  /** Deletes and recreates a cgroup directory, as a restarted pod would get. */
  recreateCgroup(name: 'misc'): void {
    // rmdir, as the kernel wants for a cgroup: Node 24's recursive rm unlinks the interface files first (EPERM).
    rmdirSync(this.cgroup(name));
    mkdirSync(this.cgroup(name));
  }
}

function firstLine(child: ChildProcessWithoutNullStreams, timeoutMs: number, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => reject(new Error(`${what} did not start in ${timeoutMs} ms: ${stderr}`)), timeoutMs);
    createInterface({ input: child.stdout }).once('line', (line) => {
      clearTimeout(timer);
      resolve(line);
    });
    child.once('exit', (code) => reject(new Error(`${what} exited (${code}): ${stderr}`)));
  });
}

export type AgentRequest =
  | { op: 'hello' }
  | { op: 'listen' }
  | { op: 'attachTcx'; program: string; ifname: string; pin: string }
  | { op: 'attachTc'; program: string; ifname: string }
  | { op: 'detachTc'; ifname: string; removeQdisc: boolean };

export interface AgentEvent {
  readonly event: string;
  readonly [key: string]: unknown;
}

/** Sends JSON-line requests to the agent fixture; keeps the events it reports. */
export class AgentDriver {
  readonly events: AgentEvent[] = [];
  readonly #pending = new Map<number, (reply: { ok: boolean; value?: unknown; error?: string }) => void>();
  #next = 1;
  #stderr = '';

  constructor(private readonly child: ChildProcessWithoutNullStreams) {
    child.stderr.on('data', (d: Buffer) => (this.#stderr += d.toString()));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const msg = JSON.parse(line) as { id?: number; ok: boolean; value?: unknown; error?: string } & Partial<AgentEvent>;
      if (msg.id !== undefined) this.#pending.get(msg.id)?.(msg);
      else if (msg.event) this.events.push(msg as AgentEvent);
    });
  }

  request(req: AgentRequest, timeoutMs = 10_000): Promise<unknown> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`agent fixture: no answer to ${req.op} in ${timeoutMs} ms; stderr: ${this.#stderr}`)), timeoutMs);
      this.#pending.set(id, (reply) => {
        clearTimeout(timer);
        this.#pending.delete(id);
        if (reply.ok) resolve(reply.value);
        else reject(new Error(`agent fixture ${req.op}: ${reply.error}`));
      });
      this.child.stdin.write(`${JSON.stringify({ id, ...req })}\n`);
    });
  }
}

// The tc programs' decisions, one crafted packet at a time, with BPF_PROG_RUN on the real kernel:
// every branch of bpf/inbound_tc.bpf.c returns the verdict it should and bumps exactly its own
// per-reason counter (read back with readCounters, as `ambit_redirect_decisions_total` is).
//
// What BPF_PROG_RUN can and cannot reach here (measured on Linux 6.18):
// - Only tc programs run. The cgroup programs of bpf/outbound_cgroup.bpf.c (cgroup sock_addr,
//   sockops, cgroup sockopt) have no test_run in the kernel: the call fails with ENOTSUPP (524),
//   asserted below; test/integration/bpf-outbound.test.ts covers them on real sockets.
// - The skb is built in the caller's netns, so bpf_skc_lookup_tcp works: a SYN finds the listener and
//   a mid-stream packet finds its established socket. The runs therefore happen in a worker inside a
//   netns of its own (test/fixtures/bpf/prog-run-worker.ts), where only the test's sockets exist.
// - bpf_sk_assign always fails in BPF_PROG_RUN (the test skb is not at tc ingress), so a found socket
//   ends in the fail-closed branch: TC_ACT_SHOT with tc-drop-assign-failed. That proves the lookup
//   matched, and covers the fail-closed path traffic cannot reach. The assigned outcomes themselves
//   (tc-assigned-listener, tc-assigned-established) are covered by test/integration/bpf-inbound.test.ts.
// - The kernel refuses (EINVAL) frames shorter than an Ethernet header, and IPv4 frames shorter than
//   a whole IPv4 header (IPv6: a whole IPv6 header), before the program runs. So the program's first
//   two bounds checks cannot be exercised here; the TCP header's can, and that refusal is asserted.
//
// Needs root. Pins live under /sys/fs/bpf/ambit/tprogrun-<pid> (test/cleanup.sh removes strays) and
// are removed after the run, as is bpffs if this test mounted it and nothing else uses it.

import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import {
  BPFFS,
  ensureBpffs,
  openAmbitMaps,
  PIN_PARENT,
  pinRoot,
  readCounters,
  REASONS,
  setEnrolled,
  TC_ACT,
  writeConfig,
  type AmbitMaps,
  type Counters,
  type InboundProgram,
  type Reason,
  type Result,
} from '../../agent/redirect/bpf-binding.js';
import { ETH_P_ARP, ETH_P_IPV6, IP_MF, IPPROTO, ipv4Frame, OFFSETS, otherFrame, TCP_FLAGS, truncated, type Ipv4Packet } from '../fixtures/bpf/packets.js';

const NODE_IP = '10.250.200.1';
const POD_IP = '10.250.201.20';
const OTHER_POD_IP = '10.250.201.30';
const CLIENT_IP = '10.250.209.2';
const PORTS = { outbound: 15001, inbound: 15006, hbone: 15008 } as const;
const PROGRAMS: readonly InboundProgram[] = ['ambit_tc_uplink', 'ambit_tc_pod'];

type WireRun = { ok: true; retval: number; packet: string; durationNs: number; mark?: number } | { ok: false; code: string; message: string };

/** Talks JSON lines to the worker in its private netns. */
class Worker {
  readonly #pending = new Map<number, (reply: { ok: boolean; value?: unknown; error?: string }) => void>();
  #next = 1;
  #stderr = '';

  constructor(readonly child: ChildProcessWithoutNullStreams) {
    child.stderr.on('data', (d: Buffer) => (this.#stderr += d.toString()));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const msg = JSON.parse(line) as { id: number; ok: boolean; value?: unknown; error?: string };
      this.#pending.get(msg.id)?.(msg);
    });
    child.once('exit', (code) => {
      for (const reply of this.#pending.values()) reply({ ok: false, error: `worker exited (${code}): ${this.#stderr}` });
    });
  }

  request<T>(req: { op: string; [k: string]: unknown }, timeoutMs = 20_000): Promise<T> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker: no answer to ${req.op} in ${timeoutMs} ms; stderr: ${this.#stderr}`)), timeoutMs);
      this.#pending.set(id, (reply) => {
        clearTimeout(timer);
        this.#pending.delete(id);
        if (reply.ok) resolve(reply.value as T);
        else reject(new Error(`worker ${req.op}: ${reply.error}`));
      });
      this.child.stdin.write(`${JSON.stringify({ id, ...req })}\n`);
    });
  }
}

const pinDir = pinRoot(`tprogrun-${process.pid}`);
let mountedBpffs = false;
let worker: Worker | undefined;
let maps: AmbitMaps | undefined;

function ok<T>(r: Result<T>): T {
  if (!r.ok) assert.fail(r.error.message);
  return r.value;
}

const counters = (): Counters => ok(readCounters(maps!));

/** The counters that moved since `start`, as { reason: delta }. */
function moved(start: Counters): Partial<Record<Reason, number>> {
  const now = counters();
  const out: Partial<Record<Reason, number>> = {};
  for (const reason of REASONS) if (now[reason] !== start[reason]) out[reason] = now[reason] - start[reason];
  return out;
}

async function run(program: InboundProgram, packet: Buffer, extra: { mark?: number; repeat?: number } = {}): Promise<WireRun> {
  return worker!.request<WireRun>({ op: 'run', program, packet: packet.toString('base64'), ...extra });
}

/** Runs one packet and checks both the verdict and that exactly `reason` was counted, once. */
async function expectDecision(program: InboundProgram, packet: Buffer, verdict: number, reason: Reason, what: string): Promise<void> {
  const start = counters();
  const result = await run(program, packet);
  if (!result.ok) assert.fail(`${program}, ${what}: ${result.message}`);
  assert.equal(result.retval, verdict, `${program}, ${what}: verdict`);
  assert.deepEqual(moved(start), { [reason]: 1 }, `${program}, ${what}: counters`);
}

const tcp = (p: Partial<Ipv4Packet> = {}): Buffer => ipv4Frame({ src: CLIENT_IP, dst: POD_IP, sport: 40000, dport: 8080, flags: TCP_FLAGS.syn, ...p });

/** What a bpffs holds before anyone pins anything: the kernel's bpf_preload iterators. */
const BPFFS_PRELOADED = new Set(['maps.debug', 'progs.debug']);

async function teardown(): Promise<void> {
  maps?.config.close();
  maps?.origDst.close();
  maps?.enrolled.close();
  maps?.stats.close();
  if (worker) {
    const exited = new Promise<void>((resolve) => {
      if (worker!.child.exitCode !== null || worker!.child.signalCode !== null) resolve();
      else worker!.child.once('exit', () => resolve());
    });
    worker.child.stdin.end();
    const timer = setTimeout(() => worker!.child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
  rmSync(pinDir, { recursive: true, force: true });
  try {
    readdirSync(PIN_PARENT).length === 0 && execFileSync('rmdir', [PIN_PARENT]);
  } catch {
    // gone already, or another agent's pins live there
  }
  // Unmount bpffs only if this test mounted it and nobody else has pinned anything since.
  if (mountedBpffs) {
    try {
      if (readdirSync(BPFFS).every((entry) => BPFFS_PRELOADED.has(entry))) execFileSync('umount', [BPFFS]);
    } catch {
      // in use: leave it
    }
  }
}

before(async () => {
  if (process.getuid?.() !== 0) throw new Error('BPF_PROG_RUN tests need root (bpf, netns)');
  mountedBpffs = ok(ensureBpffs());
  // The worker loads the object (so the pins exist) inside a new netns with only loopback, up.
  const script = new URL('../fixtures/bpf/prog-run-worker.ts', import.meta.url).pathname;
  const child = spawn('unshare', ['--net', 'sh', '-c', 'ip link set lo up && exec "$0" --import tsx "$1" "$2"', process.execPath, script, pinDir]);
  worker = new Worker(child);
  await worker.request({ op: 'hello' });
  maps = ok(openAmbitMaps(pinDir));
  ok(writeConfig(maps, { proxyIp: NODE_IP, outboundPort: PORTS.outbound, inboundPort: PORTS.inbound, hbonePort: PORTS.hbone }));
  ok(setEnrolled(maps, POD_IP, true));
});

after(teardown);

describe('BPF_PROG_RUN itself', () => {
  test('returns the verdict, the packet unchanged, a duration, and the skb mark the program left', async () => {
    const packet = tcp({ flags: TCP_FLAGS.ack });
    const start = counters();
    const result = await run('ambit_tc_uplink', packet, { mark: 0x1003, repeat: 50 });
    if (!result.ok) assert.fail(result.message);
    assert.equal(result.retval, TC_ACT.unspec);
    assert.deepEqual(Buffer.from(result.packet, 'base64'), packet, 'the program does not rewrite packets');
    assert.ok(result.durationNs > 0 && result.durationNs < 1_000_000, `a run takes nanoseconds to microseconds, not ${result.durationNs} ns`);
    assert.equal(result.mark, 0x1003, 'a packet the program passes keeps its mark');
    assert.deepEqual(moved(start), { 'tc-pass-no-socket': 50 }, 'repeat runs the program that many times');
  });

  test('frames cut inside the Ethernet or IPv4 header are refused by the kernel, with a hint, and count nothing', async () => {
    for (const bytes of [13, OFFSETS.ip, OFFSETS.tcp - 1]) {
      const start = counters();
      const result = await run('ambit_tc_uplink', truncated(tcp(), bytes));
      assert.equal(result.ok, false, `a ${bytes}-byte IPv4 frame ran: the kernel now accepts it, so assert tc-pass-malformed for it`);
      if (result.ok) return;
      assert.equal(result.code, 'EINVAL');
      assert.match(result.message, /Ethernet header \(14 bytes\), then the whole IP header/);
      assert.deepEqual(moved(start), {});
    }
  });

  test('cgroup programs have no BPF_PROG_RUN in the kernel: ENOTSUPP, with what to do instead', async () => {
    for (const program of ['ambit_connect4', 'ambit_sockops', 'ambit_getsockopt', 'ambit_getpeername4']) {
      const result = await worker!.request<WireRun>({ op: 'runOutbound', program, packet: tcp().toString('base64') });
      assert.equal(result.ok, false, `${program} unexpectedly ran: the kernel may support it now; test it here`);
      if (result.ok) return;
      assert.equal(result.code, 'ENOTSUPP', `${program}: ${result.message}`);
      assert.match(result.message, /no BPF_PROG_RUN for this program type/);
    }
  });
});

describe('tc programs: packets they leave alone', () => {
  for (const program of PROGRAMS) {
    test(`${program}: non-IPv4, non-TCP and short headers pass with their reason`, async () => {
      await expectDecision(program, otherFrame(ETH_P_ARP, 28), TC_ACT.unspec, 'tc-pass-not-ipv4', 'ARP');
      await expectDecision(program, otherFrame(ETH_P_IPV6, 60), TC_ACT.unspec, 'tc-pass-not-ipv4', 'IPv6');
      await expectDecision(program, tcp({ protocol: IPPROTO.udp }), TC_ACT.unspec, 'tc-pass-not-tcp', 'UDP to an enrolled pod');
      await expectDecision(program, tcp({ protocol: IPPROTO.icmp }), TC_ACT.unspec, 'tc-pass-not-tcp', 'ICMP to an enrolled pod');
      await expectDecision(program, tcp({ fragOff: 0x4000 }), TC_ACT.shot, 'tc-drop-no-listener', "DF is not a fragment: the SYN is judged");
      await expectDecision(program, truncated(tcp(), OFFSETS.tcp), TC_ACT.unspec, 'tc-pass-malformed', 'IPv4 header, no TCP header');
      await expectDecision(program, truncated(tcp(), OFFSETS.tcp + 4), TC_ACT.unspec, 'tc-pass-malformed', 'TCP ports only');
      await expectDecision(program, truncated(tcp(), OFFSETS.tcpEnd - 1), TC_ACT.unspec, 'tc-pass-malformed', 'TCP header one byte short');
    });

    test(`${program}: a SYN with IP options is judged like any other; fragments for an enrolled pod are dropped`, async () => {
      // Any process can set IP_OPTIONS on its socket: options must not carry a SYN past the agent.
      const nops = Buffer.from([1, 1, 1, 0]); // NOP, NOP, NOP, end of options
      const recordRoute = Buffer.from([7, 39, 4, ...new Array<number>(36).fill(0), 0]); // the longest: 40 bytes
      await expectDecision(program, tcp({ ipOptions: nops }), TC_ACT.shot, 'tc-drop-no-listener', 'SYN with 4 bytes of options');
      await expectDecision(program, tcp({ ipOptions: recordRoute }), TC_ACT.shot, 'tc-drop-no-listener', 'SYN with 40 bytes of options');
      await expectDecision(program, tcp({ ipOptions: nops, dst: OTHER_POD_IP }), TC_ACT.unspec, 'tc-pass-not-enrolled', 'options to a pod outside the mesh');
      await expectDecision(program, truncated(tcp({ ipOptions: recordRoute }), OFFSETS.tcpEnd + recordRoute.length - 1), TC_ACT.unspec, 'tc-pass-malformed', 'options, then a TCP header cut short');
      // The stack reassembles after tc: a fragment's ports cannot be judged, so none reaches an enrolled pod.
      await expectDecision(program, tcp({ fragOff: IP_MF }), TC_ACT.shot, 'tc-drop-fragment', 'first fragment (MF)');
      await expectDecision(program, tcp({ fragOff: 3 }), TC_ACT.shot, 'tc-drop-fragment', 'later fragment (offset)');
      await expectDecision(program, tcp({ fragOff: IP_MF, dst: OTHER_POD_IP }), TC_ACT.unspec, 'tc-pass-malformed', 'a fragment for a pod outside the mesh');
    });

    test(`${program}: traffic to the node, to pods outside the mesh, and mid-stream packets pass`, async () => {
      await expectDecision(program, tcp({ dst: NODE_IP, dport: PORTS.outbound }), TC_ACT.unspec, 'tc-pass-to-node', "to the node's proxy IP");
      await expectDecision(program, tcp({ dst: OTHER_POD_IP }), TC_ACT.unspec, 'tc-pass-not-enrolled', 'SYN to a pod outside the mesh');
      await expectDecision(program, tcp({ flags: TCP_FLAGS.ack }), TC_ACT.unspec, 'tc-pass-no-socket', 'ACK of a connection older than enrollment');
      await expectDecision(program, tcp({ flags: TCP_FLAGS.syn | TCP_FLAGS.ack }), TC_ACT.unspec, 'tc-pass-no-socket', 'SYN-ACK');
      await expectDecision(program, tcp({ flags: TCP_FLAGS.psh | TCP_FLAGS.ack, payload: Buffer.from('GET / HTTP/1.1\r\n') }), TC_ACT.unspec, 'tc-pass-no-socket', 'data');
    });
  }

  test('unenrolling a pod makes its SYNs pass, enrolling it again makes them judged', async () => {
    ok(setEnrolled(maps!, POD_IP, false));
    try {
      await expectDecision('ambit_tc_uplink', tcp(), TC_ACT.unspec, 'tc-pass-not-enrolled', 'SYN after unenrolling');
    } finally {
      ok(setEnrolled(maps!, POD_IP, true));
    }
    await expectDecision('ambit_tc_uplink', tcp(), TC_ACT.shot, 'tc-drop-no-listener', 'SYN after enrolling again');
  });
});

describe('tc programs: SYNs to enrolled pods and the listeners they look for', () => {
  for (const program of PROGRAMS) {
    test(`${program}: with no agent listening, SYNs to an enrolled pod are dropped (fail closed)`, async () => {
      await expectDecision(program, tcp(), TC_ACT.shot, 'tc-drop-no-listener', 'SYN to 8080');
      await expectDecision(program, tcp({ dport: PORTS.hbone }), TC_ACT.shot, 'tc-drop-no-listener', 'SYN to 15008');
    });
  }

  test('a SYN finds the listener of its port class; assign is refused in BPF_PROG_RUN, so it fails closed', async () => {
    await worker!.request({ op: 'listen', port: PORTS.hbone });
    try {
      for (const program of PROGRAMS) {
        // Only 15008 listens: HBONE SYNs find it, plaintext SYNs look for 15006 and do not.
        await expectDecision(program, tcp({ dport: PORTS.hbone }), TC_ACT.shot, 'tc-drop-assign-failed', 'SYN to 15008, HBONE listener up');
        await expectDecision(program, tcp({ dport: 8080 }), TC_ACT.shot, 'tc-drop-no-listener', 'SYN to 8080, only HBONE listens');
      }
      await worker!.request({ op: 'listen', port: PORTS.inbound });
      for (const program of PROGRAMS) {
        await expectDecision(program, tcp({ dport: 8080 }), TC_ACT.shot, 'tc-drop-assign-failed', 'SYN to 8080, inbound listener up');
        // A listener is never a mid-stream packet's socket: established() skips LISTEN.
        await expectDecision(program, tcp({ dport: PORTS.inbound, flags: TCP_FLAGS.ack }), TC_ACT.unspec, 'tc-pass-no-socket', 'ACK to the listener port');
      }
      const start = counters();
      const result = await run('ambit_tc_uplink', tcp(), { mark: 0x1003 });
      assert.ok(result.ok && result.retval === TC_ACT.shot && result.mark === 0x1003, 'a failed assign leaves the mark alone: no steer mark on a dropped packet');
      assert.deepEqual(moved(start), { 'tc-drop-assign-failed': 1 });
    } finally {
      await worker!.request({ op: 'close', port: PORTS.inbound });
      await worker!.request({ op: 'close', port: PORTS.hbone });
    }
    await expectDecision('ambit_tc_uplink', tcp(), TC_ACT.shot, 'tc-drop-no-listener', 'SYN after the listeners closed');
  });

  test('the inbound port comes from ambit_config: a listener on the configured port is found', async () => {
    const custom = 15106;
    ok(writeConfig(maps!, { proxyIp: NODE_IP, outboundPort: PORTS.outbound, inboundPort: custom, hbonePort: PORTS.hbone }));
    await worker!.request({ op: 'listen', port: custom });
    try {
      await expectDecision('ambit_tc_uplink', tcp(), TC_ACT.shot, 'tc-drop-assign-failed', `SYN with the inbound listener on ${custom}`);
    } finally {
      await worker!.request({ op: 'close', port: custom });
      ok(writeConfig(maps!, { proxyIp: NODE_IP, outboundPort: PORTS.outbound, inboundPort: PORTS.inbound, hbonePort: PORTS.hbone }));
    }
  });
});

describe('tc programs: packets of connections the agent already holds', () => {
  test('ambit_tc_pod looks up replies to agent sockets for any destination; ambit_tc_uplink only for enrolled pods', async () => {
    // 127.0.0.1 is not enrolled: only the pod program's `replies` lookup can find the socket.
    const { serverPort, clientPort } = await worker!.request<{ serverPort: number; clientPort: number }>({ op: 'loopbackConnection' });
    const segment = tcp({ src: '127.0.0.1', dst: '127.0.0.1', sport: clientPort, dport: serverPort, flags: TCP_FLAGS.ack });
    await expectDecision('ambit_tc_pod', segment, TC_ACT.shot, 'tc-drop-assign-failed', 'segment of an established connection (found, assign refused)');
    await expectDecision('ambit_tc_uplink', segment, TC_ACT.unspec, 'tc-pass-not-enrolled', 'the same segment on the uplink');
    const stranger = tcp({ src: '127.0.0.1', dst: '127.0.0.1', sport: clientPort + 1, dport: serverPort, flags: TCP_FLAGS.ack });
    await expectDecision('ambit_tc_pod', stranger, TC_ACT.unspec, 'tc-pass-not-enrolled', 'a segment of no connection');
  });
});

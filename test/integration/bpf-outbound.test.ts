// Outbound capture on the real kernel: pod connect() lands on the agent's 15001 listener, the agent
// reads the original destination by SO_ORIGINAL_DST and from the pinned map, other cgroups and
// SO_MARK 0x539 sockets are left alone, counters move, attach is idempotent and detach leaves nothing.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  BpfObject,
  bpfObjectPath,
  detachLink,
  openAmbitMaps,
  POD_CGROUP_PROGRAMS,
  readCounters,
  writeConfig,
  type AmbitMaps,
  type Counters,
  type OutboundProgram,
  type Result,
} from '../../agent/redirect/bpf-binding.js';
import { EXT_IP, NODE_IP, POD1_IP, POD2_IP, run, Topology, type AgentDriver } from './helpers/netns-fixture.js';

const topo = new Topology('out');
let outbound: BpfObject<OutboundProgram>;
let maps: AmbitMaps;
let agent: AgentDriver;
const linkIds: number[] = [];
const pins: string[] = [];

function ok<T>(r: Result<T>): T {
  if (!r.ok) assert.fail(r.error.message);
  return r.value;
}

const counters = (): Counters => ok(readCounters(maps));
const delta = (before: Counters, reason: keyof Counters): number => counters()[reason] - before[reason];
const pin = (name: string): string => join(topo.pinDir, name);

async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  await topo.build();
  outbound = ok(BpfObject.load<OutboundProgram>(ok(bpfObjectPath('outbound_cgroup')), topo.pinDir));
  maps = ok(openAmbitMaps(topo.pinDir));
  ok(writeConfig(maps, { proxyIp: NODE_IP, outboundPort: 15001, inboundPort: 15006, hbonePort: 15008 }));
  for (const program of POD_CGROUP_PROGRAMS) {
    const p = pin(`link_pod1_${program}`);
    linkIds.push(ok(outbound.attachCgroup(program, topo.cgroup('pod1'), p)).linkId);
    pins.push(p);
  }
  const p = pin('link_agent_ambit_getsockopt');
  linkIds.push(ok(outbound.attachCgroup('ambit_getsockopt', topo.cgroup('agent'), p)).linkId);
  pins.push(p);
  await topo.startServer(topo.ext, 'ext', EXT_IP, 8080);
  agent = await topo.startAgent();
  await agent.request({ op: 'listen' });
});

after(async () => {
  outbound?.close();
  await topo.teardown();
});

interface AgentReport {
  readonly peer: string;
  readonly sockopt: string | null;
  readonly map: string | null;
}

test('a pod connecting to any IPv4 address lands on the agent, which learns the original destination', async () => {
  const start = counters();
  const r = await topo.client(topo.pod1, topo.cgroup('pod1'), { ip: '10.250.8.8', port: 80 });
  assert.equal(r.error, undefined, 'connect() from the enrolled pod failed');
  const report = JSON.parse(r.data ?? '') as AgentReport;
  assert.equal(report.peer, `${POD1_IP}:${r.local?.[1]}`, 'the agent sees the pod IP and port as the peer');
  assert.equal(report.sockopt, '10.250.8.8:80', 'SO_ORIGINAL_DST (cgroup/getsockopt) answers the original destination');
  assert.equal(report.map, '10.250.8.8:80', 'the pinned map holds it under (pod IP, pod port)');
  assert.deepEqual(r.peer, ['10.250.8.8', 80], 'getpeername() in the pod shows the original destination');
  assert.equal(delta(start, 'out-redirected'), 1);
  assert.equal(delta(start, 'sockops-pair-stored'), 1);
  assert.ok(delta(start, 'sockopt-orig-dst') >= 1);
  assert.ok(delta(start, 'peer-restored') >= 1);
  // The pod's socket closes after the agent's FIN; STATE_CB then deletes the entry.
  const key = { ip: POD1_IP, port: r.local?.[1] ?? 0 };
  await eventually('the pair entry to be deleted on close', () => ok(maps.origDst.lookup(key)) === undefined);
  assert.ok(delta(start, 'sockops-pair-deleted') >= 1);
});

test('a v4-mapped AF_INET6 socket and a child cgroup of the pod are redirected too', async () => {
  const v6 = await topo.client(topo.pod1, topo.cgroup('pod1'), { ip: '10.250.8.9', port: 443, family: 6 });
  assert.equal((JSON.parse(v6.data ?? '') as AgentReport).sockopt, '10.250.8.9:443');
  assert.deepEqual(v6.peer, ['::ffff:10.250.8.9', 443], 'getpeername6 restores the mapped address');
  const child = await topo.client(topo.pod1, topo.cgroup('pod1/ctr'), { ip: EXT_IP, port: 8080 });
  assert.equal((JSON.parse(child.data ?? '') as AgentReport).sockopt, `${EXT_IP}:8080`, 'a container cgroup below the pod is caught');
});

test('other cgroups, SO_MARK 0x539 and loopback are not redirected', async () => {
  const start = counters();
  const misc = await topo.client(topo.pod1, topo.cgroup('misc'), { ip: EXT_IP, port: 8080 });
  assert.match(misc.data ?? '', new RegExp(`^ext peer=${POD1_IP}:`), 'a process in another cgroup reaches the real server');
  const marked = await topo.client(topo.pod1, topo.cgroup('pod1'), { ip: EXT_IP, port: 8080, mark: 0x539 });
  assert.match(marked.data ?? '', new RegExp(`^ext peer=${POD1_IP}:`), 'a socket marked 0x539 reaches the real server');
  const loopback = await topo.client(topo.pod1, topo.cgroup('pod1'), { ip: '127.0.0.1', port: 9 });
  assert.equal(loopback.error, 'ConnectionRefusedError', '127/8 stays inside the pod');
  const proxy = await topo.client(topo.pod1, topo.cgroup('pod1'), { ip: NODE_IP, port: 9 });
  assert.equal(proxy.error, 'ConnectionRefusedError', 'the node address itself is not redirected');
  assert.equal(delta(start, 'out-redirected'), 0);
  assert.equal(delta(start, 'out-pass-marked'), 1);
  assert.equal(delta(start, 'out-pass-loopback'), 1);
  assert.equal(delta(start, 'out-pass-proxy'), 1);
  assert.ok(delta(start, 'sockops-not-redirected') >= 1, 'the marked connection was established without an entry');
});

/**
 * Opens `count` connections from a process of `cgroup` in `ns`, reads the agent's report on each, prints
 * them as one JSON line, and keeps every connection open until its stdin closes (at most 30 s).
 */
const HOLDER = `
import json, socket, sys
ip, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held, reports = [], []
for _ in range(count):
    s = socket.create_connection((ip, port), timeout=4)
    data = b''
    while True:
        chunk = s.recv(4096)
        if not chunk: break
        data += chunk
    held.append(s)
    reports.append(json.loads(data.decode()))
print(json.dumps(reports), flush=True)
import select
select.select([sys.stdin], [], [], 30)
`;

async function holdConnections(ns: string, cgroup: string, count: number): Promise<{ reports: AgentReport[]; release(): Promise<void> }> {
  const child = spawn('sh', ['-c', `echo $$ > ${join(cgroup, 'cgroup.procs')} && exec "$@"`, 'sh', 'ip', 'netns', 'exec', ns, '/usr/bin/python3', '-c', HOLDER, '10.250.8.8', '80', String(count)]);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the holding client printed nothing in 10 s')), 10_000);
    createInterface({ input: child.stdout }).once('line', (l) => {
      clearTimeout(timer);
      resolve(l);
    });
    child.once('exit', (code) => reject(new Error(`the holding client exited (${code})`)));
  });
  return {
    reports: JSON.parse(line) as AgentReport[],
    release: async () => {
      child.stdin.end();
      await exited;
    },
  };
}

test("a pod at its cap of open connections gets no more records; another pod's are untouched, and closing frees the slots", async () => {
  const config = { proxyIp: NODE_IP, outboundPort: 15001, inboundPort: 15006, hbonePort: 15008 };
  ok(writeConfig(maps, { ...config, podPairsMax: 3 }));
  for (const program of POD_CGROUP_PROGRAMS) {
    const p = pin(`link_pod2_${program}`);
    linkIds.push(ok(outbound.attachCgroup(program, topo.cgroup('pod2'), p)).linkId);
    pins.push(p);
  }
  try {
    const start = counters();
    const pod1 = await holdConnections(topo.pod1, topo.cgroup('pod1'), 4);
    try {
      assert.deepEqual(
        pod1.reports.map((r) => r.sockopt),
        ['10.250.8.8:80', '10.250.8.8:80', '10.250.8.8:80', null],
        'the fourth open connection of pod1 has no record: the agent cannot route it and refuses it',
      );
      assert.equal(delta(start, 'sockops-pod-quota'), 1);
      const pod2 = await topo.client(topo.pod2, topo.cgroup('pod2'), { ip: '10.250.8.8', port: 80 });
      assert.equal((JSON.parse(pod2.data ?? '') as AgentReport).sockopt, '10.250.8.8:80', 'pod2 still gets its record while pod1 is at its cap');
      assert.equal(ok(maps.podPairs.lookup(POD1_IP)), 3, 'pod1 is counted at its cap');
    } finally {
      await pod1.release();
    }
    await eventually("pod1's slots to be freed when its connections close", () => ok(maps.podPairs.lookup(POD1_IP)) === 0);
    const again = await topo.client(topo.pod1, topo.cgroup('pod1'), { ip: '10.250.8.8', port: 80 });
    assert.equal((JSON.parse(again.data ?? '') as AgentReport).sockopt, '10.250.8.8:80', 'once closed, pod1 connects again');
  } finally {
    ok(writeConfig(maps, config));
  }
});

test('attach is idempotent, survives a reload, and re-attaches when the cgroup is recreated', async () => {
  const again = ok(outbound.attachCgroup('ambit_connect4', topo.cgroup('pod1'), pins[0]!));
  assert.deepEqual(again, { outcome: 'unchanged', linkId: linkIds[0] });
  // A restarted agent loads a new copy of the same programs over the same pinned maps.
  const reloaded = ok(BpfObject.load<OutboundProgram>(outbound.path, topo.pinDir));
  try {
    assert.equal(ok(reloaded.attachCgroup('ambit_connect4', topo.cgroup('pod1'), pins[0]!)).outcome, 'unchanged');
    const miscPin = pin('link_misc_ambit_connect4');
    assert.equal(ok(reloaded.attachCgroup('ambit_connect4', topo.cgroup('misc'), miscPin)).outcome, 'attached');
    // The pod restarts: same cgroup path, new cgroup; the old link is defunct and must not count.
    topo.recreateCgroup('misc');
    const fresh = ok(reloaded.attachCgroup('ambit_connect4', topo.cgroup('misc'), miscPin));
    assert.equal(fresh.outcome, 'reattached');
    linkIds.push(fresh.linkId);
    pins.push(miscPin);
    const tree = await run('bpftool', ['cgroup', 'show', topo.cgroup('misc')]);
    assert.match(tree.stdout, /connect4/, 'the recreated cgroup has the program');
    assert.equal(ok(reloaded.attachCgroup('ambit_connect4', topo.cgroup('misc'), miscPin)).outcome, 'unchanged');
  } finally {
    reloaded.close();
  }
});

test('failures are values with errno and a hint', () => {
  const missing = outbound.attachCgroup('ambit_connect4', join(topo.cgroupDir, 'no-such-pod'), pin('x'));
  assert.equal(missing.ok, false);
  assert.equal(!missing.ok && missing.error.code, 'ENOENT');
  assert.match(!missing.ok ? missing.error.message : '', /no-such-pod: No such file or directory \(ENOENT\): the cgroup does not exist/);
  const noObject = BpfObject.load('/nonexistent/x.bpf.o', topo.pinDir);
  assert.match(!noObject.ok ? noObject.error.message : '', /ENOENT.*make bpf/);
});

test('detach removes every link: no pins, no programs on the cgroups, no link ids left', async () => {
  for (const p of pins) assert.equal(ok(detachLink(p)), true, `pin ${p} was there`);
  for (const p of pins) assert.equal(existsSync(p), false);
  assert.equal(ok(detachLink(pins[0]!)), false, 'detaching twice is a no-op');
  for (const cg of ['pod1', 'agent', 'misc'] as const) {
    const shown = await run('bpftool', ['cgroup', 'show', topo.cgroup(cg)]);
    const rows = shown.stdout.split('\n').filter((l) => l.trim() && !l.startsWith('ID'));
    assert.deepEqual(rows, [], `${cg} has no programs left`);
  }
  await eventually('links to be released', async () => {
    for (const id of linkIds) if ((await run('bpftool', ['link', 'show', 'id', String(id)])).code === 0) return false;
    return true;
  });
  // Detached means not captured: the enrolled pod now reaches the real server.
  const r = await topo.client(topo.pod1, topo.cgroup('pod1'), { ip: EXT_IP, port: 8080 });
  assert.match(r.data ?? '', /^ext peer=/);
});

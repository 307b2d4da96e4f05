// Inbound capture on the real kernel: tc ingress (tcx links, then classic clsact) steers TCP for an
// enrolled pod into the agent's transparent 15006 and 15008 listeners, the agent connects on with
// the client's source IP, non-enrolled pods are untouched, a missing listener fails closed, counters
// move, attach is idempotent and upgradable in place, and detach leaves no link, pin or qdisc.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  BpfObject,
  bpfObjectPath,
  detachLink,
  openAmbitMaps,
  readCounters,
  setEnrolled,
  writeConfig,
  type AmbitMaps,
  type Counters,
  type InboundProgram,
  type Result,
} from '../../agent/redirect/bpf-binding.js';
import { EXT_IP, NODE_IP, POD1_IP, POD2_IP, run, Topology, type AgentDriver } from './helpers/netns-fixture.js';

const topo = new Topology('in');
let inbound: BpfObject<InboundProgram>;
let maps: AmbitMaps;
let agent: AgentDriver;

/** Where each program goes: the uplink, and the host side of every pod's veth. */
const ATTACHMENTS: readonly { ifname: string; program: InboundProgram }[] = [
  { ifname: 'fab0', program: 'ambit_tc_uplink' },
  { ifname: 'vp1', program: 'ambit_tc_pod' },
  { ifname: 'vp2', program: 'ambit_tc_pod' },
];

function ok<T>(r: Result<T>): T {
  if (!r.ok) assert.fail(r.error.message);
  return r.value;
}

const counters = (): Counters => ok(readCounters(maps));
const delta = (before: Counters, reason: keyof Counters): number => counters()[reason] - before[reason];
const tcxPin = (ifname: string): string => join(topo.pinDir, `link_tcx_${ifname}`);

async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  await topo.build();
  inbound = ok(BpfObject.load<InboundProgram>(ok(bpfObjectPath('inbound_tc')), topo.pinDir));
  maps = ok(openAmbitMaps(topo.pinDir));
  ok(writeConfig(maps, { proxyIp: NODE_IP, outboundPort: 15001, inboundPort: 15006, hbonePort: 15008 }));
  ok(setEnrolled(maps, POD2_IP, true));
  await topo.startServer(topo.pod2, 'pod2', POD2_IP, 8080);
  agent = await topo.startAgent();
});

after(async () => {
  inbound?.close();
  await topo.teardown();
});

/** The traffic every attach mode must steer, and what must pass untouched. */
async function provesSteering(): Promise<void> {
  const start = counters();
  const seen = agent.events.length;

  const fromExt = await topo.client(topo.ext, undefined, { ip: POD2_IP, port: 8080 });
  assert.match(fromExt.data ?? '', new RegExp(`^pod2 peer=${EXT_IP}:`), 'the pod sees the remote client address, through the agent');
  const hbone = await topo.client(topo.ext, undefined, { ip: POD2_IP, port: 15008 });
  assert.match(hbone.data ?? '', new RegExp(`"local":"${POD2_IP}:15008","peer":"${EXT_IP}:`), 'port 15008 goes to the HBONE listener');
  const fromPod = await topo.client(topo.pod1, topo.cgroup('misc'), { ip: POD2_IP, port: 8080 });
  assert.match(fromPod.data ?? '', new RegExp(`^pod2 peer=${POD1_IP}:`), 'a pod on the same node is steered at its own veth');
  const notEnrolled = await topo.client(topo.ext, undefined, { ip: POD1_IP, port: 8080 });
  assert.equal(notEnrolled.error, 'ConnectionRefusedError', 'pod1 is not enrolled: its own kernel answers');

  await eventually('the agent to report both inbound connections', () => agent.events.slice(seen).filter((e) => e.event === 'inbound').length === 2);
  const reports = agent.events.slice(seen).filter((e) => e.event === 'inbound');
  assert.deepEqual(
    reports.map((e) => [e['local'], String(e['peer']).split(':')[0], e['upstream']]),
    [
      [`${POD2_IP}:8080`, EXT_IP, 'connected'],
      [`${POD2_IP}:8080`, POD1_IP, 'connected'],
    ],
    'the accepted socket carries the original destination as its local address',
  );
  assert.equal(delta(start, 'tc-assigned-listener'), 3);
  assert.ok(delta(start, 'tc-assigned-established') > 10, 'every later packet, replies to the agent included, is assigned');
  assert.ok(delta(start, 'tc-pass-not-enrolled') >= 1);
  assert.equal(delta(start, 'tc-drop-assign-failed'), 0);
}

test('tcx: no listener fails closed, then inbound TCP for an enrolled pod goes through the agent', async () => {
  for (const { ifname, program } of ATTACHMENTS) {
    const attached = await agent.request({ op: 'attachTcx', program, ifname, pin: tcxPin(ifname) });
    assert.equal((attached as { outcome: string }).outcome, 'attached', `tcx on ${ifname} (needs Linux ≥ 6.6)`);
  }
  const start = counters();
  const refused = await topo.client(topo.ext, undefined, { ip: POD2_IP, port: 8080 });
  assert.equal(refused.error, 'TimeoutError', 'without the agent listening, SYNs to an enrolled pod are dropped');
  assert.ok(delta(start, 'tc-drop-no-listener') >= 1);

  await agent.request({ op: 'listen' });
  await provesSteering();
});

test('tcx: attach again is a no-op, another program is swapped in place, detach removes links', async () => {
  const again = (await agent.request({ op: 'attachTcx', program: 'ambit_tc_uplink', ifname: 'fab0', pin: tcxPin('fab0') })) as { outcome: string; linkId: number };
  assert.equal(again.outcome, 'unchanged');
  const swapped = (await agent.request({ op: 'attachTcx', program: 'ambit_tc_pod', ifname: 'fab0', pin: tcxPin('fab0') })) as { outcome: string; linkId: number };
  assert.deepEqual(swapped, { outcome: 'updated', linkId: again.linkId }, 'bpf_link_update keeps the link');
  const back = (await agent.request({ op: 'attachTcx', program: 'ambit_tc_uplink', ifname: 'fab0', pin: tcxPin('fab0') })) as { outcome: string };
  assert.equal(back.outcome, 'updated');

  const linkIds: number[] = [];
  for (const { ifname } of ATTACHMENTS) {
    const shown = await run('bpftool', ['link', 'show', 'pinned', tcxPin(ifname), '--json']);
    linkIds.push((JSON.parse(shown.stdout) as { id: number }).id);
    assert.equal(ok(detachLink(tcxPin(ifname))), true);
  }
  await eventually('tcx links to be released', async () => {
    for (const id of linkIds) if ((await run('bpftool', ['link', 'show', 'id', String(id)])).code === 0) return false;
    return true;
  });
  const start = counters();
  const direct = await topo.client(topo.ext, undefined, { ip: POD2_IP, port: 8080 });
  assert.match(direct.data ?? '', /^pod2 peer=/, 'with nothing attached the pod answers directly');
  assert.equal(delta(start, 'tc-assigned-listener'), 0);
});

test('classic tc: steering works, attach is idempotent and upgradable, detach removes the qdisc', async () => {
  for (const { ifname, program } of ATTACHMENTS) {
    const attached = (await agent.request({ op: 'attachTc', program, ifname })) as { outcome: string };
    assert.equal(attached.outcome, 'attached', `clsact filter on ${ifname}`);
  }
  assert.equal(((await agent.request({ op: 'attachTc', program: 'ambit_tc_pod', ifname: 'vp2' })) as { outcome: string }).outcome, 'unchanged');
  assert.equal(((await agent.request({ op: 'attachTc', program: 'ambit_tc_pod', ifname: 'fab0' })) as { outcome: string }).outcome, 'updated');
  assert.equal(((await agent.request({ op: 'attachTc', program: 'ambit_tc_uplink', ifname: 'fab0' })) as { outcome: string }).outcome, 'updated');
  await provesSteering();

  for (const { ifname } of ATTACHMENTS) {
    assert.equal(await agent.request({ op: 'detachTc', ifname, removeQdisc: true }), true, `filter on ${ifname} was there`);
    const qdiscs = await run('ip', ['-n', topo.node, 'qdisc', 'show', 'dev', ifname]);
    assert.doesNotMatch(qdiscs.stdout, /clsact/, `no clsact qdisc left on ${ifname}`);
  }
  assert.equal(await agent.request({ op: 'detachTc', ifname: 'vp2', removeQdisc: true }), false, 'detaching twice is a no-op');
});

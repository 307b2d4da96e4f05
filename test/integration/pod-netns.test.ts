// Finding a pod's network namespace from its cgroup (agent/system/netns.ts) and opening a listener
// inside it (the addon's netnsListen), on the real kernel: a process that joined the pod's cgroup but
// runs in another namespace is never taken for the pod; one in the namespace holding the pod's IP is,
// and a listener opened there serves that namespace's loopback only.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { type Server, createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { netnsListen } from '../../agent/redirect/bpf-binding.js';
import { cgroup2Root, createCgroup, procsFile, removeCgroupTree } from '../../agent/system/cgroups.js';
import { ownNetnsId, podNetns } from '../../agent/system/netns.js';
import { run } from './helpers/netns-fixture.js';
import { requireRoot } from './helpers/lab-cli.js';

const NS = `ambit-tns-${process.pid}`;
const POD_IP = '10.250.77.7';

describe('a pod\'s network namespace, found through its cgroup', () => {
  const cgroup = join(cgroup2Root(), NS);
  const children: ChildProcess[] = [];
  let server: Server | undefined;

  /** A `sleep` moved into the pod's cgroup, in the given namespace (none: the test's own). */
  const sleeper = async (netns?: string): Promise<number> => {
    const argv = netns ? ['ip', 'netns', 'exec', netns, 'sleep', '60'] : ['sleep', '60'];
    const child = spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' });
    children.push(child);
    // `ip netns exec` execs sleep in the same process once it has switched namespaces.
    await new Promise((r) => setTimeout(r, 300));
    writeFileSync(procsFile(cgroup), String(child.pid));
    return child.pid!;
  };

  before(async () => {
    requireRoot();
    const add = await run('ip', ['netns', 'add', NS]);
    assert.equal(add.code, 0, add.stderr);
    for (const args of [['addr', 'add', `${POD_IP}/32`, 'dev', 'lo'], ['link', 'set', 'lo', 'up']]) {
      const r = await run('ip', ['netns', 'exec', NS, 'ip', ...args]);
      assert.equal(r.code, 0, r.stderr);
    }
    await createCgroup(cgroup);
  });

  after(async () => {
    server?.close();
    children.forEach((c) => c.kill('SIGKILL'));
    await removeCgroupTree(cgroup);
    await run('ip', ['netns', 'del', NS]);
  });

  it('skips a process of the cgroup outside the pod\'s namespace, takes one inside it', async () => {
    const own = await ownNetnsId();
    await sleeper();
    assert.equal(await podNetns(cgroup, POD_IP, own), undefined, 'a process in the agent\'s own namespace was taken for the pod');
    const pid = await sleeper(NS);
    const found = await podNetns(cgroup, POD_IP, own);
    assert.equal(found?.path, `/proc/${pid}/ns/net`);
    assert.notEqual(found?.id, own);
    // Another pod IP is not in that namespace.
    assert.equal(await podNetns(cgroup, '10.250.77.8', own), undefined);
  });

  it('opens a listener inside the namespace: its loopback reaches it, the agent\'s does not', async () => {
    const found = await podNetns(cgroup, POD_IP, await ownNetnsId());
    assert.ok(found);
    const fd = netnsListen(found.path, '127.0.0.1', 15080);
    assert.ok(fd.ok, fd.ok ? '' : fd.error.message);
    server = createServer((socket) => socket.end('from the agent\n'));
    await new Promise<void>((resolve) => server!.listen({ fd: fd.value }, resolve));
    const inside = await run('ip', ['netns', 'exec', NS, 'curl', '-s', '--max-time', '3', 'telnet://127.0.0.1:15080']);
    assert.equal(inside.stdout, 'from the agent\n');
    const outside = await run('curl', ['-s', '--max-time', '3', 'telnet://127.0.0.1:15080']);
    assert.notEqual(outside.stdout, 'from the agent\n', 'the pod\'s listener answered on the agent\'s own loopback');
    // A namespace that is gone is reported, not entered.
    const gone = netnsListen('/run/netns/ambit-tns-absent', '127.0.0.1', 15080);
    assert.ok(!gone.ok && /ENOENT/.test(gone.error.message), JSON.stringify(gone));
  });
});

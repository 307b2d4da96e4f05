// `ambit run`'s DNS capture flags: on by default with eBPF capture and off with --no-dns-capture; the
// proxy's upstream from --dns-upstream parsed strictly, else the first IPv4 nameserver of the agent's
// resolv.conf, else an error that says which flag to pass.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseRunArgs } from '../../agent/cli/run.js';
import { UsageError } from '../../agent/cli/usage.js';
import { firstNameserver, nodeDnsUpstream, parseDnsUpstream } from '../../agent/dns/node-upstream.js';

test('DNS capture is on by default with eBPF capture, as in Istio ambient since 1.25; --no-dns-capture turns it off', () => {
  const ebpf = ['--node', 'n1', '--config', 'mesh/', '--pod-cgroup', 'kubepods', '--cgroup-root', '/sys/fs/cgroup'];
  const dns = (args: string[]): unknown => {
    const capture = parseRunArgs(args, {}).config.capture;
    return capture.mode === 'ebpf' ? capture.dns : 'no capture';
  };
  assert.deepEqual(dns(ebpf), {});
  assert.deepEqual(dns([...ebpf, '--dns-capture']), {});
  assert.deepEqual(dns([...ebpf, '--dns-upstream', '10.96.0.10']), { upstream: { ip: '10.96.0.10', port: 53 } });
  assert.equal(dns([...ebpf, '--no-dns-capture']), undefined);
  const none = ['--node', 'n1', '--config', 'mesh/', '--capture', 'none'];
  assert.equal(dns(none), 'no capture', 'no eBPF capture, no DNS capture, and no error');
  const refused = (args: string[], message: RegExp): void =>
    assert.throws(() => parseRunArgs(args, {}), (err: Error) => err instanceof UsageError && message.test(err.message), args.join(' '));
  refused([...ebpf, '--no-dns-capture', '--dns-upstream', '10.96.0.10'], /--dns-upstream is where captured DNS is forwarded; drop it, or drop --no-dns-capture/);
  refused([...none, '--dns-capture'], /--dns-capture .* needs --capture ebpf/);
  refused([...none, '--dns-upstream', '10.96.0.10'], /--dns-upstream .* --capture none captures nothing/);
  refused([...ebpf, '--dns-upstream', 'kube-dns'], /--dns-upstream "kube-dns": expected an IPv4 address/);
});

test('--dns-upstream takes an IPv4 address with an optional port, and nothing else', () => {
  assert.deepEqual(parseDnsUpstream('10.96.0.10'), { ip: '10.96.0.10', port: 53 });
  assert.deepEqual(parseDnsUpstream('10.96.0.10:5353'), { ip: '10.96.0.10', port: 5353 });
  for (const bad of ['kube-dns', '10.96.0.10:0', '10.96.0.10:70000', '10.96.0.10:53:1', '::1', '']) assert.equal(parseDnsUpstream(bad), undefined, bad);
});

test("without it, the first IPv4 nameserver of the agent's resolv.conf, as glibc asks it first", () => {
  assert.deepEqual(firstNameserver('# comment\nsearch svc.cluster.local\nnameserver fd00::10\nnameserver 10.96.0.10\nnameserver 10.96.0.11\n'), { ip: '10.96.0.10', port: 53 });
  assert.equal(firstNameserver('search example\n'), undefined);
  const dir = mkdtempSync(join(tmpdir(), 'ambit-resolv-'));
  try {
    writeFileSync(join(dir, 'resolv.conf'), 'nameserver 192.0.2.53\n');
    assert.deepEqual(nodeDnsUpstream(undefined, join(dir, 'resolv.conf')), { ip: '192.0.2.53', port: 53 });
    assert.deepEqual(nodeDnsUpstream({ ip: '10.0.0.1', port: 53 }, join(dir, 'resolv.conf')), { ip: '10.0.0.1', port: 53 }, 'the flag wins');
    writeFileSync(join(dir, 'resolv.conf'), 'options ndots:5\n');
    assert.match(String(nodeDnsUpstream(undefined, join(dir, 'resolv.conf'))), /has no IPv4 nameserver .* pass --dns-upstream/);
    assert.match(String(nodeDnsUpstream(undefined, join(dir, 'missing'))), /cannot read .*missing.* pass --dns-upstream/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

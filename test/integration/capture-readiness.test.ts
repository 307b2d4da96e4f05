// Readiness follows capture's health on the real kernel: `ambit run` with eBPF capture in a node
// network namespace, whose `nft` (found through PATH, as the agent looks for it) is a wrapper that
// refuses while a flag file exists. A new pod whose Service VIP path cannot be written into the nft
// table turns /healthz/ready to 503 with the reason; once nft works again the agent's own retry writes
// it, and readiness is 200 again. The table itself is read with the real nft.

import assert from 'node:assert/strict';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DNAT_CAPTURE_TABLE } from '../../agent/redirect/dnat-capture.js';
import { which } from '../../agent/system/commands.js';
import { eventually, requireRoot } from './helpers/lab-cli.js';
import { NODE_IP, POD1_IP, POD2_IP, Topology, run } from './helpers/netns-fixture.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const topo = new Topology('nftready');
const dir = mkdtempSync(join(tmpdir(), 'ambit-capture-readiness-'));
const wrapperDir = join(dir, 'bin');
const failFlag = join(dir, 'nft-fails');
const calls = join(dir, 'nft-calls');
const configDir = join(dir, 'mesh');
let agent: ChildProcessWithoutNullStreams | undefined;
let output = '';

const pod = (name: string, ip: string): string => `---
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: shop }
spec: { nodeName: n1, containers: [{ name: c, command: [x] }] }
status: { podIP: ${ip} }
`;
const mesh = (...pods: string[]): string => `apiVersion: v1
kind: Node
metadata: { name: n1 }
status: { addresses: [{ type: InternalIP, address: ${NODE_IP} }] }
---
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { istio.io/dataplane-mode: ambient } }
${pods.join('')}`;

/** /healthz/ready from inside the node's namespace: status and body. */
async function readiness(): Promise<{ status: number; body: string }> {
  const r = await run('ip', ['netns', 'exec', topo.node, 'curl', '-s', '-m', '2', '-w', '\n%{http_code}', 'http://127.0.0.1:15021/healthz/ready'], 5_000);
  const lines = r.stdout.trimEnd().split('\n');
  return { status: Number(lines.at(-1)), body: lines.slice(0, -1).join('\n').trim() };
}

/** The enrolled pod IPs the kernel's table holds, read with the real nft. */
async function tableIps(realNft: string): Promise<string> {
  const r = await run('ip', ['netns', 'exec', topo.node, realNft, 'list', 'set', 'ip', DNAT_CAPTURE_TABLE, 'enrolled_local'], 5_000);
  return r.stdout;
}

const realNft = which('nft');

before(async () => {
  requireRoot();
  if (!realNft) throw new Error('nft is not installed: run `make setup` (apt-get install nftables)');
  await topo.build();
  mkdirSync(wrapperDir);
  mkdirSync(configDir);
  // An nft that fails on demand; it records every call, so the test knows the agent ran this one.
  writeFileSync(
    join(wrapperDir, 'nft'),
    `#!/bin/sh\necho "$*" >> '${calls}'\nif [ -e '${failFlag}' ]; then echo "nft: refused by the capture-readiness test" >&2; exit 1; fi\nexec '${realNft}' "$@"\n`,
  );
  chmodSync(join(wrapperDir, 'nft'), 0o755);
  writeFileSync(join(configDir, 'mesh.yaml'), mesh(pod('pod1', POD1_IP)));
  agent = topo.runAgent(configDir, join(dir, 'state'), ['--log-level', 'debug'], { cwd: REPO, env: { ...process.env, PATH: `${wrapperDir}:${process.env['PATH'] ?? ''}` } });
  agent.stdout.on('data', (d: Buffer) => (output += d.toString()));
  agent.stderr.on('data', (d: Buffer) => (output += d.toString()));
});

after(async () => {
  agent?.kill('SIGKILL');
  await topo.teardown();
  rmSync(dir, { recursive: true, force: true });
});

test('readiness is 503 with the reason while the nft table cannot be written, and 200 once a retry writes it', async () => {
  await eventually('the agent to be ready', async () => ((await readiness()).status === 200 ? true : undefined), 30_000).catch((err: Error) => {
    throw new Error(`${err.message}; agent output:\n${output.slice(-4000)}`);
  });
  assert.ok(existsSync(calls) && readFileSync(calls, 'utf8').includes('-f -'), 'the agent wrote its table with the nft it found first on PATH');
  assert.match(await tableIps(realNft!), new RegExp(POD1_IP.replaceAll('.', '\\.')));

  writeFileSync(failFlag, '');
  // A second pod joins: its address must go into the table, which nft now refuses.
  writeFileSync(join(configDir, 'mesh.yaml'), mesh(pod('pod1', POD1_IP), pod('pod2', POD2_IP)));
  const refused = await eventually('readiness to fail', async () => {
    const r = await readiness();
    return r.status === 503 ? r.body : undefined;
  });
  assert.match(refused, new RegExp(`^not ready: capture is incomplete: cannot write nft table ${DNAT_CAPTURE_TABLE} .*nft: refused by the capture-readiness test`));
  assert.doesNotMatch(await tableIps(realNft!), new RegExp(POD2_IP.replaceAll('.', '\\.')), 'the table really lacks the new pod');
  // Still failing after more retries: readiness stays 503.
  const callsWhileFailing = readFileSync(calls, 'utf8').split('\n').length;
  await eventually('a retry', async () => (readFileSync(calls, 'utf8').split('\n').length > callsWhileFailing ? true : undefined), 10_000);
  assert.equal((await readiness()).status, 503, `agent output:\n${output.slice(-3000)}`);

  rmSync(failFlag);
  const ready = await eventually('readiness to recover', async () => {
    const r = await readiness();
    return r.status === 200 ? r.body : undefined;
  });
  assert.equal(ready, 'ready');
  assert.match(await tableIps(realNft!), new RegExp(POD2_IP.replaceAll('.', '\\.')), 'the retry wrote the new pod into the table');
});

// `make scale` (and `make bench`): mesh state at scale (issue 14 §2). The same generated mesh (10,000
// pods on 100 nodes, 2,000 Services of five pods each) through each source of an agent: YAML files, the
// Kubernetes API (the lab's API server stand-in) and istiod's workload xDS (the test istiod). Each source
// runs alone in a child process; it reports the time to its first full snapshot, the RSS and heap it then
// holds, and the time from one pod's changed identity to the snapshot that has it.
//
//   node --import tsx bench/scale-mesh.bench.ts [--pods <n>] [--services <n>]

import { fork } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { MAX_CONFIG_BYTES } from '../agent/config/input-limits.js';
import { FakeApiServer } from '../agent/lab/kube-apiserver.js';
import { ADDRESS_TYPE_URL } from '../agent/sources/xds/xds-source.js';
import { startIstiod } from '../test/fixtures/istiod/running.js';
import { backgroundBusyPercent } from './capture/process-usage.js';
import { saveResults } from './lib/results.js';
import { type MeshSize, kubeObjects, kubePod, xdsResources, xdsWorkload, yamlFiles } from './scale/mesh-objects.js';
import type { SourceJob, SourceReport } from './scale/mesh-source.js';

const { values: args } = parseArgs({ options: { pods: { type: 'string', default: '10000' }, services: { type: 'string', default: '2000' } } });
const SIZE: MeshSize = { pods: Number(args.pods), services: Number(args.services), nodes: 100, namespaces: 20 };
if (!(Number.isInteger(SIZE.pods) && SIZE.pods > 0 && Number.isInteger(SIZE.services) && SIZE.services * 5 <= SIZE.pods)) {
  process.stderr.write('usage: scale-mesh.bench.ts [--pods <n>] [--services <n, at most pods/5>]\n');
  process.exit(2);
}
const CHILD = fileURLToPath(new URL('./scale/mesh-source.ts', import.meta.url));
const TIMEOUT_MS = 600_000;

/** Runs one source in a child; `change` is called once it is ready, and must make the change the child waits for. */
function measure(job: SourceJob, change: () => void | Promise<void>): Promise<{ ready: SourceReport & { event: 'ready' }; changed: SourceReport & { event: 'changed' } }> {
  return new Promise((resolve, reject) => {
    const child = fork(CHILD, [], { execArgv: ['--import', 'tsx', '--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const timer = setTimeout(() => child.kill('SIGKILL'), TIMEOUT_MS);
    let ready: (SourceReport & { event: 'ready' }) | undefined;
    child.on('message', (r: SourceReport) => {
      if (r.event === 'failed') reject(new Error(`the ${job.mode} source failed: ${r.error}`));
      else if (r.event === 'ready') {
        ready = r;
        void Promise.resolve(change()).then(() => child.send('go'));
      } else resolve({ ready: ready!, changed: r });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the ${job.mode} source's process exited (${code}) before it reported`));
    });
    child.send(job);
  });
}

const startedAt = new Date();
const busy = await backgroundBusyPercent(2_000);
const dir = await mkdtemp(join(tmpdir(), 'ambit-scale-mesh-'));
const results: Record<string, unknown> = {};
const print = (name: string, r: Awaited<ReturnType<typeof measure>>): void => {
  results[name] = r;
  process.stdout.write(`  ${name.padEnd(10)} first ready ${(r.ready.firstReadyMs / 1000).toFixed(2)} s (${r.ready.workloads} workloads, ${r.ready.services} services), RSS ${r.ready.rssMiB} MiB, heap ${r.ready.heapMiB} MiB; one change applied in ${r.changed.changeMs.toFixed(0)} ms (RSS then ${r.changed.rssMiB} MiB)\n`);
};
process.stdout.write(`mesh state: ${SIZE.pods} pods on ${SIZE.nodes} nodes, ${SIZE.services} Services (machine ${busy.toFixed(0)} % busy before)\n`);
try {
  const objects = kubeObjects(SIZE);
  // YAML: the files the agent would watch, each under its per-file limit; the change rewrites the last one.
  const files = yamlFiles(objects.filter((o) => o.kind !== 'Pod' || o.metadata.name !== 'pod-0'), MAX_CONFIG_BYTES * 0.95);
  files.push(`---\n${stringify(kubePod(0, SIZE))}`);
  const paths = await Promise.all(files.map(async (text, i) => {
    const path = join(dir, `mesh-${i}.yaml`);
    await writeFile(path, text);
    return path;
  }));
  print('yaml', await measure({ mode: 'local', paths, changeFile: paths.at(-1)!, changeText: `---\n${stringify(kubePod(0, SIZE, 'changed'))}` }, () => undefined));

  const api = new FakeApiServer();
  await api.start();
  for (const o of objects) api.apply(o);
  const kubeconfig = join(dir, 'kubeconfig');
  await writeFile(kubeconfig, `apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: ${api.url}\n    insecure-skip-tls-verify: true\nusers:\n- name: agent\n  user: {}\ncontexts:\n- name: lab\n  context: {cluster: lab, user: agent}\ncurrent-context: lab\n`);
  try {
    print('kubernetes', await measure({ mode: 'kubernetes', kubeconfig }, () => void api.apply(kubePod(0, SIZE, 'changed'))));
  } finally {
    await api.stop();
  }

  const istiod = await startIstiod('bench-token');
  try {
    istiod.server.push(ADDRESS_TYPE_URL, xdsResources(SIZE));
    print('xds', await measure({ mode: 'xds', options: istiod.agentOptions }, () => void istiod.server.push(ADDRESS_TYPE_URL, [xdsWorkload(0, SIZE, 'changed', '2')])));
  } finally {
    await istiod.stop();
  }
  saveResults('scale-mesh.json', 'scale-mesh', startedAt, busy, { size: SIZE, results });
} finally {
  await rm(dir, { recursive: true, force: true });
}
process.exit(0);

// `ambit console --kubernetes`: the kubectl port-forward it prints reaches the agent that
// deploy/daemonset installs (its namespace, its pods' labels, the node's pod) on the admin port.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse } from 'yaml';

const MAIN = fileURLToPath(new URL('../../agent/cli/main.ts', import.meta.url));
const DAEMONSET = fileURLToPath(new URL('../../deploy/daemonset/daemonset.yaml', import.meta.url));

interface DaemonSet {
  readonly metadata: { readonly namespace: string };
  readonly spec: { readonly template: { readonly metadata: { readonly labels: Readonly<Record<string, string>> } } };
}

test('ambit console --kubernetes --node N prints the port-forward to the DaemonSet pod of node N, and the URL', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', MAIN, 'console', '--kubernetes', '--node', 'node-7'], { timeout: 30_000 });
  const daemonSet = parse(readFileSync(DAEMONSET, 'utf8')) as DaemonSet;
  const namespace = daemonSet.metadata.namespace;
  const name = daemonSet.spec.template.metadata.labels['app.kubernetes.io/name'];
  assert.equal(
    stdout,
    'Run, then open http://127.0.0.1:15000/console :\n' +
      `  kubectl -n ${namespace} port-forward $(kubectl -n ${namespace} get pod -l app.kubernetes.io/name=${name} --field-selector spec.nodeName=node-7 -o name | head -1) 15000:15000\n`,
  );
});

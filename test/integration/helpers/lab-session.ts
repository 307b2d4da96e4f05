// What the lab tests do to a running lab, in one place: two-node YAML, commands in pods and nodes, an
// agent's log, a YAML edit that waits until an agent has applied it, and putting back the YAML the lab
// came up with, so that no test runs on what another test (passed or failed) left behind.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CommandResult, ambit, eventually, requireBuiltAmbit, requireRoot } from './lab-cli.js';

/** Nodes `alpha` and `beta`: InternalIP 172.31.<net>.11/.12 and pod CIDRs 10.<podNet>.1.0/24 and .2.0/24. */
export function twoNodesYaml(net: number, podNet: number): string {
  const node = (name: string, index: number): string => `apiVersion: v1
kind: Node
metadata: { name: ${name} }
spec: { podCIDR: 10.${podNet}.${index}.0/24 }
status: { addresses: [{ type: InternalIP, address: 172.31.${net}.${10 + index} }] }
`;
  return `${node('alpha', 1)}---\n${node('beta', 2)}`;
}

/** A Pod of the lab YAML whose container gets its own name in POD_NAME (what test servers answer with). */
export function labPodYaml(pod: {
  readonly name: string;
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly node: string;
  readonly ip: string;
  readonly serviceAccount: string;
  readonly command: readonly string[];
}): string {
  const labels = Object.entries(pod.labels).map(([k, v]) => `${k}: ${v}`).join(', ');
  return `---
apiVersion: v1
kind: Pod
metadata: { name: ${pod.name}, namespace: ${pod.namespace}, labels: { ${labels} } }
spec:
  nodeName: ${pod.node}
  serviceAccountName: ${pod.serviceAccount}
  containers:
    - name: main
      command: ${JSON.stringify(pod.command)}
      env: [{ name: POD_NAME, valueFrom: { fieldRef: { fieldPath: metadata.name } } }]
status: { podIP: ${pod.ip} }
`;
}

/** A ServiceAccount of the lab YAML. */
export function serviceAccountYaml(name: string, namespace: string): string {
  return `---\napiVersion: v1\nkind: ServiceAccount\nmetadata: { name: ${name}, namespace: ${namespace} }\n`;
}

export class LabSession {
  /** The YAML `up()` brought the lab up with, and the YAML last written: what `restore()` compares. */
  #baseline: string | undefined;
  #current: string | undefined;

  /** A session whose mesh YAML, and any file a test keeps beside it, live in a new temporary `dir` that down() removes. */
  static inTempDir(lab: string, prefix: string): LabSession {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    return new LabSession(lab, join(dir, 'mesh.yaml'), dir);
  }

  constructor(
    readonly lab: string,
    private readonly yamlPath: string,
    readonly dir?: string,
  ) {}

  /** Writes the mesh YAML and brings the lab up (with `flags` of `lab up`), waiting at most `timeoutSeconds` for it to be ready. */
  async up(yaml: string, timeoutSeconds: number, flags: readonly string[] = []): Promise<void> {
    requireRoot();
    requireBuiltAmbit();
    writeFileSync(this.yamlPath, yaml);
    this.#baseline = this.#current = yaml;
    const up = await ambit(['lab', 'up', '--lab', this.lab, '--timeout', String(timeoutSeconds), ...flags, this.yamlPath], (timeoutSeconds + 60) * 1000);
    assert.equal(up.code, 0, `lab up failed:\n${up.stdout}\n${up.stderr}`);
  }

  /** Takes the lab down, and removes the session's temporary directory if it made one. */
  async down(): Promise<void> {
    await ambit(['lab', 'down', '--lab', this.lab], 120_000);
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }

  /** `ambit lab exec` in a pod (`namespace/name`) or a node (`node/<name>`). */
  exec(target: string, argv: readonly string[], timeoutMs = 20_000): Promise<CommandResult> {
    return ambit(['lab', 'exec', '--lab', this.lab, target, '--', ...argv], timeoutMs);
  }

  async agentLog(node: string): Promise<string> {
    return (await ambit(['lab', 'logs', '--lab', this.lab, `node/${node}`])).stdout;
  }

  /** Writes the mesh YAML and waits until `node`'s agent has a new configuration in force; returns when the file was written. */
  async apply(yaml: string, node = 'beta'): Promise<number> {
    const reloads = async (): Promise<number> => (await this.agentLog(node)).match(/"msg":"configuration version \d+ in force/g)?.length ?? 0;
    const before = await reloads();
    const writtenAt = Date.now();
    writeFileSync(this.yamlPath, yaml);
    this.#current = yaml;
    await eventually(`${node} to apply the change`, async () => ((await reloads()) > before ? true : undefined));
    return writtenAt;
  }

  /**
   * Puts back the YAML `up()` brought the lab up with, if a test changed it, and waits until `node`'s
   * agent has it in force. Meant for `afterEach`, which runs after a failed test too.
   */
  async restore(node = 'beta'): Promise<void> {
    if (this.#baseline === undefined) throw new Error(`restore(): lab "${this.lab}" was not brought up by this session's up(), so there is no YAML to put back`);
    if (this.#current !== this.#baseline) await this.apply(this.#baseline, node);
  }
}

/** Requests by the pod that answered and their status, e.g. { "a 200": 28, "b 503": 2 }: what an assertion prints. */
export function tally(hits: readonly { readonly pod: string; readonly status: number | string }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const h of hits) out[`${h.pod} ${h.status}`] = (out[`${h.pod} ${h.status}`] ?? 0) + 1;
  return out;
}

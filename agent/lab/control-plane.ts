// The lab's control plane for `ambit lab up --source kubernetes`: the agents of a cluster learn the
// mesh from the Kubernetes API server, so the lab runs one (agent/lab/kube-apiserver.ts, the same
// list/watch wire protocol over HTTPS with a bearer token) in its fabric namespace, holding the objects
// of the lab's YAML and following the user's edits of it as `kubectl apply` would: a changed object
// is replaced, a removed one deleted. Each agent reads it through a kubeconfig, exactly as
// `ambit run --source kubernetes --kubeconfig` does against a real cluster.

import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatDiagnostic } from '../config/diagnostics.js';
import { parseYamlBounded } from '../config/input-limits.js';
import { listConfigFiles, readConfigText } from '../config/load.js';
import { watchPaths } from '../sources/watch-paths.js';
import { requireTool, runCommand } from '../system/commands.js';
import type { Logger } from '../telemetry/log.js';
import { FakeApiServer } from './kube-apiserver.js';
import { type KubeObject, servesKind } from './kube-resources.js';
import { agentObjects, tokenKey } from './lab-ca.js';
import { LAB_API_SERVER, type LabLayout } from './layout.js';
import type { LabNodePlan } from './plan.js';

const CERT = 'apiserver.crt';
const KEY = 'apiserver.key';
const TOKEN = 'token';

/**
 * Makes the API server's key and self-signed certificate (for its fabric address), a bearer token, and
 * the kubeconfig every agent is given. All of it lives under the lab's state directory.
 */
export async function prepareApiServer(layout: LabLayout): Promise<void> {
  const dir = layout.apiServerDir;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const openssl = requireTool('openssl', 'openssl');
  await runCommand(openssl, [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', join(dir, KEY), '-out', join(dir, CERT),
    '-subj', `/CN=ambit-lab-${layout.name}-kube-apiserver`,
    '-addext', `subjectAltName=IP:${LAB_API_SERVER.ip}`,
    '-days', '365',
  ]);
  const token = randomBytes(24).toString('base64url');
  await writeFile(join(dir, TOKEN), token, { mode: 0o600 });
  const ca = Buffer.from(await readFile(join(dir, CERT))).toString('base64');
  const kubeconfig = `apiVersion: v1
kind: Config
clusters:
  - name: ambit-lab-${layout.name}
    cluster:
      server: https://${LAB_API_SERVER.ip}:${LAB_API_SERVER.port}
      certificate-authority-data: ${ca}
users:
  - name: ambit-agent
    user:
      token: ${token}
contexts:
  - name: ambit-lab-${layout.name}
    context: { cluster: ambit-lab-${layout.name}, user: ambit-agent }
current-context: ambit-lab-${layout.name}
`;
  await writeFile(layout.kubeconfig, kubeconfig, { mode: 0o600 });
}

/**
 * Serves the YAML under `paths` until SIGTERM or SIGINT (`ambit lab kube-apiserver`, run by the
 * supervisor inside the fabric namespace).
 */
export async function serveLabApiServer(layout: LabLayout, paths: readonly string[], nodes: readonly LabNodePlan[], log: Logger): Promise<void> {
  const dir = layout.apiServerDir;
  const [key, cert, token] = await Promise.all([KEY, CERT, TOKEN].map((f) => readFile(join(dir, f), 'utf8')));
  // It reviews the agents' tokens for `ambit ca` (lab-ca.ts), whose pods it holds beside the YAML's objects.
  const server = new FakeApiServer({ host: LAB_API_SERVER.ip, port: LAB_API_SERVER.port, token: token!, tls: { key: key!, cert: cert! }, tokenReviewKey: await tokenKey(layout) });
  for (const object of agentObjects(layout, nodes)) server.apply(object);
  const sync = new YamlSync(server, paths, log);
  await sync.reload();
  await server.start();
  log.info({ url: server.url }, `kube-apiserver listening on ${server.url}, serving ${paths.join(', ')}`);

  let timer: NodeJS.Timeout | undefined;
  let reloading: Promise<void> = Promise.resolve();
  const watch = await watchPaths(
    paths,
    () => {
      clearTimeout(timer);
      // Reloads run one at a time, in order: a slow read must not apply an older state after a newer one.
      timer = setTimeout(() => (reloading = reloading.then(() => sync.reload())), 150);
    },
    log,
  );
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info({ signal }, 'kube-apiserver stopping');
      clearTimeout(timer);
      watch.close();
      void server.stop().then(resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

interface Held {
  readonly object: KubeObject;
  /** The object as the user wrote it, to tell an edit from a file saved unchanged. */
  readonly text: string;
}

/** Keeps the API server's objects equal to those of the YAML files, as repeated `kubectl apply --prune` would. */
class YamlSync {
  /** The last objects read from each file; a file that stops parsing keeps them, as a rejected apply would. */
  readonly #byFile = new Map<string, Map<string, Held>>();
  #served = new Map<string, Held>();
  readonly #skipped = new Set<string>();

  constructor(
    private readonly server: FakeApiServer,
    private readonly paths: readonly string[],
    private readonly log: Logger,
  ) {}

  async reload(): Promise<void> {
    const listed = await listConfigFiles(this.paths);
    for (const d of listed.diagnostics) this.log.error({ file: d.location.file }, d.message);
    for (const file of [...this.#byFile.keys()]) if (!listed.files.includes(file)) this.#byFile.delete(file);
    for (const file of listed.files) {
      const read = await this.#read(file);
      if (read) this.#byFile.set(file, read);
    }

    const wanted = new Map<string, Held>();
    for (const [file, objects] of this.#byFile) {
      for (const [key, held] of objects) {
        if (wanted.has(key)) this.log.warn({ file, object: key }, `${file}: ${key} is defined twice; the first definition is served`);
        else wanted.set(key, held);
      }
    }
    let changes = 0;
    for (const [key, held] of wanted) {
      if (this.#served.get(key)?.text === held.text) continue;
      this.server.apply(held.object);
      changes++;
    }
    for (const [key, held] of this.#served) {
      if (wanted.has(key)) continue;
      const { kind, metadata } = held.object;
      this.server.delete(kind!, metadata.namespace, metadata.name);
      changes++;
    }
    this.#served = wanted;
    if (changes > 0) this.log.info({ changes, resourceVersion: this.server.resourceVersion }, `applied ${changes} change(s) from the YAML; resourceVersion ${this.server.resourceVersion}`);
  }

  /** The objects of one file by key, or undefined (logged) when its YAML does not parse. */
  async #read(file: string): Promise<Map<string, Held> | undefined> {
    const read = await readConfigText(file);
    const parsed = read.ok ? parseYamlBounded(read.text, file) : read;
    if (!parsed.ok) {
      this.log.error({ file }, formatDiagnostic(parsed.problem));
      return undefined;
    }
    const docs = parsed.documents;
    const broken = docs.flatMap((d) => d.errors);
    if (broken.length > 0) {
      this.log.error({ file }, `${file}: the YAML does not parse (${broken[0]!.message}); its objects stay as they were`);
      return undefined;
    }
    const objects = new Map<string, Held>();
    for (const doc of docs) {
      let value: unknown;
      try {
        value = doc.toJS();
      } catch (err) {
        this.log.error({ file }, `${file}: ${(err as Error).message}; its objects stay as they were`);
        return undefined;
      }
      if (value === null || value === undefined) continue;
      const items = isObject(value) && value['kind'] === 'List' && Array.isArray(value['items']) ? (value['items'] as unknown[]) : [value];
      for (const item of items) {
        const object = asKubeObject(item);
        if (!object) {
          this.log.warn({ file }, `${file}: a document without apiVersion, kind and metadata.name is not an API object; not served`);
          continue;
        }
        if (!servesKind(object)) {
          // Said once per kind: the agents' local mode may read kinds no API server of ours serves.
          const kind = `${object.apiVersion}/${object.kind}`;
          if (!this.#skipped.has(kind)) this.log.warn({ file, kind }, `${file}: the lab's kube-apiserver does not serve ${kind}; such objects are skipped`);
          this.#skipped.add(kind);
          continue;
        }
        objects.set(`${object.apiVersion?.split('/').slice(0, -1).join('/')}/${object.kind}/${object.metadata.namespace ?? ''}/${object.metadata.name}`, {
          object,
          text: JSON.stringify(object),
        });
      }
    }
    return objects;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function asKubeObject(value: unknown): KubeObject | undefined {
  if (!isObject(value) || typeof value['apiVersion'] !== 'string' || typeof value['kind'] !== 'string') return undefined;
  const metadata = value['metadata'];
  if (!isObject(metadata) || typeof metadata['name'] !== 'string' || metadata['name'] === '') return undefined;
  return value as KubeObject;
}

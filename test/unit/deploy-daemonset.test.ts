// deploy/daemonset: the DaemonSet's command line is one `ambit run` accepts (checked with the agent's
// own parser), the ClusterRole grants exactly what the Kubernetes source lists and watches, the CA
// (`ambit ca`, ca.yaml) alone mounts the signing key and the agents reach it with a token for its
// audience, and every manifest holds together (structure, references between objects, the kustomization).

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { parseCaArgs } from '../../agent/cli/ca.js';
import { parseRunArgs } from '../../agent/cli/run.js';
import { WATCHED_RESOURCES } from '../../agent/sources/kubernetes/resources.js';

const DIR = fileURLToPath(new URL('../../deploy/daemonset', import.meta.url));

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

const manifests: Manifest[] = readdirSync(DIR)
  .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
  .flatMap((f) => parseAllDocuments(readFileSync(join(DIR, f), 'utf8')).map((d) => d.toJSON() as Manifest));
const find = (kind: string, name?: string): Manifest => {
  const found = manifests.find((m) => m.kind === kind && (name === undefined || m.metadata.name === name));
  assert.ok(found, `deploy/daemonset has a ${kind}${name ? ` ${name}` : ''}`);
  return found;
};

// The shapes read below; a manifest that does not have them fails the assertions on them.
interface Container {
  name: string;
  image: string;
  command: string[];
  args: string[];
  env?: { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  envFrom?: { configMapRef?: { name: string } }[];
  ports?: unknown[];
  readinessProbe: { httpGet: { path: string; port: number } };
  resources: { requests: Record<string, string> };
  securityContext: { privileged?: boolean; capabilities: { add: string[]; drop: string[] } };
  volumeMounts: { name: string; mountPath: string }[];
}
interface PodSpec {
  serviceAccountName: string;
  hostNetwork: boolean;
  priorityClassName: string;
  containers: Container[];
  volumes: {
    name: string;
    hostPath?: { path: string };
    secret?: { secretName: string };
    configMap?: { name: string };
    projected?: { sources: { serviceAccountToken?: { path: string; audience: string } }[] };
  }[];
}
const daemonSet = find('DaemonSet', 'ambit') as Manifest & {
  spec: { updateStrategy: { type: string; rollingUpdate: { maxSurge?: number; maxUnavailable?: number } }; selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string>; annotations: Record<string, string> }; spec: PodSpec } };
};
const pod = daemonSet.spec.template.spec;
const agent = pod.containers[0]!;
const config = find('ConfigMap', 'ambit-config') as Manifest & { data: Record<string, string> };

/** The args as the kubelet runs them: $(VAR) from the container's env and envFrom ConfigMap. */
function expandedArgs(nodeName: string): string[] {
  const env: Record<string, string> = { ...config.data, NODE_NAME: nodeName };
  return agent.args.map((a) =>
    a.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_m, name: string) => {
      assert.ok(name in env, `$(${name}) in the DaemonSet args is defined by its env or ConfigMap`);
      return env[name]!;
    }),
  );
}

test('the DaemonSet runs `ambit run` with flags its own parser accepts: kubernetes source, eBPF capture, Istio ports', () => {
  assert.deepEqual(agent.command, ['node', '/opt/ambit/dist/agent/cli/main.js']);
  assert.equal(agent.args[0], 'run');
  const { config: parsed, logLevel } = parseRunArgs(expandedArgs('node-7').slice(1), {});
  assert.equal(logLevel, 'info');
  assert.equal(parsed.node, 'node-7');
  assert.deepEqual(parsed.source, { kind: 'kubernetes', cluster: { id: 'Kubernetes' } });
  assert.equal(parsed.capture.mode, 'ebpf');
  assert.deepEqual(parsed.capture.mode === 'ebpf' && parsed.capture.podCgroup, { kind: 'kubepods', root: '/host/sys/fs/cgroup' });
  assert.deepEqual(parsed.readiness, { host: '0.0.0.0', port: 15021 });
  assert.deepEqual(parsed.metrics, { host: '0.0.0.0', port: 15020 });
  assert.deepEqual(parsed.admin, { host: '127.0.0.1', port: 15000 }, 'admin stays on loopback even with hostNetwork');
  // NODE_NAME comes from the downward API; the kubelet sets KUBERNETES_SERVICE_HOST for in-cluster config.
  assert.equal(agent.env?.find((e) => e.name === 'NODE_NAME')?.valueFrom?.fieldRef?.fieldPath, 'spec.nodeName');
  assert.equal(agent.envFrom?.[0]?.configMapRef?.name, 'ambit-config');
  // The probe and the scrape annotations point where the agent listens.
  assert.deepEqual(agent.readinessProbe.httpGet, { path: '/healthz/ready', port: parsed.readiness.port });
  const annotations = daemonSet.spec.template.metadata.annotations;
  assert.equal(annotations['prometheus.io/scrape'], 'true');
  assert.equal(Number(annotations['prometheus.io/port']), parsed.metrics.port);
  assert.equal(annotations['prometheus.io/path'], '/stats/prometheus');
});

test('the DaemonSet: host network, capabilities rather than privileged, the mounts capture needs, node-critical', () => {
  assert.equal(pod.hostNetwork, true);
  assert.equal(pod.priorityClassName, 'system-node-critical');
  assert.equal(agent.securityContext.privileged, false);
  assert.deepEqual(agent.securityContext.capabilities.drop, ['ALL']);
  assert.deepEqual([...agent.securityContext.capabilities.add].sort(), ['BPF', 'NET_ADMIN', 'NET_RAW', 'PERFMON', 'SYS_ADMIN']);
  const hostPaths = Object.fromEntries(pod.volumes.filter((v) => v.hostPath).map((v) => [v.name, v.hostPath!.path]));
  const mounts = Object.fromEntries(agent.volumeMounts.map((m) => [m.name, m.mountPath]));
  for (const m of agent.volumeMounts) assert.ok(pod.volumes.some((v) => v.name === m.name), `volume ${m.name} exists`);
  assert.equal(hostPaths[Object.keys(mounts).find((n) => mounts[n] === '/sys/fs/bpf')!], '/sys/fs/bpf');
  const cgroupMount = Object.keys(mounts).find((n) => hostPaths[n] === '/sys/fs/cgroup')!;
  assert.equal(config.data['CGROUP_ROOT'], mounts[cgroupMount], 'kubepods looks for pods under the mounted host cgroup root');
  assert.ok(agent.resources.requests['cpu'] && agent.resources.requests['memory']);
  assert.deepEqual(daemonSet.spec.selector.matchLabels, { 'app.kubernetes.io/name': 'ambit' });
  for (const [k, v] of Object.entries(daemonSet.spec.selector.matchLabels)) assert.equal(daemonSet.spec.template.metadata.labels[k], v);
  assert.equal(pod.serviceAccountName, find('ServiceAccount', 'ambit').metadata.name);
});

test('the ClusterRole grants list and watch on exactly what the Kubernetes source reads, patch on route status only, and nothing else', () => {
  const role = find('ClusterRole', 'ambit-node-agent') as Manifest & { rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[] };
  const patched = role.rules.filter((r) => r.verbs.includes('patch'));
  assert.deepEqual(
    patched.flatMap((r) => [r.verbs, r.apiGroups, r.resources]),
    [['patch'], ['gateway.networking.k8s.io'], ['httproutes/status', 'grpcroutes/status', 'tcproutes/status']],
  );
  const granted = role.rules.filter((r) => !patched.includes(r)).flatMap((r) => {
    assert.deepEqual(r.verbs, ['list', 'watch']);
    return r.apiGroups.flatMap((g) => r.resources.map((res) => `${g}/${res}`));
  });
  assert.deepEqual(granted.sort(), WATCHED_RESOURCES.map((r) => `${r.group}/${r.plural}`).sort());
  const binding = find('ClusterRoleBinding', 'ambit-node-agent') as Manifest & { roleRef: { kind: string; name: string }; subjects: { kind: string; name: string; namespace: string }[] };
  assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name });
  const sa = find('ServiceAccount', 'ambit');
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }]);
});

const caDeployment = find('Deployment', 'ambit-ca') as Manifest & {
  spec: { replicas: number; template: { metadata: { labels: Record<string, string> }; spec: PodSpec & { securityContext: { runAsNonRoot: boolean } } } };
};
const caPod = caDeployment.spec.template.spec;
const caContainer = caPod.containers[0]!;

test('the signing key is mounted by the CA Deployment alone: 2 replicas of `ambit ca`, as non-root', () => {
  const secretsOf = (spec: PodSpec): string[] => spec.volumes.flatMap((v) => (v.secret ? [v.secret.secretName] : []));
  assert.deepEqual(secretsOf(pod), [], 'the DaemonSet names no Secret: its node\'s kubelet could read all of it');
  assert.deepEqual(secretsOf(caPod), ['cacerts']);
  assert.equal(caDeployment.spec.replicas, 2);
  assert.equal(caPod.securityContext.runAsNonRoot, true);
  assert.notEqual(caPod.serviceAccountName, pod.serviceAccountName, 'the CA has its own ServiceAccount');
  assert.equal(caPod.serviceAccountName, find('ServiceAccount', 'ambit-ca').metadata.name);
  const env: Record<string, string> = { ...config.data, POD_NAMESPACE: daemonSet.metadata.namespace! };
  assert.equal(caContainer.env?.find((e) => e.name === 'POD_NAMESPACE')?.valueFrom?.fieldRef?.fieldPath, 'metadata.namespace');
  const args = caContainer.args.map((a) => a.replace(/\$\(([A-Z_]+)\)/g, (_m, name: string) => {
    assert.ok(name in env, `$(${name}) in the CA's args is defined by its env or ConfigMap`);
    return env[name]!;
  }));
  assert.equal(args[0], 'ca');
  const parsed = parseCaArgs(args.slice(1), {});
  assert.equal(caContainer.volumeMounts.find((m) => m.name === caPod.volumes.find((v) => v.secret)!.name)?.mountPath, parsed.caDir);
  // Only the DaemonSet's ServiceAccount may ask on behalf of pods.
  assert.deepEqual(parsed.trustedNodeAccounts, [{ namespace: daemonSet.metadata.namespace, name: pod.serviceAccountName }]);
  assert.equal(parsed.trustDomain, config.data['TRUST_DOMAIN']);
});

test('the agents reach the CA: its Service, a name its certificate carries, its root, a token for its audience', () => {
  const { config: parsed } = parseRunArgs(expandedArgs('node-7').slice(1), {});
  const ca = parsed.identity.istiodCa;
  assert.ok(ca, 'the agents get certificates from a CA server, not from a key of their own');
  assert.equal(parsed.identity.caDir, undefined);
  const [host, port] = ca.address!.split(':');
  const service = find('Service', 'ambit-ca') as Manifest & { spec: { selector: Record<string, string>; ports: { port: number; targetPort: number }[] } };
  assert.equal(`${service.metadata.name}.${service.metadata.namespace}.svc`, host);
  assert.equal(service.spec.ports[0]!.port, Number(port));
  for (const [k, v] of Object.entries(service.spec.selector)) assert.equal(caDeployment.spec.template.metadata.labels[k], v);
  const caArgs = parseCaArgs(caContainer.args.slice(1).map((a) => a.replace('$(POD_NAMESPACE)', service.metadata.namespace!).replace(/\$\(([A-Z_]+)\)/g, (_m, n: string) => config.data[n]!)), {});
  assert.ok(caArgs.servingNames.includes(host!), `the CA's certificate names ${host}`);
  assert.equal(caArgs.port, service.spec.ports[0]!.targetPort);
  // The files the agent's client reads are the ones the DaemonSet mounts.
  const mountOf = (file: string): Container['volumeMounts'][number] | undefined => agent.volumeMounts.find((m) => file.startsWith(`${m.mountPath}/`));
  const rootVolume = pod.volumes.find((v) => v.name === mountOf(ca.rootCertFile!)?.name);
  assert.equal(rootVolume?.configMap?.name, 'ambit-ca-root-cert');
  const tokenVolume = pod.volumes.find((v) => v.name === mountOf(ca.tokenFile!)?.name);
  const projected = tokenVolume?.projected?.sources[0]?.serviceAccountToken;
  assert.equal(projected?.audience, 'istio-ca');
  assert.equal(`${mountOf(ca.tokenFile!)!.mountPath}/${projected?.path}`, ca.tokenFile);
});

test('the CA\'s ClusterRole: create TokenReviews, list and watch pods, nothing else', () => {
  const role = find('ClusterRole', 'ambit-ca') as Manifest & { rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[] };
  const granted = role.rules.flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${g}/${res}:${v}`))));
  assert.deepEqual(granted.sort(), ['/pods:list', '/pods:watch', 'authentication.k8s.io/tokenreviews:create']);
  const binding = find('ClusterRoleBinding', 'ambit-ca') as Manifest & { roleRef: { name: string }; subjects: { name: string; namespace: string }[] };
  assert.equal(binding.roleRef.name, 'ambit-ca');
  assert.deepEqual(binding.subjects.map((s) => `${s.namespace}/${s.name}`), [`${caDeployment.metadata.namespace}/${caPod.serviceAccountName}`]);
});

test('every manifest has a known apiVersion/kind, a name and the right scope; the kustomization lists every file', () => {
  const known: Record<string, { apiVersion: string; namespaced: boolean }> = {
    Namespace: { apiVersion: 'v1', namespaced: false },
    ServiceAccount: { apiVersion: 'v1', namespaced: true },
    ConfigMap: { apiVersion: 'v1', namespaced: true },
    ClusterRole: { apiVersion: 'rbac.authorization.k8s.io/v1', namespaced: false },
    ClusterRoleBinding: { apiVersion: 'rbac.authorization.k8s.io/v1', namespaced: false },
    DaemonSet: { apiVersion: 'apps/v1', namespaced: true },
    Deployment: { apiVersion: 'apps/v1', namespaced: true },
    Service: { apiVersion: 'v1', namespaced: true },
    CustomResourceDefinition: { apiVersion: 'apiextensions.k8s.io/v1', namespaced: false },
  };
  const namespace = find('Namespace').metadata.name;
  for (const m of manifests) {
    const rule = known[m.kind];
    assert.ok(rule, `${m.kind} is a kind this folder is meant to hold`);
    assert.equal(m.apiVersion, rule.apiVersion, `${m.kind} ${m.metadata.name}`);
    assert.match(m.metadata.name, /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
    assert.equal(m.metadata.namespace, rule.namespaced ? namespace : undefined, `${m.kind} ${m.metadata.name} namespace`);
  }
  const kustomization = parseAllDocuments(readFileSync(join(DIR, 'kustomization.yaml'), 'utf8'))[0]!.toJSON() as { namespace: string; resources: string[] };
  assert.equal(kustomization.namespace, namespace);
  const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
  assert.deepEqual([...kustomization.resources].sort(), files.sort());
});

test('kubectl kustomize renders the folder', () => {
  // `make test` installs Debian's kubernetes-client when no kubectl is present: a missing one fails.
  assert.equal(spawnSync('kubectl', ['version', '--client'], { stdio: 'ignore' }).status, 0, 'kubectl is not installed: apt-get install -y kubernetes-client (make deps does)');
  const rendered = execFileSync('kubectl', ['kustomize', DIR], { encoding: 'utf8', timeout: 60_000 });
  const kinds = parseAllDocuments(rendered).map((d) => (d.toJSON() as Manifest).kind).sort();
  assert.deepEqual(kinds, manifests.map((m) => m.kind).sort());
  assert.match(rendered, /image: ambit\/agent:0\.1\.0/);
});

test('an upgrade starts the new agent beside the old one: maxSurge 1, maxUnavailable 0, no host ports, --handover wait', () => {
  assert.deepEqual(daemonSet.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
  // hostNetwork turns container ports into host ports, which the old pod holds: the surge pod would stay Pending.
  assert.equal(pod.hostNetwork, true);
  assert.equal(agent.ports, undefined, 'no container ports on a hostNetwork agent');
  // Kubernetes stops the old pod; an agent that retired it itself would see its container restarted.
  const { config: parsed } = parseRunArgs(expandedArgs('node-7').slice(1), {});
  assert.equal(parsed.handover, 'wait');
});

test('the image carries every native addon the agent loads, and its compile cache is filled at build time', () => {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const dockerfile = readFileSync(join(DIR, 'Dockerfile'), 'utf8');
  // What runs is the last stage: a file the agent needs that only the build stage has is missing at run time.
  const runStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  const addons = new Set<string>();
  const sources = readdirSync(join(root, 'agent'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
  for (const file of sources) {
    for (const m of readFileSync(join(root, 'agent', file), 'utf8').matchAll(/native\/build\/Release\/(\w+\.node)/g)) addons.add(m[1]!);
  }
  assert.deepEqual([...addons].sort(), ['ambit_bpf.node', 'ambit_hbone.node'], 'the addons the agent loads (agent/**/*.ts)');
  for (const addon of addons) {
    assert.match(runStage, new RegExp(`^COPY --from=build .*native/build/Release/${addon.replace('.', '\\.')}\\b`, 'm'), `the image copies ${addon}`);
  }
  // The cache is written under dist/, read-only at run time: only a build step can fill it.
  assert.match(runStage, /^RUN node \/opt\/ambit\/dist\/agent\/cli\/main\.js run --help/m);
});

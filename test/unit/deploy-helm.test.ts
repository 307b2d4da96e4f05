// deploy/helm/ambit without helm (not packaged for Debian 12, and nothing may be downloaded here): a
// structural check. The chart's metadata and values parse; every `.Values` path a template reads is
// defined and every value is read; template actions are balanced; the chart makes the objects of
// deploy/daemonset; and the DaemonSet's args, with the branches of each `source` picked line by line,
// are deploy/daemonset's for kubernetes and parse with `ambit run`'s own parser for both sources.
// What this cannot see: Go-template expressions themselves (`helm template` would).

import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { parseRunArgs } from '../../agent/cli/run.js';

const CHART = fileURLToPath(new URL('../../deploy/helm/ambit', import.meta.url));
const DAEMONSET_DIR = fileURLToPath(new URL('../../deploy/daemonset', import.meta.url));
const EASTWEST_DIR = fileURLToPath(new URL('../../deploy/eastwest-gateway', import.meta.url));
const templates = Object.fromEntries(readdirSync(join(CHART, 'templates')).map((f) => [f, readFileSync(join(CHART, 'templates', f), 'utf8')]));
const values = parse(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as Record<string, unknown>;

test('Chart.yaml: a v2 application chart whose appVersion is the package version', () => {
  const chart = parse(readFileSync(join(CHART, 'Chart.yaml'), 'utf8')) as Record<string, string>;
  const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../../package.json', import.meta.url)), 'utf8')) as { version: string };
  assert.equal(chart['apiVersion'], 'v2');
  assert.equal(chart['name'], 'ambit');
  assert.equal(chart['type'], 'application');
  assert.match(chart['version']!, /^\d+\.\d+\.\d+$/);
  assert.equal(chart['appVersion'], pkg.version);
});

test('every .Values path a template reads is in values.yaml, and every value is read', () => {
  const read = new Set<string>();
  for (const text of Object.values(templates)) for (const m of text.matchAll(/\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)) read.add(m[1]!.slice(1));
  const lookup = (path: string): unknown => path.split('.').reduce<unknown>((v, k) => (v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), values);
  for (const path of read) assert.notEqual(lookup(path), undefined, `.Values.${path} is read by a template but not defined in values.yaml`);
  // A value is read when it, or a map holding it, is (toYaml .Values.resources reads all of resources).
  const leaves = (v: unknown, prefix: string): string[] =>
    v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0
      ? Object.entries(v).flatMap(([k, child]) => leaves(child, prefix ? `${prefix}.${k}` : k))
      : [prefix];
  for (const leaf of leaves(values, '')) {
    assert.ok([...read].some((r) => leaf === r || leaf.startsWith(`${r}.`)), `values.yaml defines ${leaf}, which no template reads`);
  }
  assert.equal(values['source'], 'kubernetes', 'the default source is the one deploy/daemonset runs');
});

test('template actions are balanced: {{ }} pairs, and every if/with/range/define has its end', () => {
  for (const [file, text] of Object.entries(templates)) {
    assert.equal(text.split('{{').length, text.split('}}').length, `${file}: unbalanced {{ }}`);
    let depth = 0;
    for (const m of text.matchAll(/\{\{-?\s*(if|with|range|define|end)\b/g)) {
      depth += m[1] === 'end' ? -1 : 1;
      assert.ok(depth >= 0, `${file}: an {{ end }} closes nothing`);
    }
    assert.equal(depth, 0, `${file}: an if/with/range/define is never closed`);
  }
});

/** The kinds a template file makes, from its top-level `kind:` lines. */
const kindsIn = (text: string): string[] => [...text.matchAll(/^kind: (\w+)$/gm)].map((m) => m[1]!);

test('the chart makes the objects of deploy/daemonset (the release namespace aside) and deploy/eastwest-gateway, plus the ServiceMonitor', () => {
  // Helm installs crds/ as they are, before the templates (deploy-crd.test.ts checks them further).
  const crds = readdirSync(join(CHART, 'crds')).map((f) => readFileSync(join(CHART, 'crds', f), 'utf8'));
  const chartKinds = [...Object.values(templates), ...crds].flatMap(kindsIn).sort();
  const daemonsetKinds = readdirSync(DAEMONSET_DIR)
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    .flatMap((f) => parseAllDocuments(readFileSync(join(DAEMONSET_DIR, f), 'utf8')).map((d) => (d.toJSON() as { kind: string }).kind))
    .filter((k) => k !== 'Namespace');
  const gatewayKinds = parseAllDocuments(readFileSync(join(EASTWEST_DIR, 'eastwest-gateway.yaml'), 'utf8')).map((d) => (d.toJSON() as { kind: string }).kind);
  // Role and RoleBinding: the opt-in grant on istio-system's remote secrets (multicluster.remoteSecrets).
  assert.deepEqual(chartKinds, [...daemonsetKinds, ...gatewayKinds, 'Service', 'ServiceMonitor', 'Role', 'RoleBinding'].sort());
  // The ClusterRole is deploy/daemonset's, rule for rule.
  const rules = (text: string): string => text.slice(text.indexOf('rules:'), text.indexOf('---', text.indexOf('rules:'))).trim();
  assert.equal(rules(templates['rbac.yaml']!), rules(readFileSync(join(DAEMONSET_DIR, 'rbac.yaml'), 'utf8')));
});

/**
 * The DaemonSet's args for a choice of conditions: lines inside `{{- if <cond> }}` / `{{- else }}` /
 * `{{- end }}` are kept or dropped by `conditions[cond]`, and `{{ .Values.source }}` is filled in.
 */
function argsFor(conditions: Record<string, boolean>, source: string): string[] {
  const text = templates['daemonset.yaml']!;
  const block = text.slice(text.indexOf('          args:\n') + '          args:\n'.length, text.indexOf('          env:\n'));
  const keep: boolean[] = [];
  const args: string[] = [];
  for (const line of block.split('\n')) {
    const action = /\{\{-?\s*(if (.+?)|else|end)\s*-?\}\}/.exec(line);
    if (action?.[1]?.startsWith('if ')) {
      const cond = action[2]!.trim();
      assert.ok(cond in conditions, `the args test does not know the condition ${cond}`);
      keep.push(conditions[cond]!);
    } else if (action?.[1] === 'else') keep.push(!keep.pop()!);
    else if (action?.[1] === 'end') keep.pop();
    else if (line.trim().startsWith('- ') && keep.every(Boolean)) args.push(line.trim().slice(2).replace('{{ .Values.source }}', source));
  }
  return args;
}

/** $(VAR) as the kubelet expands it, from the ConfigMap template's keys with values.yaml's defaults. */
function expand(args: readonly string[], env: Record<string, string>): string[] {
  return args.map((a) => a.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_m, name: string) => {
    assert.ok(name in env, `$(${name}) in the chart's args is defined by its env or ConfigMap`);
    return env[name]!;
  }));
}

const configKeys = (): string[] => [...templates['configmap.yaml']!.matchAll(/^ {2}([A-Z_]+):/gm)].map((m) => m[1]!);

test('source kubernetes: the args are deploy/daemonset\'s and `ambit run` accepts them', () => {
  const conditions = { 'eq .Values.source "kubernetes"': true, 'eq .Values.source "xds"': false, '.Values.otlpMetrics.endpoint': false, '.Values.socks5': false };
  const args = argsFor(conditions, 'kubernetes');
  const daemonset = parseAllDocuments(readFileSync(join(DAEMONSET_DIR, 'daemonset.yaml'), 'utf8'))[0]!.toJSON() as {
    spec: { template: { spec: { containers: { args: string[] }[] } } };
  };
  assert.deepEqual(args, daemonset.spec.template.spec.containers[0]!.args);
  const env = Object.fromEntries(configKeys().map((k) => [k, 'x']));
  Object.assign(env, { NODE_NAME: 'node-7', AMBIT_LOG_LEVEL: String(values['logLevel']), CERT_TTL: '24h', DRAIN_TIMEOUT: '5s', POD_CGROUP: 'kubepods', CGROUP_ROOT: '/host/sys/fs/cgroup', TRUST_DOMAIN: 'cluster.local', CLUSTER_DOMAIN: 'cluster.local', CA_ADDRESS: 'ambit-ca.ambit-system.svc:15012' });
  const { config } = parseRunArgs(expand(args, env).slice(1), {});
  assert.deepEqual(config.source, { kind: 'kubernetes', cluster: { id: 'Kubernetes' } });
  assert.equal(config.node, 'node-7');
  assert.equal(config.identity.istiodCa?.address, 'ambit-ca.ambit-system.svc:15012', 'certificates come from ambit ca');
  assert.match(templates['configmap.yaml']!, /CA_ADDRESS: \{\{ printf "ambit-ca\.%s\.svc:15012" \.Release\.Namespace \| quote \}\}/);
});

test('source kubernetes: `ambit ca` is deploy/daemonset\'s, and only it mounts the CA Secret', () => {
  const daemonset = templates['daemonset.yaml']!;
  const ca = templates['ca.yaml']!;
  assert.doesNotMatch(daemonset, /secret:|secretName|caSecret/, 'the DaemonSet names no Secret: its nodes\' kubelets could read it');
  assert.match(ca, /secret:\n\s+secretName: \{\{ \.Values\.caSecret \}\}/);
  assert.match(ca, /^\{\{- if eq \.Values\.source "kubernetes" \}\}$/m, 'made only with source kubernetes');
  const argsOf = (text: string): string[] => {
    const block = text.slice(text.indexOf('          args:\n') + '          args:\n'.length, text.indexOf('          env:\n'));
    return block.split('\n').filter((l) => l.trim().startsWith('- ')).map((l) => l.trim().slice(2));
  };
  const kustomized = readFileSync(join(DAEMONSET_DIR, 'ca.yaml'), 'utf8');
  assert.deepEqual(argsOf(ca), argsOf(kustomized));
  assert.equal(argsOf(ca)[0], 'ca');
  assert.ok((values['ca'] as Record<string, unknown>)['replicas'] === 2);
});

test('source xds (and an OTLP endpoint, and SOCKS5): istiod\'s address and cluster id, istiod\'s CA, and `ambit run` accepts them', () => {
  const conditions = { 'eq .Values.source "kubernetes"': false, 'eq .Values.source "xds"': true, '.Values.otlpMetrics.endpoint': true, '.Values.socks5': true };
  const args = argsFor(conditions, 'xds');
  const env: Record<string, string> = {
    NODE_NAME: 'node-7',
    AMBIT_LOG_LEVEL: 'info',
    CERT_TTL: '24h',
    DRAIN_TIMEOUT: '5s',
    POD_CGROUP: 'kubepods',
    CGROUP_ROOT: '/host/sys/fs/cgroup',
    TRUST_DOMAIN: 'cluster.local',
    CLUSTER_DOMAIN: 'cluster.local',
    XDS_ADDRESS: (values['istiod'] as Record<string, string>)['address']!,
    ISTIO_META_CLUSTER_ID: 'east',
    OTLP_METRICS_ENDPOINT: 'http://collector:4318/v1/metrics',
    OTLP_METRICS_INTERVAL: '30s',
    CA_ADDRESS: 'not used with source xds',
  };
  for (const key of configKeys()) assert.ok(key in env, `the test fills in ConfigMap key ${key}`);
  const podEnv = { INSTANCE_IP: '10.0.0.7', POD_NAME: 'ambit-abcde', POD_NAMESPACE: 'ambit-system' };
  const { config } = parseRunArgs(expand(args, env).slice(1), podEnv);
  assert.equal(config.source.kind, 'xds');
  if (config.source.kind !== 'xds') return;
  assert.equal(config.source.istiod.address, 'istiod.istio-system.svc:15012');
  assert.equal(config.clusterId, 'east');
  assert.ok(config.identity.istiodCa, 'istiod signs with source xds');
  // The files istiod's client reads are where the chart mounts them.
  const daemonset = templates['daemonset.yaml']!;
  assert.ok(config.source.istiod.rootCertFile?.startsWith('/var/run/secrets/istio/') && daemonset.includes('mountPath: /var/run/secrets/istio'));
  assert.ok(config.source.istiod.tokenFile?.startsWith('/var/run/secrets/tokens/') && daemonset.includes('mountPath: /var/run/secrets/tokens'));
  assert.match(daemonset, /path: istio-token\n\s+audience: istio-ca/);
  // The pod's own identity for istiod comes from the downward API.
  for (const name of Object.keys(podEnv)) assert.match(daemonset, new RegExp(`- name: ${name}\\n\\s+valueFrom:`));
  // SOCKS5 reaches pods' namespaces through their processes: the host's PIDs, only when asked for.
  assert.equal(config.capture.mode === 'ebpf' && config.capture.socks5, true);
  assert.match(daemonset, /\{\{- if \.Values\.socks5 \}\}\n(\s+#.*\n)*\s+hostPID: true\n\s+\{\{- end \}\}/);
});

test('the chart upgrades as deploy/daemonset does: maxSurge 1, maxUnavailable 0, no host ports', () => {
  const text = templates['daemonset.yaml']!;
  assert.match(text, /updateStrategy:\n {4}type: RollingUpdate\n {4}rollingUpdate:\n {6}maxSurge: 1\n {6}maxUnavailable: 0\n/);
  assert.doesNotMatch(text, /containerPort:/, 'with hostNetwork, container ports are host ports that keep the surge pod off the node');
  assert.match(templates['servicemonitor.yaml']!, /targetPort: 15020\n/);
});

test("eastWestGateway: made only when enabled, with source kubernetes, a network and an address; its args are deploy/eastwest-gateway's", () => {
  const text = templates['eastwest-gateway.yaml']!;
  assert.match(text, /^\{\{- if \.Values\.eastWestGateway\.enabled \}\}$/m);
  assert.match(text, /\{\{- if ne \.Values\.source "kubernetes" \}\}\n\{\{- fail /);
  assert.match(text, /\{\{- if or \(not \.Values\.eastWestGateway\.network\) \(not \.Values\.eastWestGateway\.address\) \}\}\n\{\{- fail /);
  assert.equal((values['eastWestGateway'] as Record<string, unknown>)['enabled'], false, 'off by default: one network needs no gateway');
  const argsOf = (yaml: string): string[] => {
    const block = yaml.slice(yaml.indexOf('          args:\n') + '          args:\n'.length, yaml.indexOf('          env:\n'));
    return block.split('\n').filter((l) => l.trim().startsWith('- ')).map((l) => l.trim().slice(2));
  };
  assert.deepEqual(argsOf(text), argsOf(readFileSync(join(EASTWEST_DIR, 'eastwest-gateway.yaml'), 'utf8')));
  assert.equal(argsOf(text)[0], 'gateway');
});

test('multicluster.remoteSecrets: off by default; on, a Role lists and watches only Secrets, only in istio-system, for the agents\' ServiceAccount', () => {
  assert.equal((values['multicluster'] as { remoteSecrets: boolean }).remoteSecrets, false);
  const rbac = templates['rbac.yaml']!;
  const from = rbac.indexOf('{{- if and (eq .Values.source "kubernetes") .Values.multicluster.remoteSecrets }}');
  assert.ok(from > 0, 'the grant is made only with source kubernetes and multicluster.remoteSecrets');
  const docs = parseAllDocuments(rbac.slice(from).split('\n').filter((l) => !l.includes('{{-')).join('\n').replace(/\{\{ \.Release\.Namespace \}\}/g, 'ambit-system'))
    .map((d) => d.toJSON() as { kind: string; metadata: { namespace: string }; rules?: unknown; subjects?: unknown })
    .filter((d) => d !== null);
  const role = docs.find((d) => d.kind === 'Role');
  assert.equal(role?.metadata.namespace, 'istio-system');
  assert.deepEqual(role?.rules, [{ apiGroups: [''], resources: ['secrets'], verbs: ['list', 'watch'] }]);
  assert.deepEqual(docs.find((d) => d.kind === 'RoleBinding')?.subjects, [{ kind: 'ServiceAccount', name: 'ambit', namespace: 'ambit-system' }]);
});

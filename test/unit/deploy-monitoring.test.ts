// deploy/monitoring: the Service and ServiceMonitor select the DaemonSet's pods and scrape a port and
// path the agent serves; the plain Prometheus job keeps exactly that port; the kustomization lists
// every manifest and renders with `kubectl kustomize` when kubectl is installed.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const DIR = fileURLToPath(new URL('../../deploy/monitoring', import.meta.url));
const DAEMONSET = fileURLToPath(new URL('../../deploy/daemonset/daemonset.yaml', import.meta.url));
const read = <T>(file: string): T => parse(readFileSync(file, 'utf8')) as T;

interface DaemonSet {
  metadata: { namespace: string };
  spec: {
    template: {
      metadata: { labels: Record<string, string>; annotations: Record<string, string> };
      spec: { containers: { args: string[]; ports?: unknown[] }[] };
    };
  };
}
const daemonSet = read<DaemonSet>(DAEMONSET);
const podLabels = daemonSet.spec.template.metadata.labels;
const agent = daemonSet.spec.template.spec.containers[0]!;

const selects = (selector: Record<string, string>): boolean => Object.entries(selector).every(([k, v]) => podLabels[k] === v);

test('the Service selects the agents and exposes the port their metrics listen on', () => {
  const service = read<{ metadata: { namespace: string; labels: Record<string, string> }; spec: { clusterIP: string; selector: Record<string, string>; ports: { name: string; port: number; targetPort: number }[] } }>(join(DIR, 'service.yaml'));
  assert.equal(service.metadata.namespace, daemonSet.metadata.namespace);
  assert.equal(service.spec.clusterIP, 'None', 'headless: one endpoint per agent');
  assert.ok(selects(service.spec.selector));
  // By number: the agent declares no container ports (with hostNetwork they would be host ports,
  // which keep an upgrade's surge pod off the node).
  assert.equal(agent.ports, undefined);
  assert.deepEqual(service.spec.ports, [{ name: 'http-monitoring', port: 15020, targetPort: 15020 }]);
  // The agent listens there on every address (hostNetwork: the node's).
  assert.equal(agent.args[agent.args.indexOf('--metrics-address') + 1], '0.0.0.0:15020');
});

test('the ServiceMonitor selects that Service and scrapes the path the agent serves', () => {
  const monitor = read<{
    apiVersion: string;
    metadata: { namespace: string };
    spec: { selector: { matchLabels: Record<string, string> }; namespaceSelector: { matchNames: string[] }; endpoints: { port: string; path: string; interval: string }[] };
  }>(join(DIR, 'servicemonitor.yaml'));
  const service = read<{ metadata: { labels: Record<string, string> } }>(join(DIR, 'service.yaml'));
  assert.equal(monitor.apiVersion, 'monitoring.coreos.com/v1');
  assert.ok(Object.entries(monitor.spec.selector.matchLabels).every(([k, v]) => service.metadata.labels[k] === v), 'selects the Service by its labels');
  assert.deepEqual(monitor.spec.namespaceSelector.matchNames, [daemonSet.metadata.namespace]);
  const [endpoint] = monitor.spec.endpoints;
  assert.equal(endpoint?.port, 'http-monitoring');
  assert.equal(endpoint?.path, daemonSet.spec.template.metadata.annotations['prometheus.io/path']);
  assert.match(endpoint?.interval ?? '', /^\d+s$/);
});

test('the plain Prometheus job keeps the agents\' port 15020 and labels targets by node', () => {
  const config = read<{ scrape_configs: { job_name: string; metrics_path: string; kubernetes_sd_configs: { role: string; namespaces: { names: string[] } }[]; relabel_configs: { source_labels: string[]; regex?: string; action?: string; target_label?: string; replacement?: string }[] }[] }>(
    join(DIR, 'prometheus-scrape-config.yaml'),
  );
  const [job] = config.scrape_configs;
  assert.equal(job?.metrics_path, '/stats/prometheus');
  assert.deepEqual(job?.kubernetes_sd_configs, [{ role: 'pod', namespaces: { names: [daemonSet.metadata.namespace] } }]);
  const keeps = Object.fromEntries(job!.relabel_configs.filter((r) => r.action === 'keep').map((r) => [r.source_labels[0], r.regex]));
  // Prometheus turns label name characters other than [a-zA-Z0-9_] into _.
  assert.equal(keeps['__meta_kubernetes_pod_label_app_kubernetes_io_name'], podLabels['app.kubernetes.io/name']);
  const address = job!.relabel_configs.find((r) => r.target_label === '__address__');
  assert.deepEqual(address && { from: address.source_labels, regex: address.regex, to: address.replacement }, { from: ['__meta_kubernetes_pod_ip'], regex: '(.+)', to: '$1:15020' });
  assert.ok(job!.relabel_configs.some((r) => r.source_labels[0] === '__meta_kubernetes_pod_node_name' && r.target_label === 'node'));
});

test('the kustomization lists every manifest and kubectl kustomize renders it', () => {
  const kustomization = read<{ namespace: string; resources: string[] }>(join(DIR, 'kustomization.yaml'));
  assert.equal(kustomization.namespace, daemonSet.metadata.namespace);
  const manifests = readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml' && f !== 'prometheus-scrape-config.yaml');
  assert.deepEqual([...kustomization.resources].sort(), manifests.sort());
  // `make test` installs Debian's kubernetes-client when no kubectl is present: a missing one fails.
  assert.equal(spawnSync('kubectl', ['version', '--client'], { stdio: 'ignore' }).status, 0, 'kubectl is not installed: apt-get install -y kubernetes-client (make deps does)');
  const rendered = execFileSync('kubectl', ['kustomize', DIR], { encoding: 'utf8', timeout: 60_000 });
  assert.match(rendered, /^kind: ServiceMonitor$/m);
  assert.match(rendered, /^kind: Service$/m);
});

// deploy/eastwest-gateway: the Deployment's command line is one `ambit gateway` accepts (checked with its
// own parser, $(VAR)s expanded from the agents' ConfigMap and the pod's fields), and the objects agree
// with each other and with what other networks' agents read: the Gateway's class, network label and
// address, a ServiceAccount named after the Gateway (the identity clients expect), the CA's root and token.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { parseGatewayArgs } from '../../agent/cli/gateway.js';

const FILE = fileURLToPath(new URL('../../deploy/eastwest-gateway/eastwest-gateway.yaml', import.meta.url));
const AGENT_CONFIG = fileURLToPath(new URL('../../deploy/daemonset/configmap.yaml', import.meta.url));

interface Manifest {
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly namespace?: string; readonly labels?: Record<string, string> };
  readonly [key: string]: unknown;
}
interface GatewayPod {
  readonly metadata: { readonly labels: Record<string, string>; readonly annotations: Record<string, string> };
  readonly spec: {
    readonly serviceAccountName: string;
    readonly containers: readonly { readonly args: readonly string[]; readonly ports: readonly { readonly name: string; readonly containerPort: number }[]; readonly readinessProbe: { readonly httpGet: { readonly port: number } }; readonly volumeMounts: readonly { readonly mountPath: string; readonly name: string }[] }[];
    readonly volumes: readonly { readonly name: string; readonly configMap?: { readonly name: string }; readonly projected?: { readonly sources: readonly { readonly serviceAccountToken?: { readonly audience: string } }[] } }[];
  };
}

const manifests = parseAllDocuments(readFileSync(FILE, 'utf8')).map((d) => d.toJSON() as Manifest);
const find = <T>(kind: string): Manifest & T => {
  const found = manifests.find((m) => m.kind === kind);
  assert.ok(found, `deploy/eastwest-gateway has a ${kind}`);
  return found as Manifest & T;
};

test('the Deployment runs ambit gateway as its own pod, with its certificate from ambit ca', () => {
  const deployment = find<{ spec: { template: GatewayPod } }>('Deployment');
  const pod = deployment.spec.template;
  const container = pod.spec.containers[0]!;
  const agentConfig = (parseAllDocuments(readFileSync(AGENT_CONFIG, 'utf8'))[0]!.toJSON() as { data: Record<string, string> }).data;
  const env: Record<string, string> = { ...agentConfig, POD_NAME: 'eastwest-gateway-7d9f-abcde', POD_NAMESPACE: deployment.metadata.namespace! };
  const args = container.args.map((arg) => arg.replace(/\$\(([A-Z_]+)\)/g, (_, name: string) => {
    assert.ok(env[name] !== undefined, `$(${name}) is neither in ambit-config nor a pod field`);
    return env[name]!;
  }));
  assert.equal(args[0], 'gateway');
  const { config } = parseGatewayArgs(args.slice(1), {});
  assert.deepEqual(config.source, { kind: 'kubernetes' });
  assert.equal(config.pod, `${deployment.metadata.namespace}/eastwest-gateway-7d9f-abcde`);
  assert.deepEqual(config.hbone, { host: '0.0.0.0', port: 15008 });
  assert.equal(container.readinessProbe.httpGet.port, config.readiness.port);
  // Prometheus finds its metrics where it serves them.
  assert.equal(container.ports.find((p) => p.name === 'http-monitoring')?.containerPort, config.metrics.port);
  assert.equal(pod.metadata.annotations['prometheus.io/port'], String(config.metrics.port));
  const { identity } = config;
  assert.equal(identity.ca, 'istiod');
  if (identity.ca !== 'istiod') return;
  assert.equal(identity.istiod.address, agentConfig['CA_ADDRESS']);
  // The root and the token it names are mounted, the token for the CA's audience.
  const mounted = (path: string | undefined): string | undefined => container.volumeMounts.find((m) => path?.startsWith(`${m.mountPath}/`))?.name;
  const root = pod.spec.volumes.find((v) => v.name === mounted(identity.istiod.rootCertFile));
  assert.equal(root?.configMap?.name, 'ambit-ca-root-cert');
  const token = pod.spec.volumes.find((v) => v.name === mounted(identity.istiod.tokenFile));
  assert.equal(token?.projected?.sources[0]?.serviceAccountToken?.audience, 'istio-ca');
  // Never captured: its sockets are the mesh's transport.
  assert.equal(pod.metadata.labels['istio.io/dataplane-mode'], 'none');
});

test("the Gateway is what other networks' agents read, and names the gateway pods' identity", () => {
  const gateway = find<{ spec: { gatewayClassName: string; addresses: { type: string; value: string }[]; listeners: { port: number; protocol: string }[] } }>('Gateway');
  const deployment = find<{ spec: { template: GatewayPod } }>('Deployment');
  const service = find<{ spec: { selector: Record<string, string>; ports: { port: number; targetPort: number }[] } }>('Service');
  assert.equal(gateway.spec.gatewayClassName, 'istio-east-west');
  assert.deepEqual(gateway.spec.listeners.map((l) => [l.port, l.protocol]), [[15008, 'HBONE']]);
  assert.equal(gateway.spec.addresses[0]?.type, 'IPAddress');
  const network = gateway.metadata.labels?.['topology.istio.io/network'];
  assert.ok(network, 'the Gateway carries its network');
  assert.equal(deployment.spec.template.metadata.labels['topology.istio.io/network'], network, 'the gateway pods are on the Gateway\'s network');
  // Clients that know the gateway only by the Gateway object expect the ServiceAccount of its name.
  assert.equal(deployment.spec.template.spec.serviceAccountName, gateway.metadata.name);
  assert.equal(find('ServiceAccount').metadata.name, gateway.metadata.name);
  for (const [key, value] of Object.entries(service.spec.selector)) assert.equal(deployment.spec.template.metadata.labels[key], value);
  assert.ok(service.spec.ports.some((p) => p.port === 15008 && p.targetPort === 15008));
});

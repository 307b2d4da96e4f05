// Kubernetes objects for the tests against the lab's API server stand-in, as a user would `kubectl apply`
// them, and the small mesh most of those tests start from.

import type { FakeApiServer } from '../../../agent/lab/kube-apiserver.js';
import type { KubeObject } from '../../../agent/lab/kube-resources.js';

const namespace = (name: string, labels: Record<string, string> = {}): KubeObject => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
export const node = (name: string, ip: string): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name },
  status: { addresses: [{ type: 'InternalIP', address: ip }] },
});
export const pod = (ns: string, name: string, opts: { node: string; ip: string; labels?: Record<string, string>; port?: number }): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: ns, labels: opts.labels ?? { app: name } },
  spec: { nodeName: opts.node, containers: [{ name: 'app', image: 'app:1', ports: [{ name: 'http', containerPort: opts.port ?? 8080 }] }] },
  status: { phase: 'Running', podIP: opts.ip, podIPs: [{ ip: opts.ip }], conditions: [{ type: 'Ready', status: 'True' }] },
});
const service = (ns: string, name: string, vip: string, selector: Record<string, string>): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: ns },
  spec: { clusterIP: vip, clusterIPs: [vip], selector, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
});
export const virtualService = (ns: string, name: string, route: Record<string, unknown>): KubeObject => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'VirtualService',
  metadata: { name, namespace: ns },
  spec: { hosts: ['web'], http: [route] },
});
export const authorizationPolicy = (ns: string, name: string): KubeObject => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name, namespace: ns },
  spec: { action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/default'] } }] }] },
});
export const rateLimit = (ns: string, name: string, maxTokens: number): KubeObject => ({
  apiVersion: 'ambit.dev/v1alpha1',
  kind: 'RateLimit',
  metadata: { name, namespace: ns },
  spec: { targetRef: { kind: 'Service', name: 'web' }, tokenBucket: { maxTokens, tokensPerFill: maxTokens, fillInterval: '1s' } },
});

/** The shop namespace: two nodes, two web pods, their Service, a VirtualService, an AuthorizationPolicy and a RateLimit. */
export function seedShop(server: FakeApiServer): void {
  server.apply(namespace('shop', { 'istio.io/dataplane-mode': 'ambient' }));
  server.apply(node('node-a', '10.244.90.1'));
  server.apply(node('node-b', '10.244.90.2'));
  server.apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace: 'shop' } });
  server.apply(pod('shop', 'web-1', { node: 'node-a', ip: '10.244.91.11', labels: { app: 'web' } }));
  server.apply(pod('shop', 'web-2', { node: 'node-b', ip: '10.244.92.12', labels: { app: 'web' } }));
  server.apply(service('shop', 'web', '10.96.90.10', { app: 'web' }));
  server.apply(virtualService('shop', 'web', { route: [{ destination: { host: 'web' } }], timeout: '5s' }));
  server.apply(authorizationPolicy('shop', 'allow-shop'));
  server.apply(rateLimit('shop', 'web', 100));
}

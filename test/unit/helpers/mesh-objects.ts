// Small builders for typed configuration objects, so tests say only what matters to them.

import type { Container, Labels, NamespaceObject, NodeObject, PodObject, ServiceObject, ServicePort } from '../../../agent/config/kubernetes.js';

let line = 1;
const at = () => ({ file: 'test.yaml', line: line++ });
const meta = (name: string, namespace: string, labels: Labels = {}) => ({ name, namespace, labels, annotations: {} });

export function node(name: string, ip: string, podCIDR?: string): NodeObject {
  return {
    kind: 'Node',
    apiVersion: 'v1',
    metadata: meta(name, ''),
    spec: { ...(podCIDR ? { podCIDR } : {}), podCIDRs: [] },
    status: { addresses: [{ type: 'InternalIP', address: ip }] },
    source: at(),
  };
}

export function namespace(name: string, labels: Labels = {}): NamespaceObject {
  return { kind: 'Namespace', apiVersion: 'v1', metadata: meta(name, '', labels), source: at() };
}

export interface PodOptions {
  readonly labels?: Labels;
  readonly node?: string;
  readonly ip?: string;
  readonly serviceAccount?: string;
  readonly phase?: string;
  readonly ready?: boolean;
  readonly containers?: readonly Container[];
}

export function container(name: string, command: string[], ports: { name?: string; containerPort: number }[] = []): Container {
  return { name, command, args: [], env: [], ports: ports.map((p) => ({ ...p, protocol: 'TCP' as const })) };
}

export function pod(ns: string, name: string, options: PodOptions = {}): PodObject {
  return {
    kind: 'Pod',
    apiVersion: 'v1',
    metadata: meta(name, ns, options.labels),
    spec: {
      ...(options.node ? { nodeName: options.node } : {}),
      ...(options.serviceAccount ? { serviceAccountName: options.serviceAccount } : {}),
      containers: options.containers ?? [container('main', ['sleep', 'infinity'])],
    },
    status: {
      ...(options.phase ? { phase: options.phase } : {}),
      ...(options.ip ? { podIP: options.ip } : {}),
      podIPs: [],
      conditions: options.ready === undefined ? [] : [{ type: 'Ready', status: options.ready ? 'True' : 'False' }],
    },
    source: at(),
  };
}

export function service(ns: string, name: string, vip: string, selector: Labels | undefined, ports: Partial<ServicePort>[]): ServiceObject {
  return {
    kind: 'Service',
    apiVersion: 'v1',
    metadata: meta(name, ns),
    spec: {
      type: 'ClusterIP',
      ...(selector ? { selector } : {}),
      clusterIP: vip,
      clusterIPs: [vip],
      ports: ports.map((p) => ({ port: 80, targetPort: p.port ?? 80, protocol: 'TCP' as const, ...p })),
    },
    source: at(),
  };
}

// A bookinfo-shaped mesh written as the YAML a user would apply, for the L7 decision tests: Istio's own
// documentation examples are pasted next to it, parsed by agent/config and built into a snapshot.

import assert from 'node:assert/strict';
import { formatDiagnostic } from '../../../agent/config/diagnostics.js';
import { parseConfigFile } from '../../../agent/config/load.js';
import { buildSnapshot } from '../../../agent/state/build.js';
import type { MeshSnapshot } from '../../../agent/state/model.js';
import { type HttpRequestAttributes, requestHeaders } from '../../../agent/l7/request.js';

const pod = (name: string, ip: string, labels: Record<string, string>, ns = 'bookinfo') => `
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: ${ns}, labels: ${JSON.stringify(labels)}}
spec:
  containers:
    - name: app
      command: [serve]
      ports: [{name: http, containerPort: 9080}]
      readinessProbe: {httpGet: {path: /health, port: http}, periodSeconds: 5, timeoutSeconds: 1, failureThreshold: 3, successThreshold: 1}
status: {podIP: ${ip}}
`;

const service = (name: string, vip: string, ns = 'bookinfo', ports = '[{name: http, port: 9080, targetPort: 9080}]') => `
apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: ${ns}}
spec: {clusterIP: ${vip}, selector: {app: ${name}}, ports: ${ports}}
`;

export const BOOKINFO = [
  `apiVersion: v1
kind: Namespace
metadata: {name: bookinfo, labels: {istio.io/dataplane-mode: ambient}}`,
  `apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {istio.io/dataplane-mode: ambient}}`,
  pod('productpage-v1', '10.244.1.10', { app: 'productpage', version: 'v1' }),
  pod('reviews-v1', '10.244.1.21', { app: 'reviews', version: 'v1' }),
  pod('reviews-v2', '10.244.1.22', { app: 'reviews', version: 'v2' }),
  pod('reviews-v3', '10.244.1.23', { app: 'reviews', version: 'v3' }),
  pod('ratings-v1', '10.244.1.31', { app: 'ratings', version: 'v1' }),
  pod('details-v1', '10.244.1.41', { app: 'details', version: 'v1' }),
  pod('sleep', '10.244.2.50', { app: 'sleep' }, 'other'),
  service('productpage', '10.96.0.10'),
  service('reviews', '10.96.0.21'),
  service('ratings', '10.96.0.31'),
  service('details', '10.96.0.41', 'bookinfo', '[{name: http, port: 9080, targetPort: 9080}, {name: tcp-admin, port: 9999, targetPort: 9999}]'),
].join('\n---\n');

/** The bookinfo mesh plus the given Istio YAML documents, as one snapshot; any config error fails the test. */
export function mesh(...istioYaml: string[]): MeshSnapshot {
  const text = [BOOKINFO, ...istioYaml].join('\n---\n');
  const parsed = parseConfigFile(text, 'mesh.yaml');
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic), []);
  return buildSnapshot(parsed.objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
}

export interface RequestOptions {
  readonly method?: string;
  readonly path?: string;
  readonly port?: number;
  readonly authority?: string;
  readonly headers?: readonly string[];
  readonly source?: { namespace?: string; labels?: Record<string, string>; ip?: string; port?: number };
}

/** A request from productpage (unless told otherwise) to `host` in bookinfo. */
export function request(host: string, options: RequestOptions = {}): HttpRequestAttributes {
  const short = host.split('.')[0]!;
  return {
    host: host.includes('.') ? host : `${host}.bookinfo.svc.cluster.local`,
    authority: options.authority ?? `${short}:${options.port ?? 9080}`,
    port: options.port ?? 9080,
    method: options.method ?? 'GET',
    path: options.path ?? '/',
    headers: requestHeaders([...(options.headers ?? [])]),
    source: {
      namespace: options.source?.namespace ?? 'bookinfo',
      labels: options.source?.labels ?? { app: 'productpage', version: 'v1' },
      ...(options.source?.ip !== undefined ? { ip: options.source.ip } : { ip: '10.244.1.10' }),
      ...(options.source?.port !== undefined ? { port: options.source.port } : {}),
    },
  };
}

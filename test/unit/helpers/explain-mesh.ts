// The mesh the explain tests are written against, as a user writes it (two nodes, an ambient namespace
// and a legacy one, pods and Services, and POLICIES for the destination side), and the helpers they share.

import assert from 'node:assert/strict';
import { parseConfigFile } from '../../../agent/config/load.js';
import { type ExplainQuery, explainPath } from '../../../agent/explain/explain.js';
import type { Explanation, ExplainStep, StepName } from '../../../agent/explain/explanation.js';
import { buildSnapshot } from '../../../agent/state/build.js';
import type { MeshSnapshot } from '../../../agent/state/model.js';

export const FILE = 'mesh.yaml';

export const BASE = `
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Namespace
metadata: { name: legacy }
---
apiVersion: v1
kind: Node
metadata: { name: node-a }
status: { addresses: [{ type: InternalIP, address: 10.10.0.1 }] }
---
apiVersion: v1
kind: Node
metadata: { name: node-b }
status: { addresses: [{ type: InternalIP, address: 10.10.0.2 }] }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: shop, labels: { app: client } }
spec: { nodeName: node-a, serviceAccountName: client, containers: [{ name: c, command: [x] }] }
status: { podIP: 10.20.1.5 }
---
apiVersion: v1
kind: Pod
metadata: { name: quiet, namespace: shop, labels: { app: quiet, istio.io/dataplane-mode: none } }
spec: { nodeName: node-a, containers: [{ name: c, command: [x] }] }
status: { podIP: 10.20.1.6 }
---
apiVersion: v1
kind: Pod
metadata: { name: old, namespace: legacy, labels: { app: old } }
spec: { nodeName: node-a, containers: [{ name: c, command: [x] }] }
status: { podIP: 10.20.1.7 }
---
apiVersion: v1
kind: Pod
metadata: { name: web-1, namespace: shop, labels: { app: web, version: v1 } }
spec: { nodeName: node-b, serviceAccountName: web, containers: [{ name: c, command: [x], ports: [{ name: http, containerPort: 8080 }] }] }
status: { podIP: 10.20.2.5 }
---
apiVersion: v1
kind: Pod
metadata: { name: db-1, namespace: shop, labels: { app: db } }
spec: { nodeName: node-b, serviceAccountName: db, containers: [{ name: c, command: [x] }] }
status: { podIP: 10.20.2.6 }
---
apiVersion: v1
kind: Pod
metadata: { name: gone-1, namespace: shop, labels: { app: gone } }
spec: { nodeName: node-b, containers: [{ name: c, command: [x] }] }
status: { podIP: 10.20.2.7, conditions: [{ type: Ready, status: "False" }] }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { clusterIP: 10.96.0.10, selector: { app: web }, ports: [{ name: http, port: 80, targetPort: 8080 }] }
---
apiVersion: v1
kind: Service
metadata: { name: db, namespace: shop }
spec: { clusterIP: 10.96.0.11, selector: { app: db }, ports: [{ name: tcp, port: 5432, targetPort: 5432 }] }
---
apiVersion: v1
kind: Service
metadata: { name: gone, namespace: shop }
spec: { clusterIP: 10.96.0.12, selector: { app: gone }, ports: [{ name: tcp, port: 7000, targetPort: 7000 }] }
---
apiVersion: v1
kind: Service
metadata: { name: local, namespace: shop }
spec: { clusterIP: 10.96.0.13, selector: { app: db }, internalTrafficPolicy: Local, ports: [{ name: tcp, port: 5432, targetPort: 5432 }] }
`;

/** BASE and a test's own documents, as one file. */
function meshYaml(extra: string): string {
  return `${BASE}---\n${extra}`;
}

/** The snapshot of BASE with `extra` documents, as an agent reading it from `file` holds it at `version`. */
export function mesh(extra = '', { file = FILE, version = 7 }: { file?: string; version?: number } = {}): MeshSnapshot {
  const parsed = parseConfigFile(meshYaml(extra), file);
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error'), []);
  return buildSnapshot(parsed.objects, { version, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
}

/** The line in the combined YAML where a document with `name: <name>` starts its metadata. */
export function lineOf(extra: string, name: string): number {
  const lines = meshYaml(extra).split('\n');
  const i = lines.findIndex((l) => l.includes(`name: ${name},`) || l.includes(`name: ${name} }`) || l.trim() === `name: ${name}`);
  assert.ok(i >= 0, `no ${name} in the YAML`);
  // parse-file reports an object at its document's first line (apiVersion), two lines above metadata.
  return i - 1;
}

export function explain(snapshot: MeshSnapshot, query: ExplainQuery): Explanation {
  const answer = explainPath(snapshot, 'node-a', query);
  assert.ok(answer.ok, answer.ok ? '' : answer.error);
  return answer.value.explanation;
}

export function step(e: Explanation, name: StepName): ExplainStep {
  const found = e.steps.find((s) => s.step === name);
  assert.ok(found, `no ${name} step in ${e.steps.map((s) => s.step).join(', ')}`);
  return found;
}

export const HTTP_GET = (path: string, authority = 'web.shop'): ExplainQuery['http'] => ({ method: 'GET', path, authority, headers: [] });

export const POLICIES = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: web-allow, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  rules:
  - from: [{ source: { principals: [cluster.local/ns/shop/sa/client] } }]
    to: [{ operation: { methods: [GET], paths: [/api/*] } }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: web-deny-admin, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  action: DENY
  rules:
  - to: [{ operation: { paths: [/api/admin] } }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: web-audit, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  action: AUDIT
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: db-allow, namespace: shop }
spec:
  selector: { matchLabels: { app: db } }
  rules:
  - from: [{ source: { principals: [cluster.local/ns/shop/sa/web] } }]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: strict, namespace: shop }
spec: { mtls: { mode: STRICT } }
---
apiVersion: ambit.dev/v1alpha1
kind: RateLimit
metadata: { name: web-limit, namespace: shop }
spec:
  targetRef: { kind: Service, name: web }
  tokenBucket: { maxTokens: 10, tokensPerFill: 10, fillInterval: 1s }
`;

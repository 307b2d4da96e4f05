// A small bookinfo mesh as istiod sends it over xDS (two workloads, their Services, an ALLOW policy and
// a mesh-wide STRICT), the same mesh as local YAML, and the policy decision the tests compare, for the
// xDS source's tests.

import assert from 'node:assert/strict';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { type AuthorizationDecision, authorizeConnection } from '../../../agent/policy/authorization.js';
import { Action, Scope } from '../../../agent/proto/istio/security/authorization_pb.js';
import { AppProtocol, TunnelProtocol, type WorkloadSchema } from '../../../agent/proto/istio/workload/workload_pb.js';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL } from '../../../agent/sources/xds/xds-source.js';
import type { MeshSnapshot, SpiffeId } from '../../../agent/state/model.js';
import { authorization, ip, service, workload } from '../../fixtures/istiod/resources.js';
import type { FakeXdsServer } from '../../fixtures/istiod/xds-server.js';

/** The token the agent presents and the ADS server requires. */
export const TOKEN = 'node-agent-token';
export const NS = 'bookinfo';
export const svcHost = (name: string): string => `${name}.${NS}.svc.cluster.local`;
/** istiod's uid of a bookinfo pod. */
export const uid = (name: string): string => `Kubernetes//Pod/${NS}/${name}`;

export const productpageV1 = (address = '10.1.0.5') =>
  workload({
    uid: uid('productpage-v1'),
    name: 'productpage-v1',
    namespace: NS,
    addresses: [ip(address)],
    node: 'node-a',
    tunnelProtocol: TunnelProtocol.HBONE,
    serviceAccount: 'bookinfo-productpage',
    canonicalName: 'productpage',
    canonicalRevision: 'v1',
    services: { [`${NS}/${svcHost('productpage')}`]: { ports: [{ servicePort: 9080, targetPort: 9080 }] } },
    authorizationPolicies: [`${NS}/productpage-viewer`],
  });

/** reviews-v1 as istiod describes it; reviews' Service names its target port, so each workload says its own number. */
export const reviewsV1Fields: MessageInitShape<typeof WorkloadSchema> = {
  uid: uid('reviews-v1'),
  name: 'reviews-v1',
  namespace: NS,
  addresses: [ip('10.1.1.7')],
  node: 'node-b',
  tunnelProtocol: TunnelProtocol.HBONE,
  canonicalName: 'reviews',
  canonicalRevision: 'v1',
  services: { [`${NS}/${svcHost('reviews')}`]: { ports: [{ servicePort: 9080, targetPort: 9081 }] } },
};
const reviewsV1 = workload(reviewsV1Fields);

const productpageService = service({
  name: 'productpage',
  namespace: NS,
  hostname: svcHost('productpage'),
  addresses: [{ network: '', address: ip('10.96.0.20') }],
  ports: [{ servicePort: 9080, targetPort: 9080, appProtocol: AppProtocol.HTTP11 }],
});

const reviewsService = service({
  name: 'reviews',
  namespace: NS,
  hostname: svcHost('reviews'),
  addresses: [{ network: '', address: ip('10.96.0.21') }],
  ports: [{ servicePort: 9080, targetPort: 0, appProtocol: AppProtocol.HTTP11 }],
});

// What istiod makes of `from: [{principals: [gateway]}, {namespaces: [frontend]}], to: [{ports: ["9080"]}]`.
const productpageViewer = authorization({
  name: 'productpage-viewer',
  namespace: NS,
  scope: Scope.WORKLOAD_SELECTOR,
  action: Action.ALLOW,
  groups: [
    {
      rules: [
        { matches: [{ principals: [{ matchType: { case: 'exact', value: 'cluster.local/ns/bookinfo/sa/gateway' } }] }, { namespaces: [{ matchType: { case: 'exact', value: 'frontend' } }] }] },
        { matches: [{ destinationPorts: [9080] }] },
      ],
    },
  ],
});

// What istiod sends for a mesh-wide STRICT PeerAuthentication (istiod names it istio_converted_static_strict;
// dashes here, so that the equivalent YAML below can use the same name).
export const strict = authorization({
  name: 'istio-converted-static-strict',
  namespace: 'istio-system',
  scope: Scope.GLOBAL,
  action: Action.DENY,
  groups: [{ rules: [{ matches: [{ notPrincipals: [{ matchType: { case: 'presence', value: {} } }] }] }] }],
});

/** The same mesh as Kubernetes and Istio YAML, as a user would write it for local files. */
export const EQUIVALENT_YAML = `
apiVersion: v1
kind: Namespace
metadata: {name: bookinfo, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: productpage-v1, namespace: bookinfo, labels: {app: productpage, version: v1}}
spec:
  nodeName: node-a
  serviceAccountName: bookinfo-productpage
  containers: [{name: app, image: productpage, ports: [{containerPort: 9080}]}]
status: {podIP: 10.1.0.5}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v1, namespace: bookinfo, labels: {app: reviews, version: v1}}
spec:
  nodeName: node-b
  containers: [{name: app, image: reviews, ports: [{name: http, containerPort: 9081}]}]
status: {podIP: 10.1.1.7}
---
apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: bookinfo}
spec: {clusterIP: 10.96.0.20, selector: {app: productpage}, ports: [{name: http, port: 9080, targetPort: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec: {clusterIP: 10.96.0.21, selector: {app: reviews}, ports: [{name: http, port: 9080, targetPort: http}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: productpage-viewer, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: productpage}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/bookinfo/sa/gateway]}}, {source: {namespaces: [frontend]}}]
    to: [{operation: {ports: ["9080"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: istio-converted-static-strict, namespace: istio-system}
spec:
  action: DENY
  rules: [{from: [{source: {notPrincipals: ["*"]}}]}]
`;

/** The policy engine's decision for a connection to `workload` from `identity` (undefined: plaintext). */
export function decide(snapshot: MeshSnapshot, workload: string, identity: SpiffeId | undefined, port: number): AuthorizationDecision {
  const destination = snapshot.workloads.get(uid(workload)) ?? snapshot.workloads.get(`${NS}/${workload}`);
  assert.ok(destination, `workload ${workload} is in the snapshot`);
  return authorizeConnection(snapshot, {
    ...(identity ? { sourceIdentity: identity } : {}),
    sourceIp: '10.1.2.3',
    destination,
    destinationIp: destination.ips[0]!,
    destinationPort: port,
  });
}

/** Pushes the mesh: two workloads, their Services, productpage's ALLOW policy and a mesh-wide STRICT. */
export function pushBookinfo(server: FakeXdsServer): void {
  server.push(ADDRESS_TYPE_URL, [
    { name: uid('productpage-v1'), version: '1', body: productpageV1() },
    { name: uid('reviews-v1'), version: '1', body: reviewsV1 },
    { name: `${NS}/${svcHost('productpage')}`, version: '1', body: productpageService },
    { name: `${NS}/${svcHost('reviews')}`, version: '1', body: reviewsService },
  ]);
  server.push(AUTHORIZATION_TYPE_URL, [
    { name: `${NS}/productpage-viewer`, version: '1', body: productpageViewer },
    { name: 'istio-system/istio-converted-static-strict', version: '1', body: strict },
  ]);
}

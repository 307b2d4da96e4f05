// Every kind of object Ambit reads from configuration, as one discriminated union on `kind`.

import type { ObjectRef } from './diagnostics.js';
import type { DestinationRuleObject, VirtualServiceObject } from './istio-networking.js';
import type { AuthorizationPolicyObject, PeerAuthenticationObject } from './istio-security.js';
import type { KubernetesObject } from './kubernetes.js';

export type IstioObject = VirtualServiceObject | DestinationRuleObject | AuthorizationPolicyObject | PeerAuthenticationObject;

export type MeshObject = KubernetesObject | IstioObject;

export type MeshKind = MeshObject['kind'];

export function objectRef(object: MeshObject): ObjectRef {
  return { kind: object.kind, namespace: object.metadata.namespace, name: object.metadata.name };
}

// Every kind of object Ambit reads from configuration, as one discriminated union on `kind`.

import type { ObjectRef } from './diagnostics.js';
import type { GatewayApiObject } from './gateway-api/types.js';
import type { DestinationRuleObject, VirtualServiceObject } from './istio-networking.js';
import type { AuthorizationPolicyObject, PeerAuthenticationObject } from './istio-security.js';
import type { ConfigMapObject } from './mesh-config.js';
import type { RequestAuthenticationObject } from './parse-request-authentication.js';
import type { ServiceEntryObject, WorkloadEntryObject } from './parse-service-entry.js';
import type { KubernetesObject } from './kubernetes.js';
import type { RateLimitObject } from './rate-limit.js';
import type { TelemetryObject } from './parse-telemetry.js';

export type IstioObject =
  | VirtualServiceObject
  | DestinationRuleObject
  | AuthorizationPolicyObject
  | PeerAuthenticationObject
  | RequestAuthenticationObject
  | ServiceEntryObject
  | WorkloadEntryObject
  | TelemetryObject
  // Istio's mesh ConfigMap (istio-system/istio), read for MeshConfig.
  | ConfigMapObject;

/** Ambit's own resources (ambit.dev), read from the same YAML. */
export type AmbitObject = RateLimitObject;

export type MeshObject = KubernetesObject | IstioObject | GatewayApiObject | AmbitObject;

export type MeshKind = MeshObject['kind'];

export function objectRef(object: MeshObject): ObjectRef {
  return { kind: object.kind, namespace: object.metadata.namespace, name: object.metadata.name };
}

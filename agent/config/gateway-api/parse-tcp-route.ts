// Reads a TCPRoute (gateway.networking.k8s.io v1, standard since v1.6, and v1alpha2 of the experimental
// channel) and a Gateway, of which Ambit only uses the class (istio-waypoint) and the name.

import type { ObjectBase } from '../kubernetes.js';
import type { MapReader } from '../yaml-reader.js';
import { readBackendRef, readRouteSpec, readSectionName } from './parse-common.js';
import type { GatewayAddress, GatewayObject, TcpRouteObject } from './types.js';

export function parseTcpRoute(root: MapReader, base: ObjectBase<'TCPRoute'>): TcpRouteObject | undefined {
  const ns = base.metadata.namespace;
  const spec = readRouteSpec(root, ns, (s) => {
    const rulesField = s.require('rules');
    const rules = s.maps('rules').map((rule) => {
      const name = readSectionName(rule, 'name');
      const backendRefs = rule.maps('backendRefs').flatMap((b) => readBackendRef(b, ns, { weighted: true }) ?? []);
      return { ...(name !== undefined ? { name } : {}), backendRefs };
    });
    // A TCP connection has nothing to match on but its port, so only one rule can ever apply.
    if (rules.length > 1) rulesField?.warn(`only the first of ${rules.length} rules applies: a TCPRoute rule has no matches to choose between them`);
    return rules;
  });
  return spec && { ...base, spec };
}

export function parseGateway(root: MapReader, base: ObjectBase<'Gateway'>): GatewayObject | undefined {
  const spec = root.require('spec')?.map();
  if (!spec) return undefined;
  const gatewayClassName = spec.require('gatewayClassName')?.nonEmptyString();
  if (gatewayClassName === undefined) return undefined;
  // An east-west gateway is reached at its addresses from other networks; for other classes they are unused.
  const addresses = readAddresses(spec);
  // What the gateway's controller reports; istiod reads these (docs/multicluster.md).
  const status = root.map('status');
  const reported = status ? readAddresses(status) : [];
  status?.ignoreRest();
  // Listeners and infrastructure describe a proxy deployment; Ambit runs none (no waypoint hop).
  spec.ignore('listeners', 'infrastructure', 'allowedListeners', 'backendTLS', 'defaultScope', 'tls');
  // Any other class is an ingress or egress gateway, another controller's: kept without a word, unused.
  return { ...base, spec: { gatewayClassName, addresses }, ...(reported.length > 0 ? { status: { addresses: reported } } : {}) };
}

function readAddresses(map: MapReader): GatewayAddress[] {
  return map.maps('addresses').flatMap((address) => {
    const value = address.require('value')?.nonEmptyString();
    return value === undefined ? [] : [{ type: address.string('type') ?? 'IPAddress', value }];
  });
}

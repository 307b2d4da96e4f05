// Which east-west gateway reaches a workload on another network, at what address, and which identity
// it must prove (ztunnel's fetch_network_gateway and workload_and_services_san): the outer hop of
// double HBONE, decided from the snapshot alone.

import type { MeshService, MeshSnapshot, SpiffeId, Workload } from '../state/model.js';
import type { Address } from './destination.js';

/** The gateway a double-HBONE connection's outer tunnel goes to. */
export interface NetworkHop {
  readonly address: Address;
  /** The gateway workload's identity, and any its Service names in subject_alt_names. */
  readonly identities: readonly SpiffeId[];
}

/**
 * The hop to `workload`'s east-west gateway, or why there is none. A gateway named by address is the
 * workload (or the Service VIP's first endpoint) at that address, else the identity its Gateway object
 * gives (a load balancer's address); one named by a Service hostname is that Service's first endpoint,
 * as ztunnel picks one of its workloads.
 */
export function networkHop(snapshot: MeshSnapshot, workload: Workload, clientNetwork: string): NetworkHop | string {
  const gateway = workload.networkGateway;
  const from = clientNetwork || '(default)';
  if (!gateway) return `${workload.key} is on network ${workload.network || '(default)'}, not ${from}, and has no east-west gateway (networkGateway) to reach it through`;
  const port = gateway.hboneMtlsPort;
  if ('address' in gateway.destination) {
    const ip = gateway.destination.address;
    const atAddress = snapshot.workloadsByIp.get(ip);
    if (atAddress) return { address: { ip, port }, identities: [atAddress.identity] };
    const service = snapshot.servicesByVip.get(ip);
    const behind = service ? firstEndpoint(snapshot, service) : undefined;
    if (behind) return { address: { ip, port }, identities: identitiesOf(behind, service) };
    // Usually a load balancer's address on the client's side: the Gateway object names who answers there.
    if (gateway.identity) return { address: { ip, port }, identities: [gateway.identity] };
    return `the east-west gateway ${ip} of ${workload.key} is no workload or Service this agent knows, and its Gateway names no identity: the gateway cannot be authenticated`;
  }
  const { namespace, hostname } = gateway.destination;
  const service = snapshot.servicesByHostname.get(hostname);
  if (!service || service.namespace !== namespace) return `the east-west gateway Service ${namespace}/${hostname} of ${workload.key} is unknown to this agent`;
  const behind = firstEndpoint(snapshot, service);
  const ip = behind?.ips[0];
  if (!behind || !ip) return `the east-west gateway Service ${namespace}/${hostname} has no endpoint with an address`;
  return { address: { ip, port }, identities: identitiesOf(behind, service) };
}

function firstEndpoint(snapshot: MeshSnapshot, service: MeshService): Workload | undefined {
  for (const endpoint of service.endpoints) {
    const found = snapshot.workloads.get(endpoint.workload);
    if (found) return found;
  }
  return undefined;
}

function identitiesOf(workload: Workload, service: MeshService | undefined): SpiffeId[] {
  return [workload.identity, ...(service?.subjectAltNames ?? [])];
}
